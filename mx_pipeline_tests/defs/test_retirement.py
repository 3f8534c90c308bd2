"""Deleted at MX means retired here: end to end through the sandbox, the ingest assets and the marts.

A member the user removes (or MX replaces), a user deleted at MX and an account that vanishes keep their rows
in ``raw`` for audit, leave the marts and the scheduler, and a bank linked again is counted once.
"""

import datetime as dt
from collections import Counter
from decimal import Decimal

import dagster as dg
import pytest
import requests

from mx_pipeline import cli
from mx_pipeline.defs.jobs import AFTER_REGISTRATION, MODELS, scoped_run_config
from mx_pipeline.defs.resources import MxResource
from mx_pipeline.mx import NotFound
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.warehouse import retire
from mx_pipeline.warehouse.refresh_state import due_members
from mx_pipeline.warehouse.retire import OFFBOARDED

from .conftest import CONNECTIONS, INGEST, WITHOUT_THE_MEMBER_LISTS, metadata_of

REMOVED = "Removed at MX (deleted or replaced); no longer synced."


def truth_of_user(pipeline, user_guid: str) -> Counter:
    """The user's live transactions at MX, as (date, signed amount, description): guids differ after a re-link."""
    response = requests.get(f"{pipeline.sandbox.base_url}/_sandbox/users/{user_guid}/transactions", timeout=10)
    response.raise_for_status()
    return Counter(
        (t["date"], Decimal(str(t["amount"])) * (-1 if t["type"] == "DEBIT" else 1), t["description"])
        for t in response.json()["transactions"]
    )


def fct_of_user(pipeline, user_guid: str) -> Counter:
    rows = pipeline.query(
        """
        select cast(f.transaction_date as varchar), f.amount, r.payload ->> 'description'
        from marts.fct_transactions as f join raw.mx_transactions as r on r.guid = f.transaction_guid
        where f.user_guid = ?
        """,
        user_guid,
    )
    return Counter((date, Decimal(amount), description) for date, amount, description in rows)


def spend_of(pipeline, user_guid: str) -> Decimal:
    [(spend,)] = pipeline.query("select sum(spend) from marts.monthly_spend_by_category where user_guid = ?", user_guid)
    return spend


def relink(pipeline, user_guid: str, user_id: str) -> str:
    """The user adds the same bank again with the same login; MX aggregates it."""
    fields = {c.field_name: c.guid for c in pipeline.client.list_institution_credentials("mxbank")}
    credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: CONNECTIONS[user_id]}
    member = pipeline.client.create_member(user_guid, institution_code="mxbank", credentials=credentials).guid
    pipeline.admin("aggregations/finish")
    return member


def assert_retired(pipeline, member_guid: str, reason: str = REMOVED) -> None:
    [(route, why, removed_at)] = pipeline.query(
        "select r.route, r.reason, m.removed_at from ops.member_routes as r"
        " join raw.mx_members as m on m.guid = r.member_guid where r.member_guid = ?",
        member_guid,
    )
    assert (route, why) == ("terminal", reason) and removed_at is not None
    assert pipeline.query(
        "select count(*) from raw.mx_transactions where member_guid = ? and removed_at is null", member_guid
    ) == [(0,)]
    assert pipeline.query("select count(*) from raw.mx_transactions where member_guid = ?", member_guid)[0][0] > 0
    assert pipeline.query("select count(*) from marts.fct_transactions where member_guid = ?", member_guid) == [(0,)]
    assert pipeline.query("select count(*) from marts.dim_accounts where member_guid = ?", member_guid) == [(0,)]
    assert pipeline.query("select route, reason from marts.member_health where member_guid = ?", member_guid) == [
        ("terminal", reason)
    ]
    assert pipeline.query(
        "select retired_at is not null from marts.member_health where member_guid = ?", member_guid
    ) == [(True,)]


