"""The process's one landing parser: a thread with an in-memory DuckDB, where landed files are parsed and written.

What a parse frees is handed back to the system at once (glibc's ``malloc_trim``, as Dask's workers do): glibc
keeps freed memory in its arenas, one for each thread that allocated, and DuckDB's and the reading threads' freed
pages otherwise stayed in the process until the run ended. On 975,682 transactions read 8 members at once, the
read's peak fell from 388-399 MiB to 378 (RSS sampled through the run ``bench_ingest_1m.py`` makes).
"""

import ctypes
import ctypes.util
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


def release_parser() -> None:
    """Close the parser's database and hand its memory back, once the process's reads are done: the steps after
    them (the load) need it more. The next parse opens a new one."""
    _PARSER.submit(_close).result()


def _run_on_parser(area: LandingArea, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    global _parser_connection
    if _parser_connection is None:
        _parser_connection = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "256MB"})
        _parser_connection.execute("set TimeZone = 'UTC'")
    area.attach(_parser_connection)
    try:
        return work(_parser_connection)
    finally:
        _trim()


def _close() -> None:
    global _parser_connection
    if _parser_connection is not None:
        _parser_connection.close()
        _parser_connection = None
    _trim()


def _glibc_trim() -> Callable[[int], int]:
    """glibc's ``malloc_trim``; a no-op where the C library has none (macOS, musl)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return getattr(libc, "malloc_trim", lambda pad: 0)


_malloc_trim = _glibc_trim()


def _trim() -> None:
    _malloc_trim(0)
