"""SQL text for values DuckDB takes only inline, not as parameters: file paths (ATTACH, COPY ... TO,
``read_parquet``), comments, a JSON structure."""

from collections.abc import Iterable


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_list(texts: Iterable[str]) -> str:
    """``texts`` as a SQL list of string literals."""
    return "[" + ", ".join(sql_literal(text) for text in texts) + "]"
