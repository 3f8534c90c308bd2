"""The numbers Dagster plots per materialization (README "What Dagster plots") are plain numbers, present every run,
and equal to what the warehouse (and the sandbox) hold."""

import requests

from mx_pipeline.lifecycle.notifier import NotificationState
from mx_pipeline.lifecycle.routes import Route

from .conftest import metadata_of
from .test_sync_failures import READS, scripted

INGEST_TABLES = ("raw.mx_users", "raw.mx_members", "raw.mx_member_status", "raw.mx_accounts", "raw.mx_transactions")
PER_RUN = ("inserted", "updated", "quarantined", "quarantined_total", "read_failures", "api_calls", "api_429s")


def _is_number(value) -> bool:
    return type(value) is int  # a bool or a JSON value is not plotted


def test_members_by_route_are_one_number_per_route_equal_to_member_health(pipeline):
    pipeline.admin(f"members/{pipeline.member_of['user-ok-2']}/connection_status", connection_status="DISABLED")
    metadata = metadata_of(pipeline.materialize())

    routes = metadata["ops.member_routes"]
    assert {key for key in routes if key.startswith("route/")} == {f"route/{r.value}" for r in Route}
    assert all(_is_number(routes[f"route/{r.value}"]) for r in Route)
    in_health = dict(pipeline.query("select route, count(*) from marts.member_health group by route"))
    assert {r.value: routes[f"route/{r.value}"] for r in Route} == {r.value: in_health.get(r.value, 0) for r in Route}
    assert (routes["route/ready"], routes["route/degraded"], routes["route/in_progress"]) == (1, 1, 0)

    outbox = metadata["ops.reconnect_notifications"]
    by_state = dict(pipeline.query("select state, count(*) from ops.reconnect_notifications group by state"))
    assert {s.value: outbox[f"outbox/{s.value}"] for s in NotificationState} == {
        s.value: by_state.get(s.value, 0) for s in NotificationState
    }
    assert outbox["outbox/logged"] == 3  # MFA, DENIED and DISABLED told at once; no backend configured

    health = metadata["marts.member_health"]
    [truth] = pipeline.query(
        "select count(*) filter (where is_stale and retired_at is null),"
        " count(*) filter (where last_sync_outcome = 'failed'), count(*) filter (where notification_state = 'dead')"
        " from marts.member_health"
    )
    assert (health["stale_members"], health["failed_syncs"], health["dead_notifications"]) == truth
    assert all(_is_number(health[k]) for k in ("stale_members", "failed_syncs", "dead_notifications"))


def test_failures_quarantine_and_rows_loaded_per_run_equal_the_warehouse(pipeline):
    member = pipeline.member_of["user-ok-1"]
    world = pipeline.sandbox.world
    with world.lock:
        first, second = list(world.transactions[member].values())[:2]
        first.amount = "12.50"  # a quoted number: quarantined
        second.status = "SETTLING"
    failing = pipeline.member_of["user-ok-2"]
    first_run = pipeline.materialize(
        raise_on_error=False, mx=scripted(pipeline, {READS["transactions"].format(member=failing): 500})
    )
    first_md = metadata_of(first_run)
    for table in INGEST_TABLES:
        assert all(_is_number(first_md[table][key]) for key in PER_RUN), table
    transactions = first_md["raw.mx_transactions"]
    kept = pipeline.query("select record_guid from ops.quarantine where table_name = 'raw.mx_transactions'")
    assert {first.guid, second.guid} <= {guid for (guid,) in kept}  # and the failed read
    assert transactions["quarantined"] == transactions["quarantined_total"] == len(kept) == 3
    assert (transactions["read_failures"], first_md["raw.mx_accounts"]["read_failures"]) == (1, 0)
    assert first_md["marts.member_health"]["failed_syncs"] == 1
    (loaded_first,) = pipeline.query("select count(*) from raw.mx_transactions")[0]
    assert transactions["inserted"] == loaded_first

    with world.lock:  # MX aggregates the member again: it is read again (unchanged, it would be skipped)
        world.members[member].successfully_aggregated_at = world.now()
    second_md = metadata_of(pipeline.materialize())
    transactions = second_md["raw.mx_transactions"]
    assert (transactions["quarantined"], transactions["quarantined_total"]) == (2, 5)  # read again, kept again
    assert pipeline.query("select count(*) from ops.quarantine where table_name = 'raw.mx_transactions'") == [
        (transactions["quarantined_total"],)
    ]
    assert transactions["read_failures"] == 0
    assert second_md["marts.member_health"]["failed_syncs"] == 0
    (loaded,) = pipeline.query("select count(*) from raw.mx_transactions")[0]
    assert transactions["inserted"] == loaded - loaded_first > 0  # the member whose read failed, now read


def test_api_calls_and_429s_per_run_equal_ops_api_calls_and_the_sandboxs_fault_injection(pipeline):
    faults = f"{pipeline.sandbox.base_url}/_sandbox/faults"
    requests.post(faults, json={"rates": {"rate_limited": 0.15}, "retry_after_seconds": 0}, timeout=10)
    result = pipeline.materialize()
    injected = requests.get(faults, timeout=10).json()["injected"]["rate_limited"]
    with pipeline.sandbox.world.lock:
        own_limits = sum(pipeline.sandbox.world.rate_limited.values())  # the sandbox's real limits, if any hit

    per_asset = {t: md for t, md in metadata_of(result).items() if "api_429s" in md}
    assert set(per_asset) == {*INGEST_TABLES, "ops.refresh_attempts"}
    [(calls, limited)] = pipeline.query(
        "select count(*), count(*) filter (where status = 429) from ops.api_calls where run_id = ?", result.run_id
    )
    assert sum(md["api_429s"] for md in per_asset.values()) == limited == injected + own_limits > 0
    assert sum(md["api_calls"] for md in per_asset.values()) == calls
