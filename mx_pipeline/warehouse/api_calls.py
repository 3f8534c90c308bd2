"""``ops.api_calls``: one row per HTTP attempt made to MX, so a run's cost and its 429s are visible."""

import threading
from dataclasses import asdict

import duckdb

from mx_pipeline.mx.transport import ApiCall
from mx_pipeline.warehouse.connection import registered

_COLUMNS = (
    "started_at, run_id, method, path_template, status, latency_ms, attempt, request_id, user_guid, member_guid, error"
)


class ApiCallLog:
    """Collects :class:`ApiCall` records (pass it to the client as an observer) and writes them in bulk.

    The client calls observers from inside its request loop; buffering keeps a DuckDB write out of that path.
    """

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.total = 0
        self.rate_limited = 0  # answered 429: MX (or its sandbox) asked us to slow down
        self._pending: list[ApiCall] = []
        self._lock = threading.Lock()

    def __call__(self, call: ApiCall) -> None:
        with self._lock:
            self._pending.append(call)
            self.total += 1
            self.rate_limited += call.status == 429

    def __getstate__(self) -> dict:
        """What travels to another step (the calls a reading step made, for its writing step to record)."""
        with self._lock:
            return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    @property
    def pending(self) -> int:
        """Calls collected but not yet written."""
        return len(self._pending)

    def flush(self, con: duckdb.DuckDBPyConnection) -> int:
        """Write the calls collected since the last flush; returns how many."""
        import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

        with self._lock:
            calls, self._pending = self._pending, []
        if calls:
            frame = pd.DataFrame([asdict(c) for c in calls]).assign(run_id=self.run_id).astype(object)
            with registered(con, "api_calls_batch", frame):
                con.execute(f"insert into ops.api_calls by name select {_COLUMNS} from api_calls_batch")
        return len(calls)
