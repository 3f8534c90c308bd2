"""Pagination exactly as MX describes it: records_per_page ranges per endpoint, fallback to 25, the object."""

import math

import pytest


@pytest.fixture
def user_with_data(mx):
    user, member = mx.connected_member()
    return mx, user, member


def test_the_pagination_object_describes_the_page(user_with_data):
    mx, user, _ = user_with_data
    body = mx.get(f"/users/{user}/transactions", params={"records_per_page": 10, "page": 2}).json()
    total = body["pagination"]["total_entries"]
    assert body["pagination"] == {
        "current_page": 2,
        "per_page": 10,
        "total_entries": total,
        "total_pages": math.ceil(total / 10),
    }
    assert len(body["transactions"]) == 10


def test_walking_every_page_yields_every_transaction_once(user_with_data):
    mx, user, _ = user_with_data
    everything = mx.get(f"/users/{user}/transactions", params={"records_per_page": 1000}).json()
    guids, page = [], 1
    while True:
        body = mx.get(f"/users/{user}/transactions", params={"records_per_page": 100, "page": page}).json()
        guids += [t["guid"] for t in body["transactions"]]
        if page >= body["pagination"]["total_pages"]:
            break
        page += 1
    assert guids == [t["guid"] for t in everything["transactions"]]
    assert len(set(guids)) == everything["pagination"]["total_entries"]


@pytest.mark.parametrize(("asked", "served"), [(None, 25), (10, 10), (1000, 1000), (1001, 25), (5000, 25), (3, 10)])
def test_records_per_page_on_1000_max_endpoints(user_with_data, asked, served):
    mx, user, _ = user_with_data
    params = {} if asked is None else {"records_per_page": asked}
    assert mx.get(f"/users/{user}/transactions", params=params).json()["pagination"]["per_page"] == served


@pytest.mark.parametrize(("asked", "served"), [(100, 100), (101, 25), (1000, 25), (10, 10)])
def test_records_per_page_on_100_max_endpoints(mx, asked, served):
    for path in ("/categories/default", "/institutions"):
        assert mx.get(path, params={"records_per_page": asked}).json()["pagination"]["per_page"] == served


def test_the_per_user_default_categories_allow_up_to_1000_per_page(mx):
    user = mx.create_user()
    body = mx.get(f"/users/{user}/categories/default", params={"records_per_page": 1000}).json()
    assert body["pagination"]["per_page"] == 1000


def test_a_page_past_the_end_is_empty_with_the_true_totals(user_with_data):
    mx, user, member = user_with_data
    body = mx.get(f"/users/{user}/members/{member}/accounts", params={"page": 99}).json()
    assert body["accounts"] == []
    assert body["pagination"]["current_page"] == 99
    assert body["pagination"]["total_entries"] >= 1


def test_an_empty_list_has_zero_pages(mx):
    user = mx.create_user()
    body = mx.get(f"/users/{user}/members").json()
    assert body["pagination"] == {"current_page": 1, "per_page": 25, "total_entries": 0, "total_pages": 0}


def test_a_non_integer_page_is_400(mx):
    assert mx.get("/institutions", params={"page": "two"}).status_code == 400
