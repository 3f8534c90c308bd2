import simplejson

from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.mx.records import Transaction
from mx_pipeline.warehouse import ApiCallLog, RawLoader
from mx_pipeline.warehouse.rows import transaction_row
from mx_pipeline.warehouse.tables import TRANSACTIONS

from .conftest import make_transaction


def _loader(warehouse, **kwargs):
    return RawLoader(warehouse, TRANSACTIONS, transaction_row, run_id="run-1", **kwargs)


def _quarantine(warehouse):
    with warehouse.connect() as con:
        return con.execute("select record_guid, reason, payload from ops.quarantine order by record_guid").fetchall()


def test_rows_pandera_rejects_go_to_quarantine_with_reason_and_payload(warehouse):
    good = make_transaction("TRN-GOOD")
    odd_status = make_transaction("TRN-ODD", status="SETTLING")
    too_precise = make_transaction("TRN-PRECISE", amount="1.234567")  # would be rounded by DECIMAL(18, 4)
    with _loader(warehouse) as load:
        for txn in (good, odd_status, too_precise):
            load.add(txn)
    assert load.counts.inserted == 1 and load.quarantined == 2
    (odd, precise) = _quarantine(warehouse)
    assert odd[0] == "TRN-ODD" and "status" in odd[1] and simplejson.loads(odd[2])["status"] == "SETTLING"
    assert precise[0] == "TRN-PRECISE" and "amount" in precise[1]


def test_a_record_the_client_could_not_parse_is_quarantined_not_lost(warehouse):
    payload = {"guid": "TRN-TEXT-AMOUNT", "amount": "12.50", "member_guid": "MBR-1"}
    try:
        Transaction.from_payload(payload)
    except MalformedRecord as exc:
        error = exc
    with _loader(warehouse) as load:
        load.reject(error, "MBR-1")
    ((guid, reason, stored),) = _quarantine(warehouse)
    assert guid == "TRN-TEXT-AMOUNT" and "amount" in reason
    assert simplejson.loads(stored) == payload


def test_batches_are_written_as_they_fill(warehouse):
    load = _loader(warehouse, batch_size=10)
    for _ in range(25):
        load.add(make_transaction())
    with warehouse.connect() as con:
        assert con.execute("select count(*) from raw.mx_transactions").fetchone() == (20,)
    load.flush()
    assert load.counts.inserted == 25


def test_api_calls_are_written_with_the_batch(warehouse):
    from datetime import UTC, datetime

    from mx_pipeline.mx import ApiCall

    log = ApiCallLog("run-1")
    log(ApiCall(datetime.now(UTC), "GET", "/users/{user_guid}/members", 200, 12.5, 1, None, "USR-1", None, None))
    with _loader(warehouse, api_log=log) as load:
        load.add(make_transaction())
    with warehouse.connect() as con:
        rows = con.execute("select run_id, method, path_template, status, user_guid from ops.api_calls").fetchall()
    assert rows == [("run-1", "GET", "/users/{user_guid}/members", 200, "USR-1")]
