import time

import pytest

from mx_pipeline.warehouse import WarehouseBusy, connect
from mx_pipeline_tests.holding import held_by_another_process


def test_a_file_held_by_another_process_is_waited_for_then_reported_busy(tmp_path):
    path = tmp_path / "held.duckdb"
    with connect(path):
        pass
    with held_by_another_process(path, seconds=3):
        started = time.monotonic()
        with pytest.raises(WarehouseBusy, match="held by another process"), connect(path, wait_seconds=0.5):
            pass
        assert time.monotonic() - started >= 0.3
        with connect(path, wait_seconds=10) as con:  # waits for the holder to let go
            assert con.execute("select 1").fetchone() == (1,)
