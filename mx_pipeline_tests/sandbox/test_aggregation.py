"""Asynchronous aggregation, MFA through the API, and statuses that are not sequential."""

import pytest

from mx_pipeline.sandbox.datagen import PENDING_DAYS


def path(user, member, tail=""):
    return f"/users/{user}/members/{member}{tail}"


def answer(mx, user, member, value="correct"):
    challenges = mx.get(path(user, member, "/challenges")).json()["challenges"]
    # OPTIONS challenges are answered with the chosen option's value; MX Bank's right one is "correct".
    answers = [{"guid": c["guid"], "value": value} for c in challenges]
    return mx.put(path(user, member, "/resume"), json={"member": {"challenges": answers}})


def test_aggregation_runs_for_a_while_on_the_sandbox_clock(start_sandbox):
    mx = start_sandbox(aggregation_seconds=30)
    user = mx.create_user()
    member = mx.create_member(user)["guid"]
    mx.admin("POST", "clock/advance", json={"seconds": 29})
    during = mx.get(path(user, member, "/status")).json()["member"]
    assert during["is_being_aggregated"] is True and during["connection_status"] == "CREATED"
    mx.admin("POST", "clock/advance", json={"seconds": 1})
    after = mx.member(user, member)
    assert after["is_being_aggregated"] is False and after["connection_status"] == "CONNECTED"
    assert after["successfully_aggregated_at"] == "2026-11-25T12:00:30Z"
    assert after["aggregated_at"] == "2026-11-25T12:00:00Z"


def test_the_admin_hook_finishes_an_aggregation_at_once(start_sandbox):
    mx = start_sandbox(aggregation_seconds=3600)
    user = mx.create_user()
    member = mx.create_member(user)["guid"]
    mx.admin("POST", f"members/{member}/finish_aggregation")
    assert mx.member(user, member)["connection_status"] == "CONNECTED"


@pytest.mark.parametrize("password", ["challenge", "options", "image"])
def test_mfa_through_challenges_and_resume_connects(mx, password):
    user = mx.create_user()
    member = mx.create_member(user, password)["guid"]
    assert mx.member(user, member)["connection_status"] == "CHALLENGED"
    resumed = answer(mx, user, member)
    assert resumed.status_code == 202
    assert resumed.json()["member"]["connection_status"] == "RESUMED"
    assert mx.member(user, member)["connection_status"] == "CONNECTED"
    assert mx.get(path(user, member, "/challenges")).status_code == 204


def test_a_wrong_mfa_answer_rejects_and_aggregating_again_challenges_again(mx):
    user = mx.create_user()
    member = mx.create_member(user, "challenge")["guid"]
    answer(mx, user, member, "wrong")
    assert mx.member(user, member)["connection_status"] == "REJECTED"
    mx.post(path(user, member, "/aggregate"))
    assert mx.member(user, member)["connection_status"] == "CHALLENGED"


def test_answering_challenge_to_a_text_question_asks_a_follow_up(mx):
    user = mx.create_user()
    member = mx.create_member(user, "challenge")["guid"]
    first = mx.get(path(user, member, "/challenges")).json()["challenges"][0]["guid"]
    answer(mx, user, member, "challenge")
    assert mx.member(user, member)["connection_status"] == "CHALLENGED"
    assert mx.get(path(user, member, "/challenges")).json()["challenges"][0]["guid"] != first


def test_an_mfa_answer_of_server_error_fails_the_member(mx):
    user = mx.create_user()
    member = mx.create_member(user, "challenge")["guid"]
    answer(mx, user, member, "SERVER_ERROR")
    assert mx.member(user, member)["connection_status"] == "FAILED"


def test_resuming_a_member_that_is_not_challenged_is_409(mx):
    user, member = mx.connected_member()
    body = {"member": {"challenges": [{"guid": "CRD-x", "value": "correct"}]}}
    assert mx.put(path(user, member, "/resume"), json=body).status_code == 409


def test_an_unanswered_challenge_expires(start_sandbox):
    mx = start_sandbox(challenge_expiry_seconds=600)
    user = mx.create_user()
    member = mx.create_member(user, "challenge")["guid"]
    mx.get(path(user, member))
    mx.admin("POST", "clock/advance", json={"seconds": 600})
    assert mx.member(user, member)["connection_status"] == "EXPIRED"


def test_a_connected_member_can_come_back_challenged_on_a_later_aggregation(mx):
    user, member = mx.connected_member("challenge_later")
    assert mx.post(path(user, member, "/aggregate")).json()["member"]["is_being_aggregated"] is True
    assert mx.member(user, member)["connection_status"] == "CHALLENGED"
    answer(mx, user, member)
    assert mx.member(user, member)["connection_status"] == "CONNECTED"


def test_scripted_outcomes_drive_the_next_aggregations_in_order(mx):
    user, member = mx.connected_member()
    mx.admin("POST", f"members/{member}/script", json={"outcomes": ["DEGRADED", "CHALLENGED:OPTIONS", "CONNECTED"]})
    seen = []
    for _ in range(3):
        mx.post(path(user, member, "/aggregate"))
        seen.append(mx.member(user, member)["connection_status"])
        if seen[-1] == "CHALLENGED":
            assert mx.get(path(user, member, "/challenges")).json()["challenges"][0]["type"] == "OPTIONS"
            mx.admin("POST", f"members/{member}/connection_status", json={"connection_status": "CONNECTED"})
    assert seen == ["DEGRADED", "CHALLENGED", "CONNECTED"]