def test_a_member_deleted_at_mx_leaves_the_marts_and_the_scheduler_and_is_never_read_again(pipeline):
    assert pipeline.materialize().success
    user_guid, member_guid = pipeline.member("user-ok-1")
    pipeline.client.delete_member(user_guid, member_guid)

    result = pipeline.materialize()

    assert result.success
    assert metadata_of(result)["raw.mx_members"]["members_retired"] == [member_guid]
    assert_retired(pipeline, member_guid)
    with pipeline.warehouse.connect() as con:
        due = {m.member_guid for m in due_members(con, RefreshPolicy(), now=pipeline.query("select now()")[0][0])}
    assert member_guid not in due
    # Not read again: no 404 on every run, every check green.
    third = pipeline.materialize()
    calls = pipeline.query("select count(*) from ops.api_calls where run_id = ? and member_guid = ?", third.run_id,
                           member_guid)  # fmt: skip
    assert calls == [(0,)]
    assert all(e.passed for e in third.get_asset_check_evaluations() if e.check_name != "category_coverage")


def test_a_bank_removed_and_linked_again_is_counted_once(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-1")
    before, spend_before = fct_of_user(pipeline, user_guid), spend_of(pipeline, user_guid)
    assert spend_before > 0
    assert before == truth_of_user(pipeline, user_guid)
    pipeline.client.delete_member(user_guid, member_guid)
    new_member = relink(pipeline, user_guid, "user-ok-1")

    assert pipeline.materialize().success

    truth = truth_of_user(pipeline, user_guid)
    assert fct_of_user(pipeline, user_guid) == truth  # every amount, once each
    assert sum(truth.values()) == sum(before.values())  # the same history, not twice
    assert {m for (m,) in pipeline.query("select distinct member_guid from marts.fct_transactions where user_guid = ?",
                                         user_guid)} == {new_member}  # fmt: skip
    assert spend_of(pipeline, user_guid) == spend_before  # monthly spend: the same history, once
    assert_retired(pipeline, member_guid)


def test_a_member_mx_replaced_is_retired_and_its_replacement_counted_once(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-2")
    replaced = pipeline.admin(f"members/{member_guid}/replace")
    pipeline.admin("aggregations/finish")

    assert pipeline.materialize().success

    assert_retired(pipeline, member_guid)
    assert fct_of_user(pipeline, user_guid) == truth_of_user(pipeline, user_guid)
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", replaced["member_guid"]) == [
        ("ready",)
    ]


def test_a_user_deleted_at_mx_is_retired_and_not_created_again(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-2")
    pipeline.client.delete_user(user_guid)

    result = pipeline.materialize()

    assert result.success
    assert metadata_of(result)["raw.mx_users"]["users_retired"] == [user_guid]
    assert list(pipeline.client.list_users(id="user-ok-2")) == []  # not re-registered by ensure_user
    assert pipeline.query("select retired_at is not null from ops.end_users where id = 'user-ok-2'") == [(True,)]
    assert pipeline.query("select removed_at is not null from raw.mx_users where guid = ?", user_guid) == [(True,)]
    assert_retired(pipeline, member_guid, "The user was deleted at MX; nothing of theirs is synced any more.")
    pipeline.materialize()
    assert list(pipeline.client.list_users(id="user-ok-2")) == []


def test_an_account_that_vanishes_from_its_member_is_retired_with_its_transactions(pipeline):
    pipeline.materialize()
    _, member_guid = pipeline.member("user-ok-1")
    world = pipeline.sandbox.world
    with world.lock:  # MX stops listing one of the member's accounts, and its transactions with it
        member = world.members[member_guid]
        gone = member.data.accounts.pop()
        world.accounts.pop(gone.guid)
        for guid in [g for g, t in world.transactions[member_guid].items() if t.account_guid == gone.guid]:
            del world.transactions[member_guid][guid]
        member.successfully_aggregated_at = world.now()  # found in an aggregation, as MX reports it
    kept = {a for (a,) in pipeline.query("select guid from raw.mx_accounts where member_guid = ?", member_guid)}
    kept.discard(gone.guid)

    result = pipeline.materialize()

    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == [gone.guid]
    assert pipeline.query("select removed_at is not null from raw.mx_accounts where guid = ?", gone.guid) == [(True,)]
    assert pipeline.query(
        "select count(*) from raw.mx_transactions where account_guid = ? and removed_at is null", gone.guid
    ) == [(0,)]
    assert {a for (a,) in pipeline.query("select account_guid from marts.dim_accounts where member_guid = ?",
                                         member_guid)} == kept  # fmt: skip
    assert pipeline.query("select count(*) from marts.fct_transactions where account_guid = ?", gone.guid) == [(0,)]
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member_guid) == [("ready",)]


class OneBadStatusRead(MxResource):
    """MX answers 404 on one member's status read although the member is still there (a bad read)."""

    member_guid: str

    def client(self, observers=()):
        client = super().client(observers)
        read = client.read_member_status

        def read_member_status(user_guid, member_guid):
            if member_guid == self.member_guid:
                raise NotFound("404 on one read", method="GET", path="/users/{user_guid}/members/{member_guid}/status")
            return read(user_guid, member_guid)

        client.read_member_status = read_member_status
        return client


def test_a_single_404_the_list_does_not_confirm_retires_nothing_and_is_a_failed_read(pipeline):
    pipeline.materialize()
    _, member_guid = pipeline.member("user-ok-1")
    mx = pipeline.resources()["mx"]
    bad = OneBadStatusRead(**{**mx.model_dump(), "member_guid": member_guid})

    result = dg.materialize(  # a run that lists no members: it reads their statuses from MX
        INGEST, selection=WITHOUT_THE_MEMBER_LISTS, resources=pipeline.resources(mx=bad), raise_on_error=False
    )

    assert not result.success  # the blocking every_member_read names the member; the sensor reads it again

    assert pipeline.query("select removed_at from raw.mx_members where guid = ?", member_guid) == [(None,)]
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]
    [(quarantined, reason)] = pipeline.query(
        "select member_guid, reason from ops.quarantine where run_id = ? and table_name = 'raw.mx_member_status'",
        result.run_id,
    )
    assert quarantined == member_guid and reason.startswith("NotFound: 404 on one read")
    assert pipeline.query("select last_outcome from ops.member_sync where member_guid = ?", member_guid) == [
        ("failed",)
    ]
    assert pipeline.query("select count(*) from marts.fct_transactions where member_guid = ?", member_guid)[0][0] > 0


