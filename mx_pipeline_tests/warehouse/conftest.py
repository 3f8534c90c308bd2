"""Fixtures for warehouse tests: a fresh DuckDB file per test and MX-shaped records to load."""

import datetime as dt
import itertools
import json
from decimal import Decimal

import pytest

from mx_pipeline.connect.spool import SpooledEvent
from mx_pipeline.mx.records import Transaction
from mx_pipeline.warehouse import Warehouse
from mx_pipeline.warehouse.member_events import store_spooled

_serial = itertools.count(1)


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


@pytest.fixture
def mx_bank_member(sandbox, sandbox_client) -> tuple[str, str]:
    """(user guid, member guid) of an MX Bank member connected through the API (needs a ``sandbox`` fixture)."""
    user = sandbox_client.ensure_user(id="user-1")
    fields = {c.field_name: c.guid for c in sandbox_client.list_institution_credentials("mxbank")}
    credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "password"}
    created = sandbox_client.create_member(user.guid, institution_code="mxbank", credentials=credentials)
    assert sandbox_client.read_member_status(user.guid, created.guid).connection_status == "CONNECTED"
    return user.guid, created.guid


def make_transaction(
    guid: str | None = None,
    *,
    member_guid: str = "MBR-1",
    status: str = "POSTED",
    amount: str = "12.34",
    date: dt.date = dt.date(2026, 11, 20),
    updated_at: dt.datetime = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC),
    **overrides,
) -> Transaction:
    """A Transaction record built the way the client builds one: from an MX-shaped payload."""
    payload = {
        "guid": guid or f"TRN-{next(_serial)}",
        "member_guid": member_guid,
        "account_guid": "ACT-1",
        "user_guid": "USR-1",
        "amount": Decimal(amount),
        "type": "DEBIT",
        "status": status,
        "currency_code": "USD",
        "date": date.isoformat(),
        "updated_at": updated_at.isoformat().replace("+00:00", "Z"),
        **overrides,
    }
    return Transaction.from_payload(payload)


def store_registration(cons, user_id: str, user_guid: str, received: dt.datetime) -> None:
    """The connect service's registration of ``user_id`` as MX user ``user_guid``, received at ``received``, stored
    (now) in each warehouse of ``cons`` as the events sensor stores it."""
    ns = int(received.timestamp() * 1e9)
    body = json.dumps({"user_id": user_id, "user_guid": user_guid})
    event = SpooledEvent(f"{ns:020d}-r.json", f"{user_id}:{user_guid}", "user_registered", ns, body, {})
    for con in cons:
        store_spooled(con, [event], run_id="events", now=received)
