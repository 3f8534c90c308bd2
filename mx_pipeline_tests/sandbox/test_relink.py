"""MX's deletion lifecycle in the sandbox: a deleted member or user is gone, a bank linked again (or a member MX
replaces) shows the same history under new guids, and the admin hook lists the user's live transactions."""

from collections import Counter
from datetime import date, timedelta

import requests

from mx_pipeline.sandbox.datagen import PENDING_DAYS

HISTORY_DAYS = 120  # the sandbox's default history on a first aggregation


def user_transactions(mx, user: str) -> list[dict]:
    rows, page = [], 1
    while True:
        body = mx.get(f"/users/{user}/transactions", params={"records_per_page": 1000, "page": page}).json()
        rows += body["transactions"]
        if page >= body["pagination"]["total_pages"]:
            return rows
        page += 1


def statement(rows: list[dict], since: date) -> Counter:
    """What the bank shows from ``since`` on, guids aside."""
    return Counter(
        (r["date"], r["amount"], r["type"], r["status"], r["description"], r["original_description"])
        for r in rows
        if date.fromisoformat(r["date"]) >= since
    )


def accounts(mx, user: str) -> dict[tuple[str, str], str]:
    return {(a["name"], a["type"]): a["guid"] for a in mx.get(f"/users/{user}/accounts").json()["accounts"]}


def link(mx, user: str, institution: str = "mxbank") -> str:
    """The user adds a bank with the sandbox's working login (mxuser / password), through the real API."""
    credentials = mx.credentials(institution, "mxuser", "password")
    response = mx.post(
        f"/users/{user}/members", json={"member": {"institution_code": institution, "credentials": credentials}}
    )
    assert response.status_code == 202, response.text
    member = response.json()["member"]["guid"]
    assert mx.member(user, member)["connection_status"] == "CONNECTED"
    return member


def relink(mx, user: str) -> str:
    """The user adds the same bank again with the same login."""
    return link(mx, user)


def admin_status(mx, method: str, path: str) -> int:
    return requests.request(method, f"{mx.base_url}/_sandbox/{path}").status_code


def test_a_bank_linked_again_shows_the_same_history_under_new_guids(mx):
    user, old = mx.connected_member()
    mx.admin("POST", "clock/advance", json={"days": PENDING_DAYS + 1})  # a background aggregation settles pendings
    old_rows, old_accounts = user_transactions(mx, user), accounts(mx, user)
    assert {r["member_guid"] for r in old_rows} == {old}

    assert mx.delete(f"/users/{user}/members/{old}").status_code == 204
    assert user_transactions(mx, user) == []
    new = relink(mx, user)
    new_rows, new_accounts = user_transactions(mx, user), accounts(mx, user)

    assert new != old
    assert new_accounts.keys() == old_accounts.keys()
    assert set(new_accounts.values()).isdisjoint(old_accounts.values())
    assert {r["guid"] for r in new_rows}.isdisjoint({r["guid"] for r in old_rows})
    assert {r["member_guid"] for r in new_rows} == {new}
    # The new member reads the last HISTORY_DAYS days; the days both cover are the same statement.
    today = date.fromisoformat(mx.admin("GET", "clock")["now"][:10])
    overlap = today - timedelta(days=HISTORY_DAYS)
    assert min(date.fromisoformat(r["date"]) for r in new_rows) == overlap
    assert statement(new_rows, overlap) == statement(old_rows, overlap)
    assert sum(statement(new_rows, overlap).values()) > 200  # months of history, not a handful of rows


def test_a_re_link_keeps_purchases_the_bank_added_since_the_first_link(mx):
    user, old = mx.connected_member()
    mx.admin("POST", f"members/{old}/transactions", json={"count": 2})
    mx.post(f"/users/{user}/members/{old}/aggregate")  # a same-day aggregation finds fresh purchases too
    mx.admin("POST", "aggregations/finish")
    old_rows = user_transactions(mx, user)

    mx.delete(f"/users/{user}/members/{old}")
    mx.admin("POST", "clock/advance", json={"days": 1})
    relink(mx, user)

    yesterday = date.fromisoformat(mx.admin("GET", "clock")["now"][:10]) - timedelta(days=1)
    on = lambda rows: Counter((r["amount"], r["description"]) for r in rows if r["date"] == yesterday.isoformat())  # noqa: E731
    assert on(user_transactions(mx, user)) == on(old_rows)


def test_the_replace_hook_swaps_the_member_for_a_connected_one_with_the_same_history(mx):
    user, old = mx.connected_member()
    old_rows = user_transactions(mx, user)

    replaced = mx.admin("POST", f"members/{old}/replace")

    new = replaced["member_guid"]
    assert replaced["replaced_member_guid"] == old and new != old
    assert replaced["status"]["connection_status"] == "CONNECTED"
    assert replaced["member"]["institution_code"] == "mxbank"
    assert [m["guid"] for m in mx.get(f"/users/{user}/members").json()["members"]] == [new]
    assert mx.get(f"/users/{user}/members/{old}").status_code == 404
    new_rows = user_transactions(mx, user)
    assert {r["member_guid"] for r in new_rows} == {new}
    assert statement(new_rows, date.min) == statement(old_rows, date.min)


def test_the_replace_hook_answers_404_for_an_unknown_member(mx):
    assert admin_status(mx, "POST", "members/MBR-nope/replace") == 404


def test_the_truth_hook_lists_the_users_live_transactions_as_the_api_does(mx):
    user, old = mx.connected_member()
    second = link(mx, user, institution="sandboxcu")
    mx.delete(f"/users/{user}/members/{old}")

    truth = mx.admin("GET", f"users/{user}/transactions")["transactions"]

    api = {
        r["guid"]: {k: r[k] for k in ("account_guid", "member_guid", "amount", "type", "date", "status", "description")}
        for r in user_transactions(mx, user)
    }
    assert {t["guid"]: {k: v for k, v in t.items() if k != "guid"} for t in truth} == api
    assert {t["member_guid"] for t in truth} == {second}
    assert len(truth) > 100


def test_a_deleted_member_is_gone_from_every_read(mx):
    user, member = mx.connected_member()
    assert mx.delete(f"/users/{user}/members/{member}").status_code == 204
    for tail in ("", "/status", "/accounts", "/transactions"):
        response = mx.get(f"/users/{user}/members/{member}{tail}")
        assert response.status_code == 404, tail
    assert mx.get(f"/users/{user}/members").json()["members"] == []
    assert mx.admin("GET", f"users/{user}/transactions")["transactions"] == []


def test_a_deleted_user_is_gone_from_every_read(mx):
    user, member = mx.connected_member()
    kept = mx.create_user("user-2")
    assert mx.delete(f"/users/{user}", headers={"Accept": "application/vnd.mx.api.v1+json"}).status_code == 204
    assert mx.get(f"/users/{user}").status_code == 404
    assert mx.get(f"/users/{user}/members/{member}").status_code == 404
    assert mx.get(f"/users/{user}/transactions").status_code == 404
    assert [u["guid"] for u in mx.get("/users").json()["users"]] == [kept]
    assert admin_status(mx, "GET", f"members/{member}") == 404
    assert admin_status(mx, "GET", f"users/{user}/transactions") == 404
