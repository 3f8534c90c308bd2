"""The SQL models in ``dbt_like_sql/``: one file per table, ordered by the tables their SQL reads, and run.

A model file is a header of ``-- key: value`` comment lines, then one SELECT:

    -- materialized: incremental          (table | view | incremental; default table)
    -- unique_key: transaction_guid       (incremental models: the rows a run replaces; may name several columns)
    -- description: One row per ...       (becomes the table's COMMENT)
    -- column amount: Signed: debits ...  (becomes the column's COMMENT)
    select ...

The schema is the file's folder (``staging/``, ``marts/``) and the table its name. What a model reads comes
from parsing its SQL with sqlglot, never from a hand-kept list. An incremental model's SELECT filters its input
with ``__since__``, which is the start of its last successful run (``-infinity`` on a first or full run): the
rows it yields replace the rows with the same key, so a run costs what changed. ``__is_full__`` is ``true`` on a full
build, so a model can skip what only an increment needs (the keys a change reaches). A model that depends on the
reference CSVs (directly or through other models) is built in full whenever the reference data differs from
the version it was last built with (``ops.model_reference_hashes``), so an edited category map reaches every
dependant, however many runs that takes. Each incremental run logs the keys it replaced (``ops.model_changes``,
model_changes.py): a model reading that log learns what changed upstream, and the analysts' file applies it.
Other placeholders are the refresh policy's numbers (``__default_sla_hours__``, ``__max_attempts__``,
``__attempt_window_hours__``), the routes it refreshes (``__refreshable_routes__``) and aggregates
(``__aggregated_routes__``), and the outcomes that are no aggregation (``__not_aggregations__``: status re-reads,
and requests held back by the throttle), so the SQL never restates them.
"""

import datetime as dt
import graphlib
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

from mx_pipeline.lifecycle.routes import AGGREGATED_ROUTES, REFRESH_ACTIONS
from mx_pipeline.refresh.aggregate import NOT_AGGREGATIONS
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.warehouse import model_changes
from mx_pipeline.warehouse.sql_literals import sql_literal

PROJECT = Path(__file__).resolve().parents[2]
MODELS_DIR = PROJECT / "dbt_like_sql"
REFERENCE_DIR = PROJECT / "data" / "reference"
REFERENCE_TABLES = ("internal_categories", "mx_category_map")  # loaded into ``reference`` before every run
MATERIALIZATIONS = ("table", "view", "incremental")
_HEADER = re.compile(r"^--\s*(?P<key>column \w+|\w+)\s*:\s*(?P<value>.*)$")
_DUCKDB_LINE = re.compile(r"LINE (\d+):")
DEFAULT_POLICY = RefreshPolicy()


class ModelError(Exception):
    """A model that cannot be read or run; the message starts with ``file:line``."""


@dataclass(frozen=True)
class Model:
    name: str  # schema.table
    path: Path
    body: str  # the SELECT, header removed
    body_line: int  # the file line the body starts on
    materialized: str = "table"
    unique_key: str | None = None
    description: str = ""
    column_comments: Mapping[str, str] = field(default_factory=dict)
    reads: frozenset[str] = frozenset()  # schema.table names the SQL reads
    references: frozenset[str] = frozenset()  # reference tables it depends on, itself or through other models
    reads_changes: bool = False  # reads ops.model_changes: the changes of the models it reads (model_changes.py)
    reads_incremental: frozenset[str] = frozenset()  # the incremental models it reads
    # per model whose replaced rows it reads (changes.<schema>__<table>), the columns it reads of them ("*": all)
    reads_replaced: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def key_path(self) -> list[str]:
        return self.name.split(".")


@dataclass(frozen=True)
class ModelResult:
    name: str
    rows: int
    seconds: float
    mode: str  # full | incremental
    recomputed: int  # rows computed by this run: all of them when full, what changed when incremental
    reference_changed: bool = False  # built in full because the reference data differs from its last build


