"""Records convert MX's JSON once, exactly, and name the field when a payload breaks the contract."""

import datetime as dt
from decimal import Decimal

import pytest

from mx_pipeline.mx import ConnectionStatus, MalformedRecord
from mx_pipeline.mx.records import Account, Member, MemberStatus, Transaction, User, payload_json
from mx_pipeline.mx.statuses import CONNECTION_STATUS_IDS, END_USER_ACTIONABLE
from mx_pipeline_tests.contract import spec_path
from mx_pipeline_tests.mx import payloads as p


def test_money_is_decimal_and_never_passes_through_float():
    account = Account.from_payload(p.account() | {"balance": Decimal("1000.10")})
    assert account.balance == Decimal("1000.10")
    assert str(account.balance) == "1000.10"


def test_a_float_from_a_plain_json_parser_is_converted_by_its_shortest_repr():
    assert Transaction.from_payload(p.transaction(amount=0.1)).amount == Decimal("0.1")


def test_timestamps_are_utc_and_dates_stay_dates():
    txn = Transaction.from_payload(p.transaction(transacted_at="2026-11-20T08:00:00-05:00"))
    assert txn.transacted_at == dt.datetime(2026, 11, 20, 13, tzinfo=dt.UTC)
    assert txn.date == dt.date(2026, 11, 20)


def test_naive_timestamps_are_read_as_utc_not_local_time():
    txn = Transaction.from_payload(p.transaction(posted_at="2026-11-21T12:00:00"))
    assert txn.posted_at.tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not an object", "Transaction: expected a JSON object"),
        (p.transaction(guid=None), "Transaction.guid is missing or null"),
        (p.transaction(amount="61.11"), "Transaction.amount: expected a number"),
        (p.transaction(amount=True), "Transaction.amount: expected a number"),
        (p.transaction(merchant_category_code="5411"), "Transaction.merchant_category_code: expected an integer"),
        (p.transaction(posted_at=1700000000), "Transaction.posted_at: expected a string"),
    ],
)
def test_contract_breaches_are_rejected_with_the_field_named(payload, reason):
    with pytest.raises(MalformedRecord, match=reason.replace(".", r"\.")):
        Transaction.from_payload(payload)


def test_new_fields_from_mx_are_kept_in_the_payload():
    txn = Transaction.from_payload(p.transaction(brand_new_field={"x": 1}))
    assert txn.payload["brand_new_field"] == {"x": 1}


def test_payload_json_writes_numbers_exactly_as_received():
    assert payload_json({"amount": Decimal("61.10"), "n": 3}) == '{"amount":61.10,"n":3}'


def test_email_is_personal_data_and_stays_out_of_reprs():
    assert "someone@example.com" not in repr(User.from_payload(p.user()))


def test_member_status_is_done_only_when_connected_and_idle():
    assert MemberStatus.from_payload(p.member_status("CONNECTED")).is_done_aggregating
    assert not MemberStatus.from_payload(p.member_status("CONNECTED", aggregating=True)).is_done_aggregating
    assert not MemberStatus.from_payload(p.member_status("CHALLENGED")).is_done_aggregating


def test_null_status_is_none_not_an_error():
    assert Member.from_payload(p.member(status=None)).status is None


def test_status_vocabulary_is_mx_s_own():
    import yaml

    newer = spec_path().with_name("v20250224.yml")
    if not newer.is_file():
        pytest.skip(f"{newer} not found")
    spec = yaml.safe_load(newer.read_text())
    enum = spec["components"]["schemas"]["MemberResponse"]["properties"]["connection_status"]["enum"]
    assert {s for s in enum if s is not None} == {s.value for s in ConnectionStatus}
    assert CONNECTION_STATUS_IDS[ConnectionStatus.CREATED] == 0
    assert ConnectionStatus.CONNECTED.id == 6 and ConnectionStatus.PENDING.id == 21
    assert len(END_USER_ACTIONABLE) == 8
