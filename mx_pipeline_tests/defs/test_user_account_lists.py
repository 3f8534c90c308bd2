"""A user with two or more members to read has their accounts listed once, by the user's own list
(``defs/ingest/accounts.py``): one request where each member cost one, and the same accounts, each under its member.

The fixture gives ``user-ok-1`` a second connected bank and ``user-ok-2`` a second bank that asks for MFA: the
first user's two members are read together, the second user's one ready member alone.
"""

import json
import re
from collections import Counter
from decimal import Decimal
from functools import partial
from urllib.parse import urlsplit

import pytest
import requests

from mx_pipeline.defs.resources import MxResource
from mx_pipeline.mx import MxClient, RetryPolicy

from .conftest import metadata_of

USER_ACCOUNTS = "/users/{user_guid}/accounts"
MEMBER_ACCOUNTS = "/users/{user_guid}/members/{member_guid}/accounts"
USER_ACCOUNTS_PATH = re.compile(r"^/users/[^/]+/accounts$")


@pytest.fixture
def banks(pipeline) -> dict[str, list[str]]:
    """Our user id -> its members' guids: user-ok-1 with two connected banks, user-ok-2 with one and one in MFA."""
    fields = {c.field_name: c.guid for c in pipeline.client.list_institution_credentials("sandboxcu")}
    for user_id, password in (("user-ok-1", "password"), ("user-ok-2", "challenge")):
        user_guid, _ = pipeline.member(user_id)
        credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}
        pipeline.client.create_member(user_guid, institution_code="sandboxcu", credentials=credentials)
    pipeline.admin("aggregations/finish")
    world = pipeline.sandbox.world
    with world.lock:
        return {
            user_id: sorted(m.guid for m in world.members.values() if m.user_guid == pipeline.member(user_id)[0])
            for user_id in ("user-ok-1", "user-ok-2")
        }


def accounts_at_mx(pipeline, member_guids: list[str]) -> dict[str, tuple[str, Decimal]]:
    """Account guid -> (member guid, balance) as MX lists them."""
    world = pipeline.sandbox.world
    with world.lock:
        return {
            a.guid: (a.member_guid, Decimal(str(a.balance)))
            for a in world.accounts.values()
            if a.member_guid in member_guids
        }


def accounts_here(pipeline, member_guids: list[str]) -> dict[str, tuple[str, Decimal]]:
    rows = pipeline.query(
        "select guid, member_guid, balance from raw.mx_accounts where removed_at is null and list_contains(?, member_guid)",
        member_guids,
    )
    return {guid: (member, balance) for guid, member, balance in rows}


def account_calls(pipeline, run_id: str) -> Counter:
    rows = pipeline.query(
        "select path_template, coalesce(member_guid, user_guid) from ops.api_calls"
        " where run_id = ? and path_template like '%/accounts'",
        run_id,
    )
    return Counter(rows)


def aggregated(pipeline, member_guids: list[str]) -> None:
    """MX aggregated these members: the next run reads them."""
    pipeline.admin("aggregations/finish")
    world = pipeline.sandbox.world
    with world.lock:
        for guid in member_guids:
            world.members[guid].successfully_aggregated_at = world.now()


class EditedUserLists(MxResource):
    """The sandbox, but each page of a user's account list is passed through ``edit`` (its accounts, in place)."""

    edit_name: str

    def client(self, observers=()) -> MxClient:
        session = requests.Session()
        session.mount("http://", _Editing(EDITS[self.edit_name]))
        return MxClient(self.base_url, self.client_id, self.api_key, observers=list(observers), session=session,
                        retry=RetryPolicy(max_attempts=2, backoff_base=0.0))  # fmt: skip


class _Editing(requests.adapters.HTTPAdapter):
    def __init__(self, edit) -> None:
        super().__init__()
        self.edit = edit

    def send(self, request, **kwargs):
        if not USER_ACCOUNTS_PATH.match(urlsplit(request.url).path):
            return super().send(request, **kwargs)
        return self.edit(partial(super().send, **kwargs), request)


