"""Accounts, transactions (fields and filters), categories, merchants and institutions as MX shapes them."""

from datetime import date, timedelta

from mx_pipeline.sandbox.categories import TOP_LEVEL_NAMES

TODAY = date(2026, 11, 25)
AUTO_AND_TRANSPORT = "CAT-7829f71c-2e8c-afa5-2f55-fa3634b89874"


def all_transactions(mx, path, **params):
    return mx.get(path, params={"records_per_page": 1000, **params}).json()["transactions"]


def test_transactions_carry_mx_s_fields_with_mx_s_types(mx):
    user, _ = mx.connected_member()
    rows = all_transactions(mx, f"/users/{user}/transactions")
    assert len(rows) > 300
    for row in rows:
        assert row["amount"] > 0 and isinstance(row["amount"], float | int)
        assert row["type"] in ("CREDIT", "DEBIT")
        assert row["status"] in ("POSTED", "PENDING")
        assert row["transacted_at"].endswith("Z") and row["updated_at"].endswith("Z")
        assert date.fromisoformat(row["date"]) == date.fromisoformat(row["transacted_at"][:10])
        assert row["description"] and row["original_description"]
        assert row["category"] and row["category_guid"].startswith("CAT-") and row["top_level_category"]
        assert (row["posted_at"] is None) == (row["status"] == "PENDING")
    assert {r["status"] for r in rows} == {"POSTED", "PENDING"}
    assert any(r["description"] != r["original_description"] for r in rows)
    assert any(r["merchant_guid"] and isinstance(r["merchant_category_code"], int) for r in rows)
    assert any(r["category"] == "Paycheck" and r["type"] == "CREDIT" and r["is_income"] for r in rows)
    assert any(r["top_level_category"] == "Transfer" for r in rows)
    assert len({r["top_level_category"] for r in rows}) >= 6


def test_members_hold_several_account_types(start_sandbox):
    mx = start_sandbox()
    types = set()
    for n in range(6):
        user, member = mx.connected_member(user_id=f"user-{n}")
        types |= {a["type"] for a in mx.get(f"/users/{user}/members/{member}/accounts").json()["accounts"]}
    assert {"CHECKING", "SAVINGS", "CREDIT_CARD", "LOAN"} <= types


def test_transactions_default_to_the_last_120_days(mx):
    user, _ = mx.connected_member()
    rows = all_transactions(mx, f"/users/{user}/transactions")
    assert min(date.fromisoformat(r["date"]) for r in rows) >= TODAY - timedelta(days=120)


def test_from_date_and_to_date_bound_the_transaction_date_inclusively(mx):
    user, _ = mx.connected_member()
    rows = all_transactions(mx, f"/users/{user}/transactions", from_date="2026-10-01", to_date="2026-10-31")
    dates = {date.fromisoformat(r["date"]) for r in rows}
    assert dates and min(dates) >= date(2026, 10, 1) and max(dates) <= date(2026, 10, 31)
    assert date(2026, 10, 31) in dates or date(2026, 10, 1) in dates


def test_from_updated_at_returns_only_rows_changed_since(mx):
    user, member = mx.connected_member()
    before = all_transactions(mx, f"/users/{user}/transactions")
    mx.admin("POST", "clock/advance", json={"days": 3})
    mx.post(f"/users/{user}/members/{member}/aggregate")
    changed = all_transactions(mx, f"/users/{user}/transactions", from_updated_at="2026-11-28")
    assert changed and all(r["updated_at"] >= "2026-11-28" for r in changed)
    formerly_pending = {r["guid"] for r in before if r["status"] == "PENDING"}
    assert {r["guid"] for r in changed} & {r["guid"] for r in before} <= formerly_pending
    unchanged = all_transactions(mx, f"/users/{user}/transactions", to_updated_at="2026-11-27")
    assert {r["guid"] for r in unchanged} <= {r["guid"] for r in before}


def test_an_updated_at_range_over_six_months_is_400(mx):
    user = mx.create_user()
    params = {"from_updated_at": "2026-01-01", "to_updated_at": "2026-11-01"}
    assert mx.get(f"/users/{user}/transactions", params=params).status_code == 400
    assert mx.get(f"/users/{user}/transactions", params={"from_date": "last week"}).status_code == 400


