"""Fault injection: 5xx, 429 with Retry-After, truncated and invalid JSON, deterministic by seed."""

import json

import requests

from mx_pipeline.sandbox.faults import FaultInjector


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


def test_admin_and_connect_pages_are_never_faulted(start_sandbox):
    mx = start_sandbox(fault_rate=1.0)
    for _ in range(20):
        assert requests.get(mx.base_url + "/_sandbox/truth").status_code == 200
    assert requests.get(mx.base_url + "/connect/not-a-token").status_code == 404


def test_write_requests_are_never_answered_with_a_corrupted_body():
    injector = FaultInjector(seed=3, fault_rate=1.0)
    kinds = {injector.draw("POST") for _ in range(200)} - {None}
    assert {kind for kind, _ in kinds} <= {"server_error", "rate_limited"}


def test_latency_is_added_to_api_requests(start_sandbox):
    mx = start_sandbox(latency_ms=150)
    response = mx.get("/institutions")
    assert response.elapsed.total_seconds() >= 0.15
