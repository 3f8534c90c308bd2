"""Another process holding a DuckDB file read-write until the test releases it (an analyst's open session)."""

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path


class Hold:
    """A child process with the file open; it never lets go on its own, so no test depends on the machine's speed."""

    def __init__(self, path: Path | str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys, duckdb
                con = duckdb.connect({str(path)!r})
                print("held", flush=True)
                sys.stdin.readline()
                con.close()
                print("released", flush=True)
                sys.stdin.readline()
            """)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.pid = self._process.pid
        self.released = False
        assert self._process.stdout.readline().strip() == "held"

    def release(self) -> None:
        """Close the file in the child; returns once it is closed. Releasing twice is harmless."""
        if not self.released:
            self.released = True
            self._process.stdin.write("\n")
            self._process.stdin.flush()
            assert self._process.stdout.readline().strip() == "released"

    def end(self) -> None:
        self._process.kill()
        self._process.wait()
        self._process.stdin.close()
        self._process.stdout.close()


@contextlib.contextmanager
def held_until_released(path: Path | str) -> Iterator[Hold]:
    hold = Hold(path)
    try:
        yield hold
    finally:
        hold.end()