def load_models(root: Path = MODELS_DIR) -> list[Model]:
    """Every model under ``root``, each after the models it reads."""
    models = {m.name: m for m in (parse_model(path, root) for path in sorted(root.rglob("*.sql")))}
    order = graphlib.TopologicalSorter({name: m.reads & models.keys() for name, m in models.items()})
    try:
        names = list(order.static_order())
    except graphlib.CycleError as exc:
        raise ModelError(f"models read each other in a cycle: {' -> '.join(exc.args[1])}") from None
    for name in names:  # upstream models first, so their references are complete when read
        model = models[name]
        inherited = {ref for upstream in model.reads & models.keys() for ref in models[upstream].references}
        incremental = {m for m in model.reads & models.keys() if models[m].materialized == "incremental"}
        models[name] = replace(model, references=model.references | inherited, reads_incremental=frozenset(incremental))
    return [models[name] for name in names]


def _references(tables: frozenset[str]) -> set[str]:
    return {t for t in tables if t.split(".")[0] == "reference"}


def parse_model(path: Path, root: Path = MODELS_DIR) -> Model:
    lines = path.read_text().splitlines()
    header: dict[str, str] = {}
    columns: dict[str, str] = {}
    body_start = 0
    for number, line in enumerate(lines):
        if not line.startswith("--"):
            body_start = number
            break
        match = _HEADER.match(line)
        if match and match["key"].startswith("column "):
            columns[match["key"].removeprefix("column ")] = match["value"]
        elif match:
            header[match["key"]] = match["value"]
    name = f"{path.parent.relative_to(root).as_posix().replace('/', '_')}.{path.stem}"
    materialized = header.get("materialized", "table")
    if materialized not in MATERIALIZATIONS:
        raise ModelError(f"{path}:1: materialized must be one of {MATERIALIZATIONS}, not {materialized!r}")
    if materialized == "incremental" and not header.get("unique_key"):
        raise ModelError(f"{path}:1: an incremental model needs a unique_key")
    body = "\n".join(lines[body_start:])
    tree = _parse(body, path)
    return Model(
        name=name,
        path=path,
        body=body,
        body_line=body_start + 1,
        materialized=materialized,
        unique_key=header.get("unique_key"),
        description=header.get("description", ""),
        column_comments=columns,
        reads=model_changes.models_read(reads := tables_read(tree, path)),
        references=frozenset(_references(reads)),
        reads_changes=model_changes.models_read(reads) != reads,
        reads_replaced=model_changes.replaced_columns_read(tree),
    )


