"""Lists are read lazily, page by page, and bad records are handed over rather than lost."""

import json

import pytest
import responses

from mx_pipeline.mx import MalformedRecord, MalformedResponse
from mx_pipeline.mx.errors import ListShifted
from mx_pipeline.mx.records import payload_json
from mx_pipeline_tests.mx import payloads as p
from mx_pipeline_tests.mx.payloads import BASE_URL, MEMBER_GUID, MX_MEDIA_TYPE, USER_GUID

TXN_URL = f"{BASE_URL}/users/{USER_GUID}/members/{MEMBER_GUID}/transactions"


def serve_page(mx_api, page, total_pages, items, total_entries=None):
    entries = total_pages * len(items) if total_entries is None else total_entries
    body = {
        "transactions": items,
        "pagination": p.pagination(page=page, total_pages=total_pages, total_entries=entries),
    }
    matcher = responses.matchers.query_param_matcher({"page": str(page)}, strict_match=False)
    mx_api.add("GET", TXN_URL, json=body, content_type=MX_MEDIA_TYPE, match=[matcher])


def test_pages_are_fetched_only_as_records_are_consumed(mx_api, client):
    for page in (1, 2, 3):
        serve_page(mx_api, page, 3, [p.transaction(guid=f"TRN-{page}-{i}") for i in range(2)])
    stream = client.list_member_transactions(USER_GUID, MEMBER_GUID)
    assert len(mx_api.calls) == 0
    first = next(stream)
    assert first.guid == "TRN-1-0" and len(mx_api.calls) == 1
    rest = [t.guid for t in stream]
    assert rest == ["TRN-1-1", "TRN-2-0", "TRN-2-1", "TRN-3-0", "TRN-3-1"]
    assert len(mx_api.calls) == 3


def test_a_page_freed_as_soon_as_it_is_used_still_leads_to_the_next(mx_api, client):
    for page in (1, 2, 3):
        serve_page(mx_api, page, 3, [p.transaction(guid=f"TRN-{page}-{i}") for i in range(2)])
    listed = []
    for page in client.list_member_transaction_pages(USER_GUID, MEMBER_GUID):
        listed += sorted(page.guids())
        page.discard()
    assert listed == ["TRN-1-0", "TRN-1-1", "TRN-2-0", "TRN-2-1", "TRN-3-0", "TRN-3-1"]


def test_iteration_stops_at_the_last_page_mx_reports(mx_api, client):
    serve_page(mx_api, 1, 1, [p.transaction()])
    assert len(list(client.list_member_transactions(USER_GUID, MEMBER_GUID))) == 1
    assert len(mx_api.calls) == 1


def test_an_empty_page_ends_iteration_even_if_total_pages_says_more(mx_api, client):
    serve_page(mx_api, 1, 5, [])
    assert list(client.list_member_transactions(USER_GUID, MEMBER_GUID)) == []
    assert len(mx_api.calls) == 1


def test_a_list_whose_count_changes_between_its_pages_raises_before_the_moved_page_is_used(mx_api, client):
    serve_page(mx_api, 1, 2, [p.transaction(guid="TRN-1")], total_entries=2)
    serve_page(mx_api, 2, 2, [p.transaction(guid="TRN-3")], total_entries=3)  # MX added TRN-2 meanwhile
    listed = []
    with pytest.raises(ListShifted, match="the list changed while it was read: 2 records on page 1, 3 on page 2"):
        for page in client.list_member_transaction_pages(USER_GUID, MEMBER_GUID):
            listed += page.guids()
    assert listed == ["TRN-1"]


@pytest.mark.off_contract
def test_a_list_without_a_count_is_read_to_its_last_page(mx_api, client):
    for page in (1, 2):
        body = {"transactions": [p.transaction(guid=f"TRN-{page}")], "pagination": {"total_pages": 2}}
        matcher = responses.matchers.query_param_matcher({"page": str(page)}, strict_match=False)
        mx_api.add("GET", TXN_URL, json=body, content_type=MX_MEDIA_TYPE, match=[matcher])
    assert [t.guid for t in client.list_member_transactions(USER_GUID, MEMBER_GUID)] == ["TRN-1", "TRN-2"]


@pytest.mark.off_contract
@pytest.mark.parametrize(
    "body",
    [
        {"pagination": p.pagination()},  # no list at all
        {"transactions": {"guid": "TRN-1"}, "pagination": p.pagination()},  # an object where a list belongs
        {"transactions": [], "pagination": {"total_pages": "many"}},
    ],
)
def test_a_list_body_that_breaks_the_envelope_is_rejected(mx_api, client, body):
    mx_api.add("GET", TXN_URL, json=body, content_type=MX_MEDIA_TYPE)
    with pytest.raises(MalformedResponse):
        list(client.list_member_transactions(USER_GUID, MEMBER_GUID))


@pytest.mark.off_contract
def test_a_malformed_record_raises_by_default_with_its_reason(mx_api, client):
    serve_page(mx_api, 1, 1, [p.transaction(amount="12.00")])
    with pytest.raises(MalformedRecord, match=r"Transaction.amount: expected a number") as raised:
        list(client.list_member_transactions(USER_GUID, MEMBER_GUID))
    assert raised.value.payload["amount"] == "12.00"
    assert raised.value.path.endswith("/transactions")


@pytest.mark.off_contract
def test_malformed_records_can_be_quarantined_while_the_rest_flows(mx_api, client):
    good, bad = p.transaction(guid="TRN-good"), p.transaction(guid=None)
    serve_page(mx_api, 1, 2, [bad, good], total_entries=3)
    serve_page(mx_api, 2, 2, [p.transaction(guid="TRN-good-2", date="not-a-date")], total_entries=3)
    quarantined = []
    kept = list(client.list_member_transactions(USER_GUID, MEMBER_GUID, on_malformed=quarantined.append))
    assert [t.guid for t in kept] == ["TRN-good"]
    assert [str(q).split(" [")[0] for q in quarantined] == [
        "Transaction.guid is missing or null",
        "Transaction.date: Invalid isoformat string: 'not-a-date' (got 'not-a-date')",
    ]
    # The payload travels with the reason, intact: numbers exactly as MX sent them.
    assert json.loads(payload_json(quarantined[0].payload))["amount"] == 61.11
