"""Query results as markdown tables, for the previews Dagster shows in a step's metadata."""

import duckdb


def markdown_table(cursor: duckdb.DuckDBPyConnection) -> str:
    """The rows of ``cursor``'s query under its column names, one table row per result row."""
    header = [column for column, *_ in cursor.description]
    rows = [[_cell(value) for value in row] for row in cursor.fetchall()]
    return "\n".join("| " + " | ".join(line) + " |" for line in [header, ["---"] * len(header), *rows])


def _cell(value) -> str:
    """A value as one markdown table cell: a pipe or a line break in a reason would break the table."""
    return " ".join(str(value if value is not None else "").split()).replace("|", "\\|")
