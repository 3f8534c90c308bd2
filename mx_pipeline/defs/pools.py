"""The warehouse pool's row, made as a run starts, before its first step claims the pool.

Dagster makes a pool's row, with the instance's default limit, when a step first claims the pool. On Postgres, two
run workers doing so at one instant both insert it, and the loser goes on in the transaction its failed insert
aborted: its run fails (``InFailedSqlTransaction``, Dagster 1.13.27,
``SqlEventLogStorage.initialize_concurrency_limit_to_default``). Four workers syncing at once hit it. So the
warehouse resource makes the row as each run starts; a run that loses the race to make it finds it made, which
is all it needs.
"""

import dagster as dg


def ensure_pool(instance: dg.DagsterInstance, pool: str) -> None:
    """Make ``pool``'s row with the instance's default limit, unless it exists or the instance sets no default."""
    storage = instance.event_log_storage
    if storage.get_pool_config().default_pool_limit is None or _has_row(storage, pool):
        return
    try:
        storage.initialize_concurrency_limit_to_default(pool)
    except Exception:
        if not _has_row(storage, pool):  # not the race: another worker's row is not there
            raise


def _has_row(storage, pool: str) -> bool:
    return any(limit.name == pool for limit in storage.get_pool_limits())
