"""MX's 6-month limit on from_updated_at / to_updated_at (S11: "Maximum date range limit is 6 months"), as the
sandbox enforces it: a 400 in MX's error shape, judged by the sandbox's clock when the range is one-sided."""

TODAY = "2026-11-25"  # the FAST sandbox's frozen start


def _transactions(mx, user, **params):
    return mx.get(f"/users/{user}/transactions", params={"records_per_page": 1000, **params})


def test_a_one_sided_from_updated_at_reaches_up_to_today_and_at_most_six_months_back(mx):
    user = mx.create_user()
    assert _transactions(mx, user, from_updated_at="2026-05-25").status_code == 200  # exactly six months
    refused = _transactions(mx, user, from_updated_at="2026-05-24")
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {
            "message": "from_updated_at and to_updated_at may be at most 6 months apart "
            "(to_updated_at defaults to today)."
        }
    }


def test_the_limit_follows_the_sandbox_clock(mx):
    user = mx.create_user()
    assert _transactions(mx, user, from_updated_at="2026-11-01").status_code == 200
    mx.admin("POST", "clock/advance", json={"days": 200})
    assert _transactions(mx, user, from_updated_at="2026-11-01").status_code == 400


def test_a_two_sided_range_of_six_calendar_months_is_accepted_and_one_day_more_is_not(mx):
    user = mx.create_user()
    six_months = {"from_updated_at": "2026-02-28", "to_updated_at": "2026-08-28"}
    assert _transactions(mx, user, **six_months).status_code == 200
    assert _transactions(mx, user, **(six_months | {"to_updated_at": "2026-08-29"})).status_code == 400
    # a range entirely in the past is judged on its own length, not against today
    assert _transactions(mx, user, from_updated_at="2025-01-01", to_updated_at="2025-03-01").status_code == 200


def test_the_created_at_range_has_the_same_limit(mx):
    user = mx.create_user()
    refused = _transactions(mx, user, from_created_at="2026-01-01")
    assert refused.status_code == 400
    assert "from_created_at and to_created_at may be at most 6 months apart" in refused.json()["error"]["message"]
