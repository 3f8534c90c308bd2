"""Fault injection: each kind at its own rate, deterministic by seed, changeable while the sandbox runs."""

import json
from collections import Counter

import pytest
import requests

from mx_pipeline import settings
from mx_pipeline.mx import MxClient, RateLimiter, RateLimits, RetryPolicy
from mx_pipeline.sandbox.config import make_config
from mx_pipeline.sandbox.faults import FAULT_KINDS, FaultInjector, rates_from_config


def outcomes(mx, count=80):
    result = []
    for _ in range(count):
        response = mx.get("/institutions/mxbank", check_spec=False)
        try:
            json.loads(response.content)
            kind = "ok" if response.status_code == 200 else str(response.status_code)
        except ValueError:
            kind = "corrupt"
        result.append((kind, response.headers.get("Retry-After")))
    return result


def test_every_fault_kind_shows_up_at_a_high_fault_rate(start_sandbox):
    mx = start_sandbox(fault_rate=0.6, seed=7)
    seen = outcomes(mx)
    kinds = {kind for kind, _ in seen}
    assert {"ok", "429", "corrupt"} <= kinds
    assert kinds & {"500", "502", "503", "504"}
    assert all(retry for kind, retry in seen if kind == "429")


def test_faults_are_deterministic_for_a_seed(start_sandbox):
    first = outcomes(start_sandbox(fault_rate=0.3, seed=11))
    second = outcomes(start_sandbox(fault_rate=0.3, seed=11))
    other = outcomes(start_sandbox(fault_rate=0.3, seed=12))
    assert first == second
    assert first != other


def test_no_faults_without_a_fault_rate(mx):
    assert {kind for kind, _ in outcomes(mx, 30)} == {"ok"}


def test_each_kind_is_injected_at_its_own_rate():
    rates = {"server_error": 0.10, "rate_limited": 0.05, "truncated_json": 0.01, "invalid_json": 0.01}
    injector = FaultInjector(seed=5, rates=rates)
    draws = 20_000
    drawn = Counter(fault.kind for fault in (injector.draw("GET") for _ in range(draws)) if fault)
    for kind, rate in rates.items():
        assert drawn[kind] == pytest.approx(rate * draws, rel=0.2), kind
    assert drawn["server_error_after_write"] == 0  # a kind without a rate never shows up
    assert injector.state()["injected"] == {kind: drawn[kind] for kind in FAULT_KINDS}


def test_the_fault_rate_shorthand_spreads_evenly_over_the_four_classic_kinds():
    rates = rates_from_config(make_config(fault_rate=0.2, server_error_rate=0.1, server_error_after_write_rate=0.03))
    assert rates == pytest.approx(
        {
            "server_error": 0.15,
            "rate_limited": 0.05,
            "truncated_json": 0.05,
            "invalid_json": 0.05,
            "server_error_after_write": 0.03,
        }
    )


@pytest.mark.parametrize("rates", [{"server_error": 0.8, "rate_limited": 0.5}, {"invalid_json": -0.1}, {"oops": 0.1}])
def test_rates_that_cannot_be_honoured_are_refused(rates):
    with pytest.raises(ValueError, match="fault"):
        FaultInjector(seed=0, rates=rates)


def test_a_429_carries_the_retry_after_it_was_given(start_sandbox):
    mx = start_sandbox(rate_limited_rate=1.0, fault_retry_after_seconds=0.01)
    assert set(outcomes(mx, 5)) == {("429", "0.01")}


def test_only_the_kind_given_a_rate_is_injected(start_sandbox):
    mx = start_sandbox(truncated_json_rate=1.0)
    response = mx.get("/institutions/mxbank", check_spec=False)
    assert response.status_code == 200
    assert response.content.startswith(b'{"institution":')
    with pytest.raises(ValueError):
        json.loads(response.content)  # cut mid-document
    assert {kind for kind, _ in outcomes(mx, 10)} == {"corrupt"}


def test_write_requests_are_never_answered_with_a_corrupted_body():
    injector = FaultInjector(seed=3, rates={"truncated_json": 0.5, "invalid_json": 0.5})
    assert [injector.draw("POST") for _ in range(200)] == [None] * 200


def test_a_write_answered_5xx_after_it_committed_did_happen(start_sandbox):
    mx = start_sandbox(server_error_after_write_rate=1.0)
    response = mx.post("/users", json={"user": {"id": "lost-answer"}})
    assert response.status_code in (500, 502, 503, 504)
    [user] = mx.get("/users", params={"id": "lost-answer"}).json()["users"]  # reads are never hit by this kind
    assert user["id"] == "lost-answer"


def test_ensure_user_under_lost_and_refused_creates_makes_each_user_exactly_once(start_sandbox):
    mx = start_sandbox(seed=4, server_error_rate=0.15, server_error_after_write_rate=0.3)
    fast = dict(retry=RetryPolicy(max_attempts=12, backoff_base=0.0), limiter=RateLimiter(RateLimits(1000, 1000)))
    ids = [f"end-user-{i}" for i in range(20)]
    with MxClient(mx.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, **fast) as client:
        made = {user_id: client.ensure_user(id=user_id).guid for user_id in ids}
    world = mx.sandbox.world
    with world.lock:
        assert sorted(u.id for u in world.users.values()) == sorted(ids)  # none missing, none twice
        assert made == {u.id: u.guid for u in world.users.values()}
    injected = mx.admin("GET", "faults")["injected"]
    assert injected["server_error"] > 0 and injected["server_error_after_write"] > 0


def test_fault_rates_can_change_while_the_sandbox_runs(mx):
    assert (
        mx.admin("POST", "faults", json={"rates": {"invalid_json": 1.0}, "retry_after_seconds": 0})["rates"][
            "invalid_json"
        ]
        == 1.0
    )
    assert outcomes(mx, 3) == [("corrupt", None)] * 3
    state = mx.admin("POST", "faults", json={"rates": {"invalid_json": 0}})
    assert outcomes(mx, 3) == [("ok", None)] * 3
    assert state["injected"]["invalid_json"] == 3 and state["retry_after_seconds"] == 0
    refused = requests.post(mx.base_url + "/_sandbox/faults", json={"rates": {"nonsense": 1}}, timeout=10)
    assert refused.status_code == 400 and "nonsense" in refused.json()["error"]["message"]


def test_admin_and_connect_pages_are_never_faulted(start_sandbox):
    mx = start_sandbox(fault_rate=1.0)
    for _ in range(20):
        assert requests.get(mx.base_url + "/_sandbox/truth").status_code == 200
    assert requests.get(mx.base_url + "/connect/not-a-token").status_code == 404


def test_latency_is_added_to_api_requests(start_sandbox):
    mx = start_sandbox(latency_ms=150)
    response = mx.get("/institutions")
    assert response.elapsed.total_seconds() >= 0.15
