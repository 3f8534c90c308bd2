"""Every MX Bank test credential produces its documented (or documented-as-guessed) outcome."""

import pytest

from mx_pipeline.sandbox.institutions import MX_DOCUMENTED_PASSWORDS, SANDBOX_PASSWORDS

EXPECTED = {
    "anything-else": ("CONNECTED", None),
    "challenge": ("CHALLENGED", "TEXT"),
    "options": ("CHALLENGED", "OPTIONS"),
    "image": ("CHALLENGED", "IMAGE_DATA"),
    "BAD_REQUEST": ("FAILED", None),
    "UNAUTHORIZED": ("DENIED", None),
    "INVALID": ("DENIED", None),
    "SERVER_ERROR": ("FAILED", None),
    "UNAVAILABLE": ("DISCONNECTED", None),
    "LOCKED": ("LOCKED", None),
    "IMPEDED": ("IMPEDED", None),
    "PREVENTED": ("PREVENTED", None),
    "DEGRADED": ("DEGRADED", None),
    "DISABLED": ("DISABLED", None),
    "IMPAIRED": ("IMPAIRED", None),
    "DISCONTINUED": ("DISCONTINUED", None),
    "CLOSED": ("CLOSED", None),
    "DELAYED": ("DELAYED", None),
    "DISCONNECTED": ("DISCONNECTED", None),
    "FAILED": ("FAILED", None),
    "DENIED": ("DENIED", None),
    "EXPIRED": ("EXPIRED", None),
    "REJECTED": ("REJECTED", None),
    "challenge_later": ("CONNECTED", None),
}


def test_every_password_the_sandbox_knows_is_exercised_here():
    assert set(MX_DOCUMENTED_PASSWORDS) | set(SANDBOX_PASSWORDS) <= set(EXPECTED)


@pytest.mark.parametrize(("password", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_mx_bank_password_decides_the_outcome(mx, password, expected):
    status, challenge_type = expected
    user = mx.create_user()
    created = mx.create_member(user, password)
    assert created["connection_status"] == "CREATED" and created["is_being_aggregated"] is True
    member = mx.member(user, created["guid"])
    assert member["connection_status"] == status
    assert member["is_being_aggregated"] is False
    challenges = mx.get(f"/users/{user}/members/{member['guid']}/challenges")
    if challenge_type:
        assert challenges.status_code == 200
        assert [c["type"] for c in challenges.json()["challenges"]] == [challenge_type]
    else:
        assert challenges.status_code == 204 and challenges.content == b""
    assert member["needs_updated_credentials"] is (status in ("DENIED", "PREVENTED", "IMPAIRED"))


def test_a_username_other_than_mxuser_is_denied(mx):
    user = mx.create_user()
    body = {"member": {"institution_code": "mxbank", "credentials": mx.credentials("mxbank", "someone", "password")}}
    member = mx.post(f"/users/{user}/members", json=body).json()["member"]
    assert mx.member(user, member["guid"])["connection_status"] == "DENIED"


def test_only_a_connected_member_has_aggregated_data(mx):
    user = mx.create_user()
    denied = mx.create_member(user, "UNAUTHORIZED")["guid"]
    connected = mx.create_member(user, "password")["guid"]
    assert mx.get(f"/users/{user}/members/{denied}/accounts").json()["accounts"] == []
    assert mx.get(f"/users/{user}/members/{connected}/accounts").json()["accounts"]
    status = mx.get(f"/users/{user}/members/{connected}/status").json()["member"]
    assert status["has_processed_transactions"] is True and status["is_authenticated"] is True
