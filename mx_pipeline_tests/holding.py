"""Another process holding a DuckDB file, as a running Dagster step would: DuckDB admits one process per file."""

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def held_by_another_process(path: Path | str, seconds: float = 30) -> Iterator[None]:
    """``path`` is open in a child process until the block ends (or ``seconds`` pass)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, time
            con = duckdb.connect({str(path)!r})
            print("held", flush=True)
            time.sleep({seconds})
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
