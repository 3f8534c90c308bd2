"""A status read while MX still runs a job is in progress: through the status gate against the sandbox."""

from .conftest import Pipeline


def still_aggregating(pipeline: Pipeline, member_guid: str, aggregating: bool) -> None:
    """MX reports the member's job as still running (or done) whatever its status says."""
    with pipeline.sandbox.world.lock:
        pipeline.sandbox.world.members[member_guid].is_being_aggregated = aggregating


def route_and_notifications(pipeline: Pipeline, member_guid: str) -> tuple[str, list[tuple]]:
    [(route,)] = pipeline.query("select route from ops.member_routes where member_guid = ?", member_guid)
    told = pipeline.query(
        "select connection_status, connect_mode from ops.reconnect_notifications where member_guid = ?", member_guid
    )
    return route, told


def test_a_member_denied_mid_job_is_told_only_once_the_job_ended_and_the_status_held(pipeline):
    member = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member}/connection_status", connection_status="DENIED")
    still_aggregating(pipeline, member, True)
    pipeline.materialize()
    assert route_and_notifications(pipeline, member) == ("in_progress", [])  # MX is still working: nobody acts
    assert not pipeline.query("select 1 from raw.mx_accounts where member_guid = ?", member)
    still_aggregating(pipeline, member, False)
    pipeline.materialize()
    assert route_and_notifications(pipeline, member) == ("needs_reconnect", [("DENIED", "reconnect")])
