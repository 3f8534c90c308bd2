"""The warehouse pool's limit, set as a run starts, before its first step claims the pool.

DuckDB lets one process write a file, so the ``duckdb_warehouse`` pool runs one step at a time whatever the
instance's ``default_limit``. The limit is set explicitly, as ``dagster instance concurrency set`` would: Dagster
makes a pool's row from the default when a step first claims it, or when the default changed since, and on
Postgres that fails the run whenever the row is there already (its insert aborts the transaction its update then
runs in: ``InFailedSqlTransaction``, Dagster 1.13.27 ``initialize_concurrency_limit_to_default``). Four workers
starting at once hit it; so did every run after an operator changed the default. An explicit limit is never made
again. A run that loses the race to set it first finds it set, which is all it needs.
"""

import dagster as dg

WAREHOUSE_WRITERS = 1


def ensure_pool(instance: dg.DagsterInstance, pool: str, limit: int = WAREHOUSE_WRITERS) -> None:
    """Set ``pool``'s limit to ``limit`` explicitly unless it is so already; nothing where the instance keeps no
    pools (its storage predates them: Dagster then claims no slot either)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or _is_set(storage, pool, limit):
        return
    try:
        storage.set_concurrency_slots(pool, limit)
    except Exception:
        if not _is_set(storage, pool, limit):  # not the race: no other worker set it
            raise


def _is_set(storage, pool: str, limit: int) -> bool:
    return any(p.name == pool and p.limit == limit and not p.from_default for p in storage.get_pool_limits())
