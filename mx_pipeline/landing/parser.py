"""The process's one landing parser: a thread with an in-memory DuckDB, where landed files are parsed and written."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import duckdb

from mx_pipeline.landing.area import LandingArea

T = TypeVar("T")
_PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-parser")
_parser_connection: duckdb.DuckDBPyConnection | None = None  # used on the parser's thread only


def on_parser(area: LandingArea, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Run ``work`` on the process's one parsing thread, with its in-memory DuckDB, and wait for it.

    One thread, not a slot per reading thread: DuckDB's allocator keeps per thread what a parse used, so parses
    spread over 8 reading threads held about 50 MiB more at 300k rows, for no speed (measured in
    ``transactions.py``). A database in memory, opened once: a new one costs tens of milliseconds, and its 256 MB
    pool bounds the parse.
    """
    return _PARSER.submit(_run_on_parser, area, work).result()


def _run_on_parser(area: LandingArea, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    global _parser_connection
    if _parser_connection is None:
        _parser_connection = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "256MB"})
        _parser_connection.execute("set TimeZone = 'UTC'")
    area.attach(_parser_connection)
    return work(_parser_connection)
