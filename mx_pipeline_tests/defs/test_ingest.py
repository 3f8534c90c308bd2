"""The ingest assets materialized in-process against the sandbox, compared with the sandbox's own truth."""

import dagster as dg

from mx_pipeline.mx import ConnectionStatus

from .conftest import metadata_of


def _connected_truth(world):
    with world.lock:
        connected = {g for g, m in world.members.items() if m.connection_status is ConnectionStatus.CONNECTED}
        accounts = {a.guid for a in world.accounts.values() if a.member_guid in connected}
        transactions = {t.guid for m in connected for t in world.transactions.get(m, {}).values()}
    return connected, accounts, transactions


def test_materialize_lands_exactly_the_sandbox_truth(pipeline):
    result = pipeline.materialize()
    assert result.success
    world = pipeline.sandbox.world
    connected, accounts, transactions = _connected_truth(world)
    assert len(connected) == 2
    assert {g for (g,) in pipeline.query("select guid from raw.mx_users")} == set(world.users)
    assert {g for (g,) in pipeline.query("select guid from raw.mx_members")} == set(world.members)
    assert {g for (g,) in pipeline.query("select guid from raw.mx_accounts")} == accounts
    assert {g for (g,) in pipeline.query("select guid from raw.mx_transactions")} == transactions
    statuses = dict(pipeline.query("select guid, connection_status from raw.mx_member_status"))
    assert statuses == {g: m.connection_status.value for g, m in world.members.items()}
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_every_amount_matches_the_sandbox_to_the_cent(pipeline):
    pipeline.materialize()
    with pipeline.sandbox.world.lock:
        truth = {t.guid: t for rows in pipeline.sandbox.world.transactions.values() for t in rows.values()}
    for guid, amount, date, status in pipeline.query("select guid, amount, date, status from raw.mx_transactions"):
        assert (f"{amount:.2f}", date, status) == (f"{truth[guid].amount:.2f}", truth[guid].date, truth[guid].status)


def test_a_second_materialization_with_no_upstream_change_writes_no_new_rows(pipeline):
    pipeline.materialize()
    before = pipeline.query("select count(*), max(fetched_at) from raw.mx_transactions")
    second = metadata_of(pipeline.materialize())
    for table in ("raw.mx_users", "raw.mx_members", "raw.mx_member_status", "raw.mx_accounts", "raw.mx_transactions"):
        assert (second[table]["inserted"], second[table]["updated"]) == (0, 0), table
    assert second["ops.member_routes"]["notifications_decided"] == 0  # nobody is told twice
    assert pipeline.query("select count(*), max(fetched_at) from raw.mx_transactions") == before


def test_every_api_call_is_recorded_without_credentials(pipeline):
    result = pipeline.materialize()
    calls = pipeline.query("select run_id, method, path_template, status from ops.api_calls")
    assert len(calls) == sum(m.get("api_calls", 0) for m in metadata_of(result).values())
    assert {run for run, *_ in calls} == {result.run_id}
    assert all("{" in path or path == "/users" for _, _, path, _ in calls)  # templates, never real guids
    assert not pipeline.query("select * from ops.api_calls where error like '%sandbox-api-key%'")


def test_new_upstream_transactions_arrive_incrementally(pipeline):
    pipeline.materialize()
    created = pipeline.admin(f"members/{pipeline.member_of['user-ok-1']}/transactions", count=3)["created"]
    result = pipeline.materialize()
    assert metadata_of(result)["raw.mx_transactions"]["inserted"] == 3
    new = {g for (g,) in pipeline.query("select guid from raw.mx_transactions where run_id = ?", result.run_id)}
    assert new == set(created)


def test_a_member_going_challenged_between_runs_is_not_fetched_and_is_recorded(pipeline):
    member = pipeline.member_of["user-ok-2"]
    pipeline.materialize()
    (before,) = pipeline.query("select count(*) from raw.mx_transactions where member_guid = ?", member)
    pipeline.admin(f"members/{member}/transactions", count=2)
    pipeline.admin(f"members/{member}/connection_status", connection_status="CHALLENGED")
    result = pipeline.materialize()
    assert pipeline.query("select count(*) from raw.mx_transactions where member_guid = ?", member) == [before]
    assert pipeline.query("select last_outcome, last_reason from ops.member_sync where member_guid = ?", member) == [
        ("skipped", "needs_mfa (CHALLENGED)")
    ]
    history = pipeline.query(
        "select connection_status from ops.member_status_history where member_guid = ? order by checked_at", member
    )
    assert history == [("CONNECTED",), ("CHALLENGED",)]
    assert member in metadata_of(result)["raw.mx_transactions"]["members_not_fetched"]