def test_the_institution_can_degrade_disable_or_rechallenge_members_by_seeded_chance(start_sandbox):
    mx = start_sandbox(rechallenge_rate=0.3, institution_degrade_rate=0.3, institution_disable_rate=0.3)
    user, member = mx.connected_member()
    seen = set()
    for _ in range(12):
        mx.post(path(user, member, "/aggregate"))
        status = mx.member(user, member)["connection_status"]
        seen.add(status)
        mx.admin("POST", f"members/{member}/connection_status", json={"connection_status": "CONNECTED"})
    assert {"CHALLENGED", "DEGRADED", "DISABLED"} <= seen


def test_the_admin_hook_forces_any_status(mx):
    user, member = mx.connected_member()
    mx.admin("POST", f"members/{member}/connection_status", json={"connection_status": "CHALLENGED"})
    assert mx.member(user, member)["connection_status"] == "CHALLENGED"
    assert mx.get(path(user, member, "/challenges")).status_code == 200


def test_mx_bank_has_no_aggregation_throttle(mx):
    user, member = mx.connected_member()
    assert mx.post(path(user, member, "/aggregate")).json()["member"]["is_being_aggregated"] is True


def test_the_throttled_institution_declines_a_recent_aggregation_with_202(mx):
    user = mx.create_user()
    member = mx.create_member(user, institution="sandboxcu")["guid"]
    connected = mx.member(user, member)
    declined = mx.post(path(user, member, "/aggregate"))
    assert declined.status_code == 202
    assert declined.json()["member"]["is_being_aggregated"] is False
    assert declined.json()["member"]["aggregated_at"] == connected["aggregated_at"]
    mx.admin("POST", "clock/advance", json={"hours": 3})
    assert mx.post(path(user, member, "/aggregate")).json()["member"]["is_being_aggregated"] is True


def test_a_second_aggregate_while_one_runs_is_202_and_another_job_kind_is_409(start_sandbox):
    mx = start_sandbox(aggregation_seconds=60)
    user = mx.create_user()
    member = mx.create_member(user)["guid"]
    again = mx.post(path(user, member, "/aggregate"))
    assert again.status_code == 202 and again.json()["member"]["is_being_aggregated"] is True
    assert mx.post(path(user, member, "/check_balance")).status_code == 409


def test_updating_credentials_re_aggregates_with_the_new_password(mx):
    user = mx.create_user()
    member = mx.create_member(user, "UNAUTHORIZED")["guid"]
    assert mx.member(user, member)["needs_updated_credentials"] is True
    # MX does not aggregate a member that needs new credentials
    assert mx.post(path(user, member, "/aggregate")).json()["member"]["is_being_aggregated"] is False
    body = {"member": {"credentials": mx.credentials("mxbank", "mxuser", "password")}}
    updated = mx.put(path(user, member), json=body).json()["member"]
    assert updated["connection_status"] == "UPDATED" and updated["is_being_aggregated"] is True
    final = mx.member(user, member)
    assert final["connection_status"] == "CONNECTED" and final["needs_updated_credentials"] is False


def test_later_aggregations_add_transactions_and_settle_pending_ones(mx):
    user, member = mx.connected_member()

    def rows():
        body = mx.get(path(user, member, "/transactions"), params={"records_per_page": 1000}).json()
        return {t["guid"]: t for t in body["transactions"]}

    before = rows()
    pending = {g for g, t in before.items() if t["status"] == "PENDING"}
    assert pending
    mx.admin("POST", "clock/advance", json={"days": PENDING_DAYS + 1})
    mx.post(path(user, member, "/aggregate"))
    after = rows()
    kept = pending & set(after)
    assert all(after[g]["status"] == "POSTED" and after[g]["updated_at"] > before[g]["updated_at"] for g in kept)
    assert len(kept) < len(pending), "most pending rows are replaced, not updated in place"
    new = set(after) - set(before)
    reposted = [after[g] for g in new if after[g]["status"] == "POSTED" and after[g]["date"] <= "2026-11-25"]
    assert reposted, "some pending rows came back as POSTED under a new guid"
    assert all(after[g]["created_at"] == after[g]["updated_at"] >= "2026-11-28" for g in new)
    changed = mx.get(f"/users/{user}/transactions", params={"records_per_page": 1000, "from_updated_at": "2026-11-28"})
    assert {t["guid"] for t in changed.json()["transactions"]} == new | kept


def test_the_admin_hook_adds_transactions(mx):
    _, member = mx.connected_member()
    before = mx.admin("GET", f"members/{member}")["transactions"]
    created = mx.admin("POST", f"members/{member}/transactions", json={"count": 3})["created"]
    assert len(created) == 3
    assert mx.admin("GET", f"members/{member}")["transactions"] == before + 3


def test_deleting_a_member_removes_its_accounts_and_transactions(mx):
    user, member = mx.connected_member()
    assert mx.delete(path(user, member)).status_code == 204
    assert mx.get(f"/users/{user}/accounts").json()["accounts"] == []
    assert mx.get(f"/users/{user}/transactions").json()["transactions"] == []


def test_connected_members_are_aggregated_in_the_background_about_daily(mx):
    _, member = mx.connected_member()
    mx.admin("POST", "clock/advance", json={"hours": 23})
    assert mx.admin("GET", f"members/{member}")["aggregations_started"] == 1
    mx.admin("POST", "clock/advance", json={"hours": 1})
    assert mx.admin("GET", f"members/{member}")["aggregations_started"] == 2
    first, background = mx.admin("GET", "webhooks")["emitted"]
    assert (first["is_background"], background["is_background"]) == (False, True)
    assert background["transactions_created_count"] > 0


def test_background_aggregation_can_be_disabled_per_member(mx):
    user, member = mx.connected_member()
    mx.put(path(user, member), json={"member": {"background_aggregation_is_disabled": True}})
    mx.admin("POST", "clock/advance", json={"days": 2})
    assert mx.admin("GET", f"members/{member}")["aggregations_started"] == 1
