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
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.mx import MxClient, RetryPolicy

from .conftest import metadata_of

USER_ACCOUNTS = "/users/{user_guid}/accounts"
MEMBER_ACCOUNTS = "/users/{user_guid}/members/{member_guid}/accounts"
USER_ACCOUNTS_PATH = re.compile(r"^/users/[^/]+/accounts$")


@pytest.fixture
def banks(pipeline) -> dict[str, list[str]]:
    """Each user's members by what they await: ``user-ok-1`` has two connected banks and one MX challenged on a later
    aggregation (its accounts are in the user's list, but it is not read), ``user-ok-2`` one connected and one in
    MFA since it was added (``"<user id>"``: the connected ones, ``"<user id> in MFA"``: the other)."""
    created = {}
    for user_id, institution, password in (
        ("user-ok-1", "sandboxcu", "password"),
        ("user-ok-1", "mxbank", "challenge"),
        ("user-ok-2", "sandboxcu", "challenge"),
    ):
        fields = {c.field_name: c.guid for c in pipeline.client.list_institution_credentials(institution)}
        credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}
        user_guid = pipeline.member(user_id)[0]
        created[user_id] = pipeline.client.create_member(user_guid, institution_code=institution,
                                                         credentials=credentials).guid  # fmt: skip
    pipeline.admin("aggregations/finish")
    answered, user_1 = created["user-ok-1"], pipeline.member("user-ok-1")[0]  # its MFA answered, then asked again
    (question,) = pipeline.client.list_member_challenges(user_1, answered)
    pipeline.client.resume_aggregation(user_1, answered, {question.guid: "correct"})
    pipeline.admin("aggregations/finish")
    pipeline.admin(f"members/{answered}/connection_status", connection_status="CHALLENGED")
    banks = {}
    for user_id in ("user-ok-1", "user-ok-2"):
        members = list(pipeline.client.list_members(pipeline.member(user_id)[0]))
        banks[user_id] = sorted(m.guid for m in members if m.connection_status == "CONNECTED")
        banks[f"{user_id} in MFA"] = sorted(m.guid for m in members if m.connection_status == "CHALLENGED")
    return banks


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


def close_an_account(pipeline, member_guid: str) -> str:
    """MX stops listing one of the member's accounts, and its transactions with it; returns the account's guid."""
    world = pipeline.sandbox.world
    with world.lock:
        gone = world.members[member_guid].data.accounts.pop()
        world.accounts.pop(gone.guid)
        for guid in [g for g, t in world.transactions[member_guid].items() if t.account_guid == gone.guid]:
            del world.transactions[member_guid][guid]
    return gone.guid


def a_record_without_a_guid(member_guid: str):
    """An edit: the user's list also shows a record of ``member_guid`` without a guid."""
    return _edited_body(lambda accounts: accounts.append({**accounts[0], "guid": None, "member_guid": member_guid}))


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
    "member guid a list": _edited_body(lambda accounts: accounts[0].update(member_guid=[accounts[0]["member_guid"]])),
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


def _deleting_first(member_guid: str):
    """The member is deleted at MX just before its user's list is asked for: the list no longer shows it."""

    def edit(send, request):
        member_url = request.url.split("?")[0].removesuffix("/accounts") + f"/members/{member_guid}"
        headers = {name: request.headers[name] for name in ("Authorization", "Accept")}
        requests.delete(member_url, headers=headers, timeout=10).raise_for_status()
        return send(request)

    return edit


def test_a_users_members_are_read_by_one_list_of_the_users_and_each_account_lands_under_its_member(pipeline, banks):
    result = pipeline.materialize()

    both, (alone,) = banks["user-ok-1"], banks["user-ok-2"]
    in_mfa = banks["user-ok-1 in MFA"] + banks["user-ok-2 in MFA"]
    user_1, _ = pipeline.member("user-ok-1")
    assert account_calls(pipeline, result.run_id) == Counter(
        {(USER_ACCOUNTS, user_1): 1, (MEMBER_ACCOUNTS, alone): 1}  # one member to read: its own list
    )
    assert accounts_here(pipeline, both) == accounts_at_mx(pipeline, both)  # every account, under its member
    assert accounts_here(pipeline, [alone]) == accounts_at_mx(pipeline, [alone])
    assert accounts_at_mx(pipeline, in_mfa) and accounts_here(pipeline, in_mfa) == {}  # MFA: routed, not read
    assert pipeline.query("select count(*) from ops.quarantine") == [(0,)]