def test_a_404_on_a_member_confirmed_by_the_list_retires_it(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-1")
    pipeline.client.delete_member(user_guid, member_guid)
    # A run that reads the member without listing its user first (its raw row still says it exists).
    selection = dg.AssetSelection.all() - dg.AssetSelection.assets(["raw", "mx_users"], ["raw", "mx_members"])
    result = dg.materialize(INGEST, resources=pipeline.resources(), selection=selection)

    assert result.success
    assert metadata_of(result)["raw.mx_member_status"]["members_retired"] == [member_guid]
    assert pipeline.query(
        "select count(*) from ops.quarantine where run_id = ? and member_guid = ?", result.run_id, member_guid
    ) == [(0,)]  # a confirmed deletion is not a bad read
    assert_retired(pipeline, member_guid)


def test_a_user_offboarded_on_purpose_is_deleted_at_mx_retired_here_and_not_registered_again(
    pipeline, monkeypatch, capsys
):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-2")
    monkeypatch.setenv("MX_BASE_URL", pipeline.sandbox.base_url)

    assert cli.main(["offboard-user", "user-ok-2", "--warehouse", str(pipeline.warehouse.path)]) == 0

    assert f"user-ok-2: deleted at MX and retired here ({user_guid})" in capsys.readouterr().out
    assert list(pipeline.client.list_users(id="user-ok-2")) == []
    assert pipeline.query("select kind, reason, run_id from ops.retirements where guid = ?", user_guid) == [
        ("user", OFFBOARDED, "cli:offboard-user")
    ]
    assert pipeline.materialize().success  # the users CSV still names user-ok-2: it stays offboarded
    assert list(pipeline.client.list_users(id="user-ok-2")) == []
    assert_retired(pipeline, member_guid, OFFBOARDED)


def test_offboarding_an_unknown_user_says_so_and_changes_nothing(pipeline, monkeypatch, capsys):
    pipeline.materialize()
    monkeypatch.setenv("MX_BASE_URL", pipeline.sandbox.base_url)
    assert cli.main(["offboard-user", "nobody", "--warehouse", str(pipeline.warehouse.path)]) == 1
    assert "no end user 'nobody'" in capsys.readouterr().err
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]


