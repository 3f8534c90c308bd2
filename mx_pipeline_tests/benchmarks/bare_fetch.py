"""bench_ingest.py's bare contender: the SDK loop's requests, sent by a pool of threads, nothing kept.

Each member's accounts and transactions are read page by page (1,000 records a page, as the SDK loop asks), members
side by side; a body is decoded only to follow its pages and count its records. What it takes is what serving,
the wire and decoding alone cost here: no contender that keeps what it reads can be faster.
"""

import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import requests

from mx_pipeline.mx.transport import MX_MEDIA_TYPE
from mx_pipeline_tests.benchmarks.ingest_harness import IngestRun

PAGE = 1000


def bare_fetch(base_url: str, client_id: str, api_key: str, from_date: dt.date, concurrency: int) -> IngestRun:
    """Every user, their members, and each member's accounts and transactions since ``from_date``."""
    with requests.Session() as session:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.auth = (client_id, api_key)
        session.headers["Accept"] = MX_MEDIA_TYPE
        reader = _Reader(session, base_url)
        started = time.monotonic()
        users = [u["guid"] for u in reader.every("/users", "users")]
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            members = [
                (user, m["guid"])
                for user, listed in zip(users, pool.map(reader.members_of, users), strict=True)
                for m in listed
            ]
            transactions = sum(pool.map(lambda um: reader.read_member(*um, from_date), members))
        return IngestRun(time.monotonic() - started, reader.requests, reader.rate_limited, transactions)


class _Reader:
    def __init__(self, session: requests.Session, base_url: str) -> None:
        self.session, self.base_url = session, base_url
        self.requests = self.rate_limited = 0  # += from many threads: exact enough under the GIL for a count

    def members_of(self, user: str) -> list[dict]:
        return list(self.every(f"/users/{user}/members", "members"))

    def read_member(self, user: str, member: str, from_date: dt.date) -> int:
        for _ in self.every(f"/users/{user}/members/{member}/accounts", "accounts"):
            pass
        path = f"/users/{user}/members/{member}/transactions"
        return sum(1 for _ in self.every(path, "transactions", from_date=from_date.isoformat()))

    def every(self, path: str, field: str, **params: str) -> Iterator[dict]:
        page = 1
        while True:
            response = self.session.get(
                self.base_url + path, params={**params, "page": page, "records_per_page": PAGE}, timeout=60
            )
            self.requests += 1
            self.rate_limited += response.status_code == 429
            response.raise_for_status()
            body = response.json()
            yield from body[field]
            if page >= (body["pagination"]["total_pages"] or 1):
                return
            page += 1