def test_an_account_gone_from_the_users_list_is_retired_from_its_member_and_the_other_members_keep_theirs(
    pipeline, banks
):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    gone = close_an_account(pipeline, first)
    aggregated(pipeline, [first, second])

    result = pipeline.materialize()

    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == [gone]
    assert accounts_here(pipeline, [first, second]) == accounts_at_mx(pipeline, [first, second])
    assert pipeline.query("select count(*) from marts.fct_transactions where account_guid = ?", gone) == [(0,)]


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


def test_a_record_without_a_guid_retires_nothing_of_its_member_until_a_list_read_whole(pipeline, banks, monkeypatch):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    gone = close_an_account(pipeline, second)  # a whole list would retire it
    aggregated(pipeline, [first, second])
    monkeypatch.setitem(EDITS, "a record of the second member without a guid", a_record_without_a_guid(second))

    result = pipeline.materialize(mx=edited(pipeline, "a record of the second member without a guid"),
                                  raise_on_error=False)  # fmt: skip

    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == []
    assert pipeline.query("select removed_at from raw.mx_accounts where guid = ?", gone) == [(None,)]
    aggregated(pipeline, [first, second])  # the next list read whole retires it
    assert metadata_of(pipeline.materialize())["raw.mx_accounts"]["accounts_retired"] == [gone]


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


def test_a_record_whose_member_guid_is_no_text_is_quarantined_once_and_the_reads_go_on(pipeline, banks):
    pipeline.materialize()
    members = banks["user-ok-1"]
    aggregated(pipeline, members + banks["user-ok-2"])
    user_guid, _ = pipeline.member("user-ok-1")
    bad = next(iter(pipeline.client.list_user_accounts(user_guid))).guid

    result = pipeline.materialize(mx=edited(pipeline, "member guid a list"), raise_on_error=False)

    assert [e.step_key for e in result.all_events if e.is_step_failure] == []
    quarantined = pipeline.query(
        "select record_guid, reason from ops.quarantine where run_id = ? and table_name = 'raw.mx_accounts'",
        result.run_id,
    )
    assert [guid for guid, _ in quarantined] == [bad] and "member_guid" in quarantined[0][1]
    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == []
    others = banks["user-ok-2"]
    assert accounts_here(pipeline, others) == accounts_at_mx(pipeline, others)


def test_a_bad_record_of_a_member_not_read_is_left_to_its_own_read_and_stops_no_retirement(
    pipeline, banks, monkeypatch
):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    (in_mfa,) = banks["user-ok-1 in MFA"]
    gone = close_an_account(pipeline, second)  # the second member's list, read whole, retires it
    aggregated(pipeline, [first, second])
    monkeypatch.setitem(EDITS, "a record of the member in MFA without a guid", a_record_without_a_guid(in_mfa))

    result = pipeline.materialize(mx=edited(pipeline, "a record of the member in MFA without a guid"))

    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == [gone]
    assert pipeline.query("select count(*) from ops.quarantine where run_id = ?", result.run_id) == [(0,)]


def test_a_record_without_a_guid_leaves_only_its_members_list_incomplete(pipeline, banks, monkeypatch):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    gone = {member: close_an_account(pipeline, member) for member in (first, second)}
    aggregated(pipeline, [first, second])
    monkeypatch.setitem(EDITS, "a record of the first member without a guid", a_record_without_a_guid(first))

    result = pipeline.materialize(mx=edited(pipeline, "a record of the first member without a guid"),
                                  raise_on_error=False)  # fmt: skip

    assert metadata_of(result)["raw.mx_accounts"]["accounts_retired"] == [gone[second]]
    [(member,)] = pipeline.query(
        "select member_guid from ops.quarantine where run_id = ? and table_name = 'raw.mx_accounts'", result.run_id
    )
    assert member == first