def wrongly_retire(pipeline, retire_them, guids: list[str], reason: str) -> None:
    """What a complete MX list that skipped these does (a page shifted while another record was deleted)."""
    with pipeline.warehouse.connect() as con:
        retire_them(con, guids, reason=reason, run_id="a-wrong-list", now=dt.datetime.now(dt.UTC))


def assert_back_and_synced(pipeline, result, user_guid: str, member_guid: str) -> None:
    """Read and routed again in ``result``'s run, every live MX transaction counted once, nothing retired left."""
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member_guid) == [("ready",)]
    assert pipeline.query(
        "select count(*) > 0 from ops.api_calls where run_id = ? and member_guid = ? and path_template like '%/transactions%'",
        result.run_id,
        member_guid,
    ) == [(True,)]
    assert pipeline.query("select last_outcome from ops.member_sync where member_guid = ?", member_guid) == [
        ("synced",)
    ]
    assert fct_of_user(pipeline, user_guid) == truth_of_user(pipeline, user_guid)
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]
    assert pipeline.query("select retired_at from marts.member_health where member_guid = ?", member_guid) == [(None,)]


def test_a_user_a_wrong_list_retired_comes_back_with_its_members_read_routed_and_synced(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-1")
    wrongly_retire(pipeline, retire.retire_users, [user_guid], retire.USER_REMOVED)
    pipeline.admin(f"members/{member_guid}/transactions", count=2)  # MX goes on: the user was never deleted

    result = pipeline.materialize()  # MX lists the user again

    assert metadata_of(result)["raw.mx_users"]["users_reinstated"] == [user_guid]
    assert pipeline.query("select removed_at from raw.mx_users where guid = ?", user_guid) == [(None,)]
    assert pipeline.query("select retired_at from ops.end_users where id = 'user-ok-1'") == [(None,)]
    assert pipeline.query("select removed_at from raw.mx_members where guid = ?", member_guid) == [(None,)]
    assert_back_and_synced(pipeline, result, user_guid, member_guid)


def test_a_member_a_wrong_list_retired_comes_back_read_routed_and_synced(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-1")
    wrongly_retire(pipeline, retire.retire_members, [member_guid], retire.MEMBER_REMOVED)
    pipeline.admin(f"members/{member_guid}/transactions", count=2)

    result = pipeline.materialize()  # MX lists the member again

    assert pipeline.query("select removed_at from raw.mx_members where guid = ?", member_guid) == [(None,)]
    assert_back_and_synced(pipeline, result, user_guid, member_guid)


def test_an_account_a_wrong_list_retired_comes_back_into_dim_accounts_with_its_transactions(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-1")
    [(account,)] = pipeline.query("select guid from raw.mx_accounts where member_guid = ? limit 1", member_guid)
    wrongly_retire(pipeline, retire.retire_accounts, [account], retire.ACCOUNT_REMOVED)

    result = pipeline.materialize()  # MX lists the account again

    assert metadata_of(result)["raw.mx_accounts"]["accounts_reinstated"] == [account]
    assert pipeline.query("select count(*) from marts.dim_accounts where account_guid = ?", account) == [(1,)]
    assert fct_of_user(pipeline, user_guid) == truth_of_user(pipeline, user_guid)
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]


def crash_before_transactions(*args, **kwargs):
    raise RuntimeError("the process died between two statements of a retirement")


@pytest.mark.parametrize("deleted", ["member", "user"])
def test_a_retirement_that_crashes_half_way_retires_nothing_and_the_next_run_retires_everything(
    pipeline, monkeypatch, deleted
):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-2")
    if deleted == "member":
        pipeline.client.delete_member(user_guid, member_guid)
    else:
        pipeline.client.delete_user(user_guid)
    with monkeypatch.context() as patched:
        patched.setattr(retire, "_retire_transactions", crash_before_transactions)
        with pytest.raises(RuntimeError, match="died between two statements"):
            pipeline.materialize()

    for table, column in [("raw.mx_users", "guid"), ("raw.mx_members", "guid"), ("raw.mx_member_status", "guid"),
                          ("raw.mx_accounts", "member_guid")]:  # fmt: skip
        assert pipeline.query(
            f"select count(*) from {table} where {column} = ? and removed_at is not null",
            user_guid if table == "raw.mx_users" else member_guid,
        ) == [(0,)], table
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]
    assert pipeline.query("select retired_at from ops.end_users where id = 'user-ok-2'") == [(None,)]

    assert pipeline.materialize().success

    reason = REMOVED if deleted == "member" else retire.USER_REMOVED
    assert_retired(pipeline, member_guid, reason)


def test_a_user_deleted_at_mx_is_retired_by_a_sync_of_its_members_alone(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-2")
    pipeline.client.delete_user(user_guid)

    # A sync_members run for this user (an event, a refresh): no mx_users step lists the users.
    result = dg.materialize(
        INGEST, selection=AFTER_REGISTRATION, resources=pipeline.resources(), run_config=scoped_run_config([user_guid])
    )

    assert result.success
    assert metadata_of(result)["raw.mx_members"]["users_retired"] == [user_guid]
    assert pipeline.query("select removed_at is not null from raw.mx_users where guid = ?", user_guid) == [(True,)]
    assert pipeline.query("select retired_at is not null from ops.end_users where id = 'user-ok-2'") == [(True,)]
    assert pipeline.query("select count(*) from ops.quarantine where run_id = ?", result.run_id) == [(0,)]
    assert dg.materialize(INGEST, selection=MODELS, resources=pipeline.resources()).success  # models_after_sync's build
    assert_retired(pipeline, member_guid, retire.USER_REMOVED)
    assert pipeline.query("select count(*) from marts.fct_transactions where user_guid = ?", user_guid) == [(0,)]
    assert pipeline.query("select count(*) from marts.monthly_spend_by_category where user_guid = ?", user_guid) == [
        (0,)
    ]


def test_a_404_on_a_users_member_list_that_list_users_does_not_confirm_is_quarantined_as_a_failed_read(pipeline):
    pipeline.materialize()
    user_guid, member_guid = pipeline.member("user-ok-2")
    mx = pipeline.resources()["mx"]
    bad = OneBadMemberList(**{**mx.model_dump(), "user_guid": user_guid})

    result = dg.materialize(
        INGEST, selection=AFTER_REGISTRATION, resources=pipeline.resources(mx=bad),
        run_config=scoped_run_config([user_guid]), raise_on_error=False,
    )  # fmt: skip

    assert not result.success  # the blocking every_member_read names the user; the sensor reads it again
    assert pipeline.query("select last_outcome from ops.user_sync where user_guid = ?", user_guid) == [("failed",)]
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]
    assert pipeline.query("select removed_at from raw.mx_users where guid = ?", user_guid) == [(None,)]
    [(reason,)] = pipeline.query(
        "select reason from ops.quarantine where run_id = ? and table_name = 'raw.mx_members'", result.run_id
    )
    assert reason.startswith("NotFound: 404 on one list")
    assert pipeline.query("select count(*) from marts.fct_transactions where member_guid = ?", member_guid)[0][0] > 0


class OneBadMemberList(MxResource):
    """MX answers 404 on one user's member list although the user is still there (a bad read)."""

    user_guid: str

    def client(self, observers=()):
        client = super().client(observers)
        list_members = client.list_members

        def bad_list_members(user_guid, **kwargs):
            if user_guid == self.user_guid:
                raise NotFound("404 on one list", method="GET", path="/users/{user_guid}/members")
            return list_members(user_guid, **kwargs)

        client.list_members = bad_list_members
        return client
