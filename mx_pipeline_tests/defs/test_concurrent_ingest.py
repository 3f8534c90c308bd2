"""An ingest reading several members at once, against the sandbox with its per-user and per-member limits on.

The production pacing (the resource's defaults) keeps every member under MX's throttles while the reads of
different members overlap; overlap is proven with a gate, never with timings.
"""

import dagster as dg
import pytest
import requests

from mx_pipeline import settings
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.mx import MxClient
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse import Warehouse
from mx_pipeline_tests.defs.conftest import INGEST, LOCATION
from mx_pipeline_tests.defs.test_parallel import InFlight

CONNECTING_PASSWORDS = ("password", "CONNECTED")  # MX Bank's, each connecting a member
USERS, MEMBERS_PER_USER, CONCURRENCY = 5, len(CONNECTING_PASSWORDS), 4


@pytest.fixture
def world_of_members(tmp_path):
    """A sandbox (limits on, as configured by default) with USERS x MEMBERS_PER_USER connected members."""
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id\n" + "\n".join(f"user-{u}" for u in range(USERS)) + "\n")
    with (
        running_sandbox(seed=11) as sandbox,
        MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY) as client,
    ):
        fields = {c.field_name: c.guid for c in client.list_institution_credentials("mxbank")}
        for u in range(USERS):
            user = client.ensure_user(id=f"user-{u}")
            for password in CONNECTING_PASSWORDS:  # MX refuses a user the same credentials twice
                credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}
                client.create_member(user.guid, institution_code="mxbank", credentials=credentials)
        requests.post(f"{sandbox.base_url}/_sandbox/aggregations/finish", timeout=10).raise_for_status()
        yield sandbox, Warehouse(tmp_path / "warehouse.duckdb"), users_csv


def test_members_read_side_by_side_land_the_sandboxs_truth_with_no_member_throttled_or_degraded(
    world_of_members, monkeypatch
):
    sandbox, warehouse, users_csv = world_of_members
    in_flight = InFlight(gate_at=CONCURRENCY)  # each member's first page waits until CONCURRENCY are in flight
    pages = MxClient.list_member_transaction_pages

    def gated_pages(self, *args, **kwargs):
        with in_flight:
            yield from pages(self, *args, **kwargs)

    monkeypatch.setattr(MxClient, "list_member_transaction_pages", gated_pages)
    polite = MxResource(  # the production pacing: 20 requests/s overall, 0.5 s between two of one member
        base_url=sandbox.base_url,
        client_id=settings.SANDBOX_CLIENT_ID,
        api_key=settings.SANDBOX_API_KEY,
        concurrency=CONCURRENCY,
    )
    resources = {**LOCATION.resources, "mx": polite, "warehouse": WarehouseResource(path=str(warehouse.path))}
    run_config = {"ops": {"raw__mx_users": {"config": {"users_csv": str(users_csv)}}}}
    dg.materialize(INGEST, resources=resources, run_config=run_config)

    assert in_flight.most == CONCURRENCY  # the bound, reached and never passed
    world = sandbox.world
    with world.lock:
        member_429s = {k: n for k, n in world.rate_limited.items() if k.startswith("member:")}
        degraded = list(world.abuse_degradations)
        statuses = {m.connection_status.value for m in world.members.values()}
        truth = {g: (t.account_guid, f"{t.amount:.2f}", t.date, t.status) for r in world.transactions.values()
                 for g, t in r.items()}  # fmt: skip
        accounts = {g: (a.member_guid, f"{a.balance:.2f}") for g, a in world.accounts.items()}
    assert (member_429s, degraded, statuses) == ({}, [], {"CONNECTED"})
    with warehouse.connect() as con:
        ours = con.execute(
            "select guid, account_guid, printf('%.2f', amount), date, status from raw.mx_transactions"
        ).fetchall()
        our_accounts = con.execute("select guid, member_guid, printf('%.2f', balance) from raw.mx_accounts").fetchall()
        (members_read,) = con.execute("select count(distinct member_guid) from raw.mx_transactions").fetchone()
        (throttled,) = con.execute(
            "select count(*) from ops.api_calls where status = 429 and member_guid is not null"
        ).fetchone()
    assert len(truth) > 0 and {g: tuple(rest) for g, *rest in ours} == truth
    assert {g: tuple(rest) for g, *rest in our_accounts} == accounts
    assert (members_read, throttled) == (USERS * MEMBERS_PER_USER, 0)
