"""Per-user and per-member limits answer 429, and abuse DEGRADES the member with the cause on record."""

from types import SimpleNamespace

from mx_pipeline.sandbox import clock

LIMITS = {"rate_limit_window_seconds": 10, "member_requests_per_window": 5, "user_requests_per_window": 1000}


def member_path(user, member):
    return f"/users/{user}/members/{member}"


def test_exceeding_the_per_member_limit_answers_429_with_retry_after(start_sandbox):
    mx = start_sandbox(**LIMITS)
    user, member = mx.connected_member()  # one member request (create is a user-level path)
    answers = [mx.get(member_path(user, member)).status_code for _ in range(6)]
    assert answers[:4] == [200] * 4 and answers[-1] == 429
    limited = mx.get(member_path(user, member))
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["message"]
    mx.admin("POST", "clock/advance", json={"seconds": 10})
    assert mx.get(member_path(user, member)).status_code == 200


def test_the_per_user_limit_covers_every_path_under_the_user(start_sandbox):
    mx = start_sandbox(user_requests_per_window=3, rate_limit_window_seconds=10)
    user = mx.create_user()
    codes = [mx.get(f"/users/{user}/{tail}").status_code for tail in ("members", "accounts", "transactions", "members")]
    assert codes == [200, 200, 200, 429]
    other = mx.create_user("user-2")
    assert mx.get(f"/users/{other}/members").status_code == 200
    assert mx.sandbox.world.rate_limited == {f"user:{user}": 1}


def test_windows_slide_in_real_time_even_when_the_calendar_is_frozen(start_sandbox, monkeypatch):
    real_seconds = [1000.0]  # the sandbox clock's real time, moved by the test alone (a loaded machine is slow)
    monkeypatch.setattr(clock, "time", SimpleNamespace(monotonic=lambda: real_seconds[0]))
    mx = start_sandbox(rate_limit_window_seconds=0.5, member_requests_per_window=2, user_requests_per_window=1000)
    user, member = mx.connected_member()
    assert [mx.get(member_path(user, member)).status_code for _ in range(2)] == [200, 429]
    real_seconds[0] += 0.6  # a client that waits out Retry-After in real time is let through
    assert mx.get(member_path(user, member)).status_code == 200


def test_the_user_limit_never_counts_toward_degrading_a_member(start_sandbox):
    mx = start_sandbox(user_requests_per_window=3, member_requests_per_window=1000, abuse_429s_before_degrade=2)
    user, member = mx.connected_member()
    codes = [mx.get(member_path(user, member)).status_code for _ in range(6)]
    assert codes.count(429) >= 3
    assert mx.admin("GET", "truth")["abuse_degradations"] == []


def test_repeated_429s_degrade_the_member_and_record_the_abuse(start_sandbox):
    mx = start_sandbox(**LIMITS, abuse_429s_before_degrade=3)
    user, member = mx.connected_member()
    codes = [mx.get(member_path(user, member)).status_code for _ in range(7)]
    assert codes == [200] * 4 + [429] * 3
    truth = mx.admin("GET", "truth")
    assert [a["member_guid"] for a in truth["abuse_degradations"]] == [member]
    assert "rate-limited" in truth["abuse_degradations"][0]["reason"]
    mx.admin("POST", "clock/advance", json={"seconds": 10})
    assert mx.member(user, member)["connection_status"] == "DEGRADED"


def test_too_many_aggregation_requests_degrade_the_member(start_sandbox):
    mx = start_sandbox(abuse_aggregations_before_degrade=3)
    user, member = mx.connected_member()
    for _ in range(4):
        mx.post(f"{member_path(user, member)}/aggregate")
    assert mx.member(user, member)["connection_status"] == "DEGRADED"
    assert "aggregation requests" in mx.admin("GET", "truth")["abuse_degradations"][0]["reason"]
    history = mx.admin("GET", f"members/{member}")["status_history"]
    assert next(h["cause"] for h in history if h["to"] == "DEGRADED").startswith("abuse")


def test_a_member_degraded_by_abuse_recovers_after_the_penalty(start_sandbox):
    mx = start_sandbox(abuse_aggregations_before_degrade=1, abuse_degraded_seconds=3600, abuse_window_seconds=60)
    user, member = mx.connected_member()
    mx.post(f"{member_path(user, member)}/aggregate")
    mx.post(f"{member_path(user, member)}/aggregate")
    assert mx.member(user, member)["connection_status"] == "DEGRADED"
    mx.admin("POST", "clock/advance", json={"seconds": 120})
    mx.post(f"{member_path(user, member)}/aggregate")
    assert mx.member(user, member)["connection_status"] == "DEGRADED", "still inside the penalty"
    mx.admin("POST", "clock/advance", json={"seconds": 3600})
    mx.post(f"{member_path(user, member)}/aggregate")
    assert mx.member(user, member)["connection_status"] == "CONNECTED"


def test_a_polite_client_is_never_limited_nor_degraded(start_sandbox):
    mx = start_sandbox(**LIMITS)
    user, member = mx.connected_member()
    for _ in range(6):
        for _ in range(4):
            assert mx.get(member_path(user, member)).status_code == 200
        mx.admin("POST", "clock/advance", json={"seconds": 10})
    truth = mx.admin("GET", "truth")
    assert truth["rate_limited"] == {} and truth["abuse_degradations"] == []


def test_admin_paths_are_never_rate_limited(start_sandbox):
    mx = start_sandbox(user_requests_per_window=1, member_requests_per_window=1)
    for _ in range(5):
        mx.admin("GET", "truth")
