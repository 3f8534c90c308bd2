"""Members read side by side: a bounded pool of threads maps one read over a step's members (a member's, or a
user's members read by one list of the user's).

MX's latency and our own pacing (``mx/rate_limit.py``: at least ``per_member_interval`` between two requests
for one member) are waits, and reading members one at a time lets nothing overlap them. The threads share the
step's one client (one pooled session, one thread-safe limiter: the global, per-user and per-member rules hold
across threads) and the one warehouse, whose writes ``warehouse/connection.py`` serializes within the process.
No thread holds the write lock while it waits on MX: a batch is written between two pages.

A member's read handles its own failures (a read MX refused is recorded, never raised), so one member never
stops the others. Anything else a read raises is a bug: the members not started yet are left (the next run
reads them, as when the step failed part-way reading them one at a time), those in flight finish and write
what they read, and the first error fails the step.
"""

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

M = TypeVar("M")
R = TypeVar("R")


def read_each(read: Callable[[M], R], members: Iterable[M], *, concurrency: int) -> Iterator[tuple[M, R]]:
    """``(member, read(member))`` for every member, as each finishes, at most ``concurrency`` at a time.

    With ``concurrency`` 1 (or one member) every read runs in the caller's thread, in order, as a plain loop
    would. The pairs are yielded in the caller's thread: what it does with them needs no lock.
    """
    members = list(members)
    if concurrency <= 1 or len(members) <= 1:
        for member in members:
            yield member, read(member)
        return
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(members)), thread_name_prefix="mx-read")
    try:
        pending: dict[Future, M] = {pool.submit(read, member): member for member in members}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                member = pending.pop(future)
                if future.exception() is not None:
                    pool.shutdown(wait=True, cancel_futures=True)  # in-flight reads finish and write; no new ones
                    raise future.exception()
                yield member, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