def _parse(sql: str, path: Path | str) -> exp.Expression:
    try:
        return sqlglot.parse_one(_render(sql, since=None, params=_policy_params(DEFAULT_POLICY)), read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ModelError(f"{path}: {exc}") from None


def tables_read(tree: exp.Expression, path: Path | str = "<sql>") -> frozenset[str]:
    """The schema-qualified tables a SELECT reads (its own CTEs excluded)."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    read = set()
    for table in tree.find_all(exp.Table):
        if table.db:
            read.add(f"{table.db}.{table.name}")
        elif table.name and table.name not in ctes:
            raise ModelError(f"{path}: table {table.name!r} must be schema-qualified (raw., staging., ...)")
    return frozenset(read)


@dataclass(frozen=True)
class ReferenceLoad:
    rows: dict[str, int]  # per reference table
    hashes: dict[str, str]  # per reference table: sha256 of the CSV loaded


def load_reference(con: duckdb.DuckDBPyConnection, folder: Path = REFERENCE_DIR) -> ReferenceLoad:
    """(Re)load the reference CSVs into the ``reference`` schema and note the version loaded of each.

    Whether a model must be rebuilt for them is the model's own question (:func:`run_model`), never this load's:
    a run that loads an edited CSV may build only some models, or fail before the rest.
    """
    rows, hashes = {}, {}
    con.execute("begin transaction")
    try:
        for table in REFERENCE_TABLES:
            csv = folder / f"{table}.csv"
            name = f"reference.{table}"
            content = csv.read_bytes()
            con.execute(f"create or replace table {name} as from read_csv(?, all_varchar = true)", [str(csv)])
            (rows[name],) = con.execute(f"select count(*) from {name}").fetchone()
            hashes[name] = hashlib.sha256(content).hexdigest()
            con.execute(
                "insert or replace into ops.reference_loads values (?, ?, ?)",
                [name, hashes[name], dt.datetime.now(dt.UTC)],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return ReferenceLoad(rows, hashes)


def run_model(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    *,
    run_id: str,
    full_refresh: bool = False,
    policy: RefreshPolicy = DEFAULT_POLICY,
    keep_replaced: frozenset[str] = frozenset({"*"}),
) -> ModelResult:
    """Build one model (and its comments) in one transaction; a failure names the file and line.

    The build is full on ``full_refresh``, on a first run, and when the reference data the model depends on
    is not the version it was last built with; otherwise an incremental model reads only what changed.
    ``keep_replaced``: the columns of the rows an incremental run replaces that it keeps, beside their key, for the
    models that read them (``model_changes.replaced_rows_read``; "*": all; none: no rows kept); it logs their keys
    either way.
    """
    started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
    reference_hash = _reference_hash(con, model)
    reference_changed = reference_hash is not None and reference_hash != _built_with(con, model.name)
    rebuild = full_refresh or reference_changed or not _exists(con, model.name)
    since = None if rebuild else _changes_since(con, model)
    incremental = model.materialized == "incremental" and since is not None
    body = _render(model.body, since=since, params=_policy_params(policy))
    con.execute("begin transaction")
    try:
        if incremental:
            columns = model.unique_key
            if (affected := _affected(body)) is not None:
                # The keys first, once, into a table the SELECT then reads: planned against their real count, it
                # finds their rows by the keys instead of hashing every row of its input (0.55 s -> 0.15 s for
                # fct_transactions after 1% new rows at 1M).
                affected_rows, body = affected
                _execute(
                    con, model, "create or replace temp table model_affected_rows as\n", affected_rows, lines=False
                )
                con.execute(f"create or replace temp table model_affected as select {columns} from model_affected_rows")
                _execute(con, model, "create or replace temp table model_incoming as\n", body, lines=False)
                con.execute("drop table model_affected_rows")
            else:
                _execute(con, model, "create or replace temp table model_incoming as\n", body)
                con.execute(f"create or replace temp table model_affected as select {columns} from model_incoming")
            (recomputed,) = con.execute("select count(*) from model_affected").fetchone()
            if affected is not None:  # without an affected CTE, model_affected holds model_incoming's keys already
                con.execute(f"insert into model_affected by name select {columns} from model_incoming")
            model_changes.row_ids_of_keys(con, model.name, model.unique_key, "model_affected", into="model_replaced")
            model_changes.record(
                con, model.name, model.unique_key, started, "model_affected",
                keep_columns=keep_replaced, replaced="model_replaced",
            )  # fmt: skip
            con.execute(f"delete from {model.name} where rowid in (select row_id from model_replaced)")
            con.execute(f"insert into {model.name} by name select * from model_incoming")
            con.execute("drop table model_incoming; drop table model_affected; drop table model_replaced")
        else:
            kind = "view" if model.materialized == "view" else "table"
            _execute(con, model, f"create or replace {kind} {model.name} as\n", body)
            if model.materialized == "incremental":
                model_changes.reset(con, model.name, model.unique_key, keep_columns=keep_replaced)
        _comment(con, model)
        (rows,) = con.execute(f"select count(*) from {model.name}").fetchone()
        recomputed = recomputed if incremental else rows
        mode = "incremental" if incremental else "full"
        con.execute(
            "insert into ops.model_runs values (?, ?, ?, ?, ?, ?)",
            [model.name, started, dt.datetime.now(dt.UTC), rows, mode, run_id],
        )
        if reference_hash is not None:
            con.execute(
                "insert or replace into ops.model_reference_hashes values (?, ?, ?, ?)",
                [model.name, reference_hash, dt.datetime.now(dt.UTC), run_id],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return ModelResult(model.name, int(rows), time.perf_counter() - clock, mode, int(recomputed), reference_changed)


def _changes_since(con: duckdb.DuckDBPyConnection, model: Model) -> dt.datetime | None:
    """Since when an incremental run of ``model`` reads what changed (``model_changes.read_since``); None: it builds in
    full, because an incremental model it reads was built in full since its last run (their rows' times no longer
    tell what changed), or because the changes it reads are not all logged."""
    since = model_changes.read_since(con, model.name, model.reads)
    last = model_changes.last_start(con, model.name)
    if since is None or model_changes.built_in_full_since(con, model.reads_incremental, last):
        return None
    if model.reads_changes and not model_changes.complete_since(con, model.reads_incremental, since):
        return None
    return since


def _affected(body: str) -> tuple[str, str] | None:
    """``(<the model's CTEs> select * from affected, the body reading them from model_affected_rows)``, when the model
    has an ``affected`` CTE.

    The keys it lists are replaced, and those the SELECT no longer yields are deleted: that is how an
    incremental model drops a row a change made obsolete (a pending whose posted twin arrived).
    """
    select = sqlglot.parse_one(body, read="duckdb")
    ctes = select.find(exp.With)
    affected = next((cte for cte in ctes.expressions if cte.alias_or_name == "affected"), None) if ctes else None
    if affected is None:
        return None
    rows = f"{ctes.sql(dialect='duckdb')} select * from affected"
    affected.set("this", sqlglot.parse_one("select * from model_affected_rows", read="duckdb"))
    return rows, select.sql(dialect="duckdb")


def _execute(con: duckdb.DuckDBPyConnection, model: Model, prefix: str, body: str, *, lines: bool = True) -> None:
    """``lines``: ``body`` is the file's text, so DuckDB's line numbers are the file's (not SQL sqlglot rewrote)."""
    try:
        con.execute(prefix + body)
    except duckdb.Error as exc:
        message = str(exc)
        found = _DUCKDB_LINE.search(message) if lines else None
        # DuckDB counts lines of the statement, whose first line is the prefix we added.
        line = model.body_line + int(found[1]) - 2 if found else model.body_line
        raise ModelError(f"{model.path}:{line}: {message.splitlines()[0]}") from exc


def _comment(con: duckdb.DuckDBPyConnection, model: Model) -> None:
    if model.description:
        con.execute(f"comment on {_kind(model)} {model.name} is {sql_literal(model.description)}")
    for column, text in model.column_comments.items():
        con.execute(f"comment on column {model.name}.{column} is {sql_literal(text)}")


def _kind(model: Model) -> str:
    return "view" if model.materialized == "view" else "table"


def _render(sql: str, *, since: dt.datetime | None, params: Mapping[str, str]) -> str:
    rendered = sql.replace(
        "__since__", "'-infinity'::timestamptz" if since is None else f"'{since.isoformat()}'::timestamptz"
    ).replace("__is_full__", "true" if since is None else "false")
    for name, value in params.items():
        rendered = rendered.replace(f"__{name}__", value)
    return rendered


def _policy_params(policy: RefreshPolicy) -> dict[str, str]:
    return {
        "refreshable_routes": ", ".join(f"'{route.value}'" for route in REFRESH_ACTIONS),
        "aggregated_routes": ", ".join(f"'{route.value}'" for route in sorted(AGGREGATED_ROUTES)),
        "not_aggregations": ", ".join(f"'{outcome}'" for outcome in sorted(NOT_AGGREGATIONS)),
        "default_sla_hours": repr(float(policy.sla_hours)),
        "max_attempts": str(int(policy.max_attempts)),
        "attempt_window_hours": repr(float(policy.attempt_window_hours)),
    }


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".")
    (found,) = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchone()
    return bool(found)


def _reference_hash(con: duckdb.DuckDBPyConnection, model: Model) -> str | None:
    """One hash of the loaded versions of the reference tables the model depends on (None: it depends on none)."""
    if not model.references:
        return None
    loaded = dict(
        con.execute(
            "select table_name, content_hash from ops.reference_loads where table_name in (select unnest(?))",
            [sorted(model.references)],
        ).fetchall()
    )
    versions = "\n".join(f"{table}={loaded.get(table, 'not loaded')}" for table in sorted(model.references))
    return hashlib.sha256(versions.encode()).hexdigest()


def _built_with(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    found = con.execute("select reference_hash from ops.model_reference_hashes where model = ?", [name]).fetchone()
    return found[0] if found else None