def _edited_body(edit_accounts):
    def edit(send, request):
        response = send(request)
        body = json.loads(response.content)
        edit_accounts(body["accounts"])
        response._content = json.dumps(body).encode()
        return response

    return edit


def _refused(send, request):
    raise requests.ConnectionError("MX dropped the connection")


def _user_deleted_meanwhile(send, request):
    """The user is deleted at MX just before its list is asked for: MX answers 404."""
    user_url = request.url.split("?")[0].removesuffix("/accounts")
    headers = {name: request.headers[name] for name in ("Authorization", "Accept")}
    requests.delete(user_url, headers=headers, timeout=10).raise_for_status()
    return send(request)


EDITS = {
    "no member": _edited_body(lambda accounts: accounts[0].update(member_guid=None)),
    "no guid": _edited_body(lambda accounts: accounts[0].update(guid=None)),
    "refused": _refused,
    "user deleted meanwhile": _user_deleted_meanwhile,
    "not found": lambda send, request: _answered(request, 404),
}


def _answered(request, status: int) -> requests.Response:
    response = requests.Response()
    response.status_code, response.url, response.request = status, request.url, request
    response._content = b'{"error": {"message": "scripted by the test"}}'
    return response


def edited(pipeline, edit_name: str) -> EditedUserLists:
    return EditedUserLists(**pipeline.resources()["mx"].model_dump(), edit_name=edit_name)


def test_a_users_members_are_read_by_one_list_of_the_users_and_each_account_lands_under_its_member(pipeline, banks):
    result = pipeline.materialize()

    both, (ready, in_mfa) = banks["user-ok-1"], banks["user-ok-2"]
    user_1, _ = pipeline.member("user-ok-1")
    calls = account_calls(pipeline, result.run_id)
    assert calls[(USER_ACCOUNTS, user_1)] == 1
    assert not any(member in both for (_, member) in calls)  # no member of user-ok-1 listed on its own
    routes = dict(pipeline.query("select member_guid, route from ops.member_routes"))
    alone = ready if routes[ready] == "ready" else in_mfa
    assert {routes[alone], routes[({ready, in_mfa} - {alone}).pop()]} == {"ready", "needs_mfa"}
    assert calls[(MEMBER_ACCOUNTS, alone)] == 1  # one member to read: its own list, not its user's
    assert accounts_here(pipeline, both) == accounts_at_mx(pipeline, both)  # every account, under its member
    assert accounts_here(pipeline, [alone]) == accounts_at_mx(pipeline, [alone])
    assert accounts_here(pipeline, [m for m in (ready, in_mfa) if m != alone]) == {}  # MFA: not read
    assert pipeline.query("select count(*) from ops.quarantine") == [(0,)]


def test_an_account_gone_from_the_users_list_is_retired_from_its_member_and_the_other_members_keep_theirs(
    pipeline, banks
):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    world = pipeline.sandbox.world
    with world.lock:  # MX stops listing one of the first member's accounts
        gone = world.members[first].data.accounts.pop()
        world.accounts.pop(gone.guid)
        for guid in [g for g, t in world.transactions[first].items() if t.account_guid == gone.guid]:
            del world.transactions[first][guid]
    aggregated(pipeline, [first, second])

    result = pipeline.materialize()

    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == [gone.guid]
    assert accounts_here(pipeline, [first, second]) == accounts_at_mx(pipeline, [first, second])
    assert pipeline.query("select count(*) from marts.fct_transactions where account_guid = ?", gone.guid) == [(0,)]