def test_transactions_by_member_by_account_and_by_user_agree(mx):
    user, member = mx.connected_member()
    by_user = {r["guid"] for r in all_transactions(mx, f"/users/{user}/transactions")}
    by_member = {r["guid"] for r in all_transactions(mx, f"/users/{user}/members/{member}/transactions")}
    accounts = mx.get(f"/users/{user}/accounts").json()["accounts"]
    by_account = set()
    for account in accounts:
        rows = all_transactions(mx, f"/users/{user}/accounts/{account['guid']}/transactions")
        assert all(r["account_guid"] == account["guid"] for r in rows)
        by_account |= {r["guid"] for r in rows}
    assert by_user == by_member == by_account


def test_category_filters_select_by_category_and_top_level(mx):
    user, _ = mx.connected_member()
    rows = all_transactions(mx, f"/users/{user}/transactions", top_level_category_guid=AUTO_AND_TRANSPORT)
    assert rows and {r["top_level_category"] for r in rows} == {"Auto & Transport"}
    gas = next(r["category_guid"] for r in rows if r["category"] == "Gas")
    assert {r["category"] for r in all_transactions(mx, f"/users/{user}/transactions", category_guid=gas)} == {"Gas"}


def test_includes_merchants_adds_the_merchant_object(mx):
    user, _ = mx.connected_member()
    rows = all_transactions(mx, f"/users/{user}/transactions", includes="merchants")
    with_merchant = [r for r in rows if r["merchant_guid"]]
    assert all(r["merchant"]["guid"] == r["merchant_guid"] for r in with_merchant)
    assert all(r["merchant"] is None for r in all_transactions(mx, f"/users/{user}/transactions")[:20])


def test_merchants_resolve_by_guid(mx):
    user, _ = mx.connected_member()
    row = next(r for r in all_transactions(mx, f"/users/{user}/transactions") if r["merchant_guid"])
    merchant = mx.get(f"/merchants/{row['merchant_guid']}").json()["merchant"]
    assert merchant["name"] == row["description"]


def test_default_categories_hold_mx_s_21_top_levels_and_the_known_guid(mx):
    body = mx.get("/categories/default", params={"records_per_page": 100}).json()
    categories = body["categories"]
    top = [c for c in categories if c["parent_guid"] is None]
    assert [c["name"] for c in top] == list(TOP_LEVEL_NAMES) and len(top) == 21
    assert next(c for c in top if c["name"] == "Auto & Transport")["guid"] == AUTO_AND_TRANSPORT
    assert all(c["is_default"] and c["created_at"] is None for c in categories)
    assert body["pagination"]["total_entries"] == len(categories)
    parents = {c["guid"] for c in top}
    assert all(c["parent_guid"] in parents for c in categories if c["parent_guid"])


def test_every_transaction_category_is_in_the_default_list(mx):
    user, _ = mx.connected_member()
    known = {c["guid"] for c in mx.get("/categories/default", params={"records_per_page": 100}).json()["categories"]}
    assert {r["category_guid"] for r in all_transactions(mx, f"/users/{user}/transactions")} <= known


def test_accounts_carry_balances_as_numbers(mx):
    user, member = mx.connected_member()
    accounts = mx.get(f"/users/{user}/members/{member}/accounts").json()["accounts"]
    for account in accounts:
        assert isinstance(account["balance"], float | int)
        assert account["member_guid"] == member and account["user_guid"] == user
        assert mx.get(f"/users/{user}/accounts/{account['guid']}").json()["account"] == account


def test_institutions_can_be_searched_by_name(mx):
    names = [i["code"] for i in mx.get("/institutions", params={"name": "MX Bank"}).json()["institutions"]]
    assert names == ["mxbank", "mxbank_oauth"]
    assert len(mx.get("/institutions").json()["institutions"]) >= 2


def test_a_member_in_verification_style_without_transactions_has_accounts_only(mx):
    user = mx.create_user()
    # skip_aggregation leaves the member CREATED with nothing aggregated
    body = {
        "member": {
            "institution_code": "mxbank",
            "credentials": mx.credentials("mxbank", "mxuser", "x"),
            "skip_aggregation": True,
        }
    }
    member = mx.post(f"/users/{user}/members", json=body).json()["member"]
    assert member["connection_status"] == "CREATED" and member["is_being_aggregated"] is False
    assert mx.get(f"/users/{user}/members/{member['guid']}/accounts").json()["accounts"] == []
