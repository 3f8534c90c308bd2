"""The baseline of bench_ingest.py: MX's official Python SDK in the plain loop an integrator would write.

Every user, each user's members, each member's accounts and transactions (every page, 1,000 records a page,
MX's largest), into pandas, then one DuckDB write. Runs in its own venv (the SDK pins pydantic<2, dagster
needs 2), so it imports nothing of the project:

    .venv/sdk/bin/python mx_pipeline_tests/benchmarks/sdk_loop.py BASE_URL CLIENT_ID API_KEY FROM_DATE DB

and prints one JSON line: seconds (from the first request to the committed write), requests, transactions.
"""

import json
import sys
import time
from functools import partial

import duckdb
import mx_platform_python as mx
import pandas as pd

PAGE = 1000


def main() -> None:
    base_url, client_id, api_key, from_date, database = sys.argv[1:6]
    configuration = mx.Configuration(host=base_url, username=client_id, password=api_key)
    with mx.ApiClient(configuration) as api:
        requests = _counting_requests(api)
        users, members = mx.UsersApi(api), mx.MembersApi(api)
        accounts_api, transactions_api = mx.AccountsApi(api), mx.TransactionsApi(api)
        started = time.monotonic()
        accounts, transactions = [], []
        for user in _every(users.list_users, "users"):
            for member in _every(partial(members.list_members, user.guid), "members"):
                listed = _every(partial(accounts_api.list_member_accounts, user.guid, member.guid), "accounts")
                accounts += [a.to_dict() for a in listed]
                listed = _every(
                    partial(transactions_api.list_transactions_by_member, member.guid, user.guid, from_date=from_date),
                    "transactions",
                )
                transactions += [t.to_dict() for t in listed]
        frames = {"accounts": pd.DataFrame(accounts), "transactions": pd.DataFrame(transactions)}
        with duckdb.connect(database) as con:
            for table, frame in frames.items():
                con.register(f"{table}_frame", frame)
                con.execute(f"create table {table} as select * from {table}_frame")
        seconds = time.monotonic() - started
    print(json.dumps({"seconds": seconds, "requests": requests[0], "transactions": len(frames["transactions"])}))


def _every(list_page, field: str):
    page = 1
    while True:
        body = list_page(page=page, records_per_page=PAGE)
        yield from getattr(body, field) or []
        if page >= (body.pagination.total_pages or 1):
            return
        page += 1


def _counting_requests(api: mx.ApiClient) -> list[int]:
    """Count every HTTP request the SDK sends (its REST client's one entry point)."""
    count = [0]
    send = api.rest_client.request

    def counted(*args, **kwargs):
        count[0] += 1
        return send(*args, **kwargs)

    api.rest_client.request = counted
    return count


if __name__ == "__main__":
    main()