def test_a_users_list_that_fails_fails_each_members_read_and_retires_nothing(pipeline, banks):
    pipeline.materialize()
    members = banks["user-ok-1"]
    before = accounts_here(pipeline, members)
    aggregated(pipeline, members)

    result = pipeline.materialize(mx=edited(pipeline, "refused"), raise_on_error=False)

    outcomes = dict(
        pipeline.query(
            "select member_guid, last_outcome from ops.member_sync where list_contains(?, member_guid)", members
        )
    )
    assert outcomes == dict.fromkeys(members, "failed")
    reasons = metadata_of(result)["raw.mx_accounts"]["members_failed"]
    assert set(reasons) == set(members)
    assert accounts_here(pipeline, members) == before
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]


def test_an_account_that_names_no_member_is_quarantined_once_and_no_list_retires_it(pipeline, banks):
    pipeline.materialize()
    members = banks["user-ok-1"]
    aggregated(pipeline, members)
    user_guid, _ = pipeline.member("user-ok-1")
    placed_first = pipeline.client.list_user_accounts(user_guid)
    unplaced = next(iter(placed_first)).guid  # the first account of the list: the one edited

    result = pipeline.materialize(mx=edited(pipeline, "no member"), raise_on_error=False)

    quarantined = pipeline.query(
        "select record_guid, member_guid from ops.quarantine where run_id = ? and table_name = 'raw.mx_accounts'",
        result.run_id,
    )
    assert len(quarantined) == 1 and quarantined[0][0] == unplaced and quarantined[0][1] in members
    assert pipeline.query("select removed_at from raw.mx_accounts where guid = ?", unplaced) == [(None,)]
    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == []


def test_a_record_without_a_guid_leaves_no_list_of_the_user_whole_so_nothing_is_retired(pipeline, banks):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    world = pipeline.sandbox.world
    with world.lock:  # an account MX no longer lists: a whole list would retire it
        gone = world.members[second].data.accounts.pop()
        world.accounts.pop(gone.guid)
    aggregated(pipeline, [first, second])

    result = pipeline.materialize(mx=edited(pipeline, "no guid"), raise_on_error=False)

    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == []
    assert pipeline.query("select removed_at from raw.mx_accounts where guid = ?", gone.guid) == [(None,)]
    # the next list read whole retires it
    aggregated(pipeline, [first, second])
    assert metadata_of(pipeline.materialize())["raw.mx_accounts"]["accounts_retired"] == [gone.guid]


def test_a_404_on_the_users_list_of_a_user_deleted_at_mx_meanwhile_retires_each_of_its_members(pipeline, banks):
    pipeline.materialize()
    members = banks["user-ok-1"]
    aggregated(pipeline, members)

    result = pipeline.materialize(mx=edited(pipeline, "user deleted meanwhile"))

    assert sorted(metadata_of(result)["raw.mx_accounts"]["members_retired"]) == members
    assert pipeline.query(
        "select count(*) from raw.mx_members where list_contains(?, guid) and removed_at is null", members
    ) == [(0,)]
    assert pipeline.query("select count(*) from ops.quarantine where run_id = ?", result.run_id) == [(0,)]


def test_a_404_on_the_users_list_that_its_member_list_does_not_confirm_is_a_failed_read_of_each_member(pipeline, banks):
    pipeline.materialize()
    members = banks["user-ok-1"]
    aggregated(pipeline, members)

    result = pipeline.materialize(mx=edited(pipeline, "not found"), raise_on_error=False)

    assert not result.success  # every_member_read names them; the sensor reads them again
    assert pipeline.query("select count(*) from ops.retirements") == [(0,)]
    quarantined = pipeline.query(
        "select member_guid, reason from ops.quarantine where run_id = ? and table_name = 'raw.mx_accounts'",
        result.run_id,
    )
    assert sorted(member for member, _ in quarantined) == members
    assert all(reason.startswith("NotFound") for _, reason in quarantined)
    outcomes = pipeline.query(
        "select distinct last_outcome from ops.member_sync where list_contains(?, member_guid)", members
    )
    assert outcomes == [("failed",)]