def test_a_pending_transaction_that_vanishes_upstream_is_marked_removed(pipeline):
    member = pipeline.member_of["user-ok-1"]
    pipeline.materialize()
    world = pipeline.sandbox.world
    with world.lock:
        vanished = next(t.guid for t in world.transactions[member].values() if t.status == "PENDING")
        del world.transactions[member][vanished]  # MX deletes pending rows without any update to see
        world.members[member].successfully_aggregated_at = world.now()  # in an aggregation, which it reports
    metadata = metadata_of(pipeline.materialize())["raw.mx_transactions"]
    assert metadata["vanished_marked_removed"] == 1
    assert pipeline.query("select guid from raw.mx_transactions where removed_at is not null") == [(vanished,)]


def test_malformed_records_are_quarantined_and_the_rest_is_loaded(pipeline):
    member = pipeline.member_of["user-ok-1"]
    world = pipeline.sandbox.world
    with world.lock:
        first, second = list(world.transactions[member].values())[:2]
        first.amount = "12.50"  # a quoted number: the spec says JSON number
        second.status = "SETTLING"  # not a status MX documents
    result = pipeline.materialize()
    quarantined = dict(pipeline.query("select record_guid, reason from ops.quarantine"))
    assert set(quarantined) == {first.guid, second.guid}
    assert "amount" in quarantined[first.guid] and "status" in quarantined[second.guid]
    _, _, transactions = _connected_truth(world)
    loaded = {g for (g,) in pipeline.query("select guid from raw.mx_transactions")}
    assert loaded == transactions - {first.guid, second.guid}
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"nothing_quarantined"}


def test_end_users_from_the_csv_are_registered_with_mx_once(pipeline):
    pipeline.users_csv.write_text(pipeline.users_csv.read_text() + "user-new\n")
    world = pipeline.sandbox.world
    existing = len(world.users)
    first = metadata_of(pipeline.materialize())["raw.mx_users"]
    with world.lock:
        guid_of = {u.id: u.guid for u in world.users.values()}
    assert len(guid_of) == existing + 1 and "user-new" in guid_of  # the others were found by id, not re-created
    assert first["users_registered"] == len(guid_of)
    assert dict(pipeline.query("select id, mx_user_guid from ops.end_users")) == guid_of
    assert metadata_of(pipeline.materialize())["raw.mx_users"]["users_registered"] == 0


def test_a_users_csv_that_is_not_there_fails_the_run_saying_which_and_registers_nobody(pipeline):
    missing = pipeline.users_csv.with_name("usres.csv")  # mistyped
    result = pipeline.materialize(ops={"raw__mx_users": {"config": {"users_csv": str(missing)}}}, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "raw__mx_users.plan_users"
    assert f"the users CSV {missing} does not exist" in failure.step_failure_data.error.message
    assert pipeline.query("select count(*) from ops.end_users") == [(0,)]


def test_an_empty_users_csv_setting_reads_no_csv(pipeline):
    assert pipeline.materialize(ops={"raw__mx_users": {"config": {"users_csv": ""}}}).success
    assert pipeline.query("select count(*) from ops.end_users") == [(0,)]


def test_the_default_users_csv_is_read_only_where_it_is_there(pipeline, monkeypatch):
    """The default names the demo's users, which the image leaves out: there, a run registers nobody from a CSV."""
    absent = pipeline.users_csv.with_name("demo_users.csv")
    monkeypatch.setattr("mx_pipeline.defs.ingest.users.DEMO_USERS_CSV", absent)
    assert pipeline.materialize(ops={"raw__mx_users": {"config": {"users_csv": str(absent)}}}).success
    assert pipeline.query("select count(*) from ops.end_users") == [(0,)]
