"""A warehouse file another process holds (an analyst's read-write session) is waited for, said so, and bounded."""

import logging
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from mx_pipeline.defs.resources import WarehouseResource
from mx_pipeline.warehouse import Warehouse, WarehouseBusy, connect
from mx_pipeline_tests.releasable_hold import held_until_released


class FakeClock:
    """Monotonic seconds that move only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def waiting_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]


def test_a_held_file_is_waited_for_said_once_with_who_holds_it_and_opened_once_released(tmp_path, caplog):
    path = tmp_path / "held.duckdb"
    with connect(path):
        pass
    clock = FakeClock()
    with held_until_released(path) as hold:

        def sleep(seconds: float) -> None:
            clock.sleep(seconds)
            if len(clock.slept) == 5:  # the analyst closes their session while we wait
                hold.release()

        with caplog.at_level(logging.INFO), connect(path, clock=clock, sleep=sleep) as con:
            assert con.execute("select 42").fetchone() == (42,)
    [message] = waiting_messages(caplog)  # once, however many retries
    assert str(path) in message and f"PID {hold.pid}" in message
    assert "up to 600 s" in message  # the default bound for a run's step
    assert len(clock.slept) >= 5
    [freed] = [r.getMessage() for r in caplog.records if "was free after" in r.getMessage()]
    assert freed == f"{path.resolve()} was free after {clock.now:.2f} s"  # how long the wait was, for the run's log


def test_a_file_held_past_the_bound_fails_saying_which_file_how_long_and_what_to_close(tmp_path, caplog):
    path = tmp_path / "held.duckdb"
    with connect(path):
        pass
    clock = FakeClock()
    with held_until_released(path) as hold, pytest.raises(WarehouseBusy) as busy:
        connect(path, wait_seconds=120, clock=clock, sleep=clock.sleep).__enter__()
    message = str(busy.value)
    assert str(path) in message and f"PID {hold.pid}" in message
    assert "waited 120 s" in message
    assert "close" in message and "read-write" in message
    assert 120 <= clock.now <= 122  # waited its bound, not a silent 30 s
    assert len(waiting_messages(caplog)) == 1


def test_the_warehouse_resource_waits_ten_minutes_by_default_and_can_be_told_otherwise(tmp_path):
    assert WarehouseResource(path=str(tmp_path / "w.duckdb")).open().wait_seconds == 600
    assert WarehouseResource(path=str(tmp_path / "w.duckdb"), wait_seconds=30).open().wait_seconds == 30
    assert Warehouse(tmp_path / "w.duckdb", wait_seconds=5).wait_seconds == 5


def test_a_run_that_finds_the_file_held_logs_that_it_waits_and_succeeds_once_it_is_released(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with connect(path):
        pass

    @dg.asset
    def touched(warehouse: WarehouseResource) -> None:
        with warehouse.open().connect() as con:
            con.execute("create table touched as select 1 as n")

    with held_until_released(path) as hold:

        class ReleaseOnWaiting(logging.Handler):  # the analyst closes their session once we said we wait
            def emit(self, record: logging.LogRecord) -> None:
                if "waiting" in record.getMessage():
                    hold.release()

        handler = ReleaseOnWaiting()
        logging.getLogger("dagster").addHandler(handler)
        try:
            with dg.instance_for_test() as instance:
                resources = {"warehouse": WarehouseResource(path=str(path))}
                result = dg.materialize([touched], resources=resources, instance=instance)
                run_log = [entry.user_message for entry in instance.all_logs(result.run_id)]
        finally:
            logging.getLogger("dagster").removeHandler(handler)
    assert result.success
    [waiting] = [message for message in run_log if "waiting up to 600 s" in message]  # in the run's own log
    assert str(path) in waiting and f"PID {hold.pid}" in waiting
    with connect(path) as con:
        assert con.execute("select n from touched").fetchone() == (1,)


def test_a_read_only_open_waits_too(tmp_path):
    path = tmp_path / "held.duckdb"
    with connect(path):
        pass
    clock = FakeClock()
    with held_until_released(path), pytest.raises(WarehouseBusy):
        connect(path, read_only=True, wait_seconds=3, clock=clock, sleep=clock.sleep).__enter__()
    assert clock.now >= 3


def test_a_warehouse_killed_before_its_migrations_were_checkpointed_opens_with_them_and_its_rows(tmp_path, caplog):
    path = tmp_path / "warehouse.duckdb"
    killed = textwrap.dedent(f"""
        import os
        import duckdb
        from mx_pipeline.warehouse.migrate import MIGRATIONS
        con = duckdb.connect({str(path)!r})
        con.execute("set checkpoint_threshold = '1TB'")  # nothing reaches the file before the kill
        for script in sorted(MIGRATIONS.glob("*.sql")):  # committed, but killed before apply_migrations checkpoints
            con.execute(script.read_text())
            con.execute("insert into ops.schema_migrations (version) values (?)", [script.stem])
        con.execute("insert into ops.quarantine values (now(), 'run', 'raw.mx_users', null, null, 'kept', null)")
        os._exit(9)  # killed: no checkpoint, no close
    """)
    subprocess.run([sys.executable, "-c", killed], check=False, timeout=120)
    assert path.with_name("warehouse.duckdb.wal").exists()

    with caplog.at_level(logging.WARNING), connect(path) as con:  # DuckDB 2.0.1 alone fails to replay this log
        assert con.execute("select reason from ops.quarantine").fetchall() == [("kept",)]
    assert any("write-ahead log" in r.getMessage() for r in caplog.records)