def test_a_member_deleted_at_mx_meanwhile_is_read_alone_and_retired_as_a_member(pipeline, banks, monkeypatch):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    aggregated(pipeline, [first, second])
    monkeypatch.setitem(EDITS, "the second member deleted first", _deleting_first(second))

    result = pipeline.materialize(mx=edited(pipeline, "the second member deleted first"))

    user_guid, _ = pipeline.member("user-ok-1")
    assert account_calls(pipeline, result.run_id) == Counter(
        {(USER_ACCOUNTS, user_guid): 1, (MEMBER_ACCOUNTS, second): 1}
    )
    assert metadata_of(result)["raw.mx_accounts"]["members_retired"] == [second]
    assert pipeline.query("select removed_at is not null from raw.mx_members where guid = ?", second) == [(True,)]
    assert accounts_here(pipeline, [first]) == accounts_at_mx(pipeline, [first])


def test_a_member_with_no_account_left_at_mx_is_read_alone_and_its_accounts_retired(pipeline, banks):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    world = pipeline.sandbox.world
    with world.lock:  # MX lists none of the second member's accounts any more
        closed = [account.guid for account in world.members[second].data.accounts]
        world.members[second].data.accounts.clear()
        for guid in closed:
            world.accounts.pop(guid)
    aggregated(pipeline, [first, second])

    result = pipeline.materialize()

    user_guid, _ = pipeline.member("user-ok-1")
    assert account_calls(pipeline, result.run_id) == Counter(
        {(USER_ACCOUNTS, user_guid): 1, (MEMBER_ACCOUNTS, second): 1}
    )
    assert sorted(metadata_of(result)["raw.mx_accounts"]["accounts_retired"]) == sorted(closed)
    assert pipeline.query("select removed_at from raw.mx_members where guid = ?", second) == [(None,)]


def test_a_member_deleted_meanwhile_is_read_alone_though_the_users_list_has_a_record_naming_no_member(
    pipeline, banks, monkeypatch
):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    aggregated(pipeline, [first, second])
    deleting, editing = _deleting_first(second), _edited_body(lambda accounts: accounts[0].update(member_guid=None))
    monkeypatch.setitem(EDITS, "second deleted, a record naming no member",
                        lambda send, request: editing(lambda r: deleting(send, r), request))  # fmt: skip

    result = pipeline.materialize(mx=edited(pipeline, "second deleted, a record naming no member"),
                                  raise_on_error=False)  # fmt: skip

    assert account_calls(pipeline, result.run_id)[(MEMBER_ACCOUNTS, second)] == 1  # read alone: 404
    assert metadata_of(result)["raw.mx_accounts"]["members_retired"] == [second]
    assert pipeline.query("select removed_at is not null from raw.mx_members where guid = ?", second) == [(True,)]


def test_a_read_the_users_list_finished_is_not_finished_again_when_the_next_one_fails(pipeline, banks, monkeypatch):
    pipeline.materialize()
    members = banks["user-ok-1"]
    aggregated(pipeline, members)
    finishes: list[tuple[str, str]] = []
    real_finish = RecordLanding.finish

    def finish(self, *, outcome, **how):
        if "/accounts/" in self.directory and self.member_guid in members:
            if outcome == "synced" and any(done == "synced" for _, done in finishes):
                raise RuntimeError("the second member's read cannot be landed (a full disk)")
            finishes.append((self.member_guid, outcome))
        return real_finish(self, outcome=outcome, **how)

    monkeypatch.setattr(RecordLanding, "finish", finish)

    assert not pipeline.materialize(raise_on_error=False).success

    assert sorted(outcome for _, outcome in finishes) == ["failed", "synced"]  # each read finished once
    assert len({member for member, _ in finishes}) == 2


def test_a_record_whose_member_guid_only_looks_like_another_members_retires_nothing(pipeline, banks, monkeypatch):
    pipeline.materialize()
    first, second = banks["user-ok-1"]
    aggregated(pipeline, [first, second])
    marked = {}

    def newline(accounts):
        account = next(a for a in accounts if a["member_guid"] == first)
        account["member_guid"] += "\n"
        marked["guid"] = account["guid"]

    monkeypatch.setitem(EDITS, "a member guid ending in a newline", _edited_body(newline))

    result = pipeline.materialize(mx=edited(pipeline, "a member guid ending in a newline"), raise_on_error=False)

    assert pipeline.query("select removed_at from raw.mx_accounts where guid = ?", marked["guid"]) == [(None,)]
    [(guid, reason)] = pipeline.query(
        "select record_guid, reason from ops.quarantine where run_id = ? and table_name = 'raw.mx_accounts'",
        result.run_id,
    )
    assert guid == marked["guid"] and "member_guid" in reason
