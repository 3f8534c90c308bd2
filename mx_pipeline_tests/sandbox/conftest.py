"""Fixtures for the sandbox tests: a running sandbox per test (frozen clock, instant aggregation) and an MX
session whose every 2xx exchange is checked against MX's spec."""

import contextlib

import pytest
import requests

from mx_pipeline.sandbox.server import SandboxHandle, running_sandbox
from mx_pipeline_tests.contract import MX_MEDIA_TYPE, assert_matches_spec, assert_request_matches_spec

AUTH = ("sandbox-client-id", "sandbox-api-key")
FAST = {"freeze_clock": True, "aggregation_seconds": 0, "start_time": "2026-11-25T12:00:00Z"}


class MxSession:
    """Plain ``requests`` against the sandbox, as any MX client would talk to it."""

    def __init__(self, sandbox: SandboxHandle) -> None:
        self.sandbox = sandbox
        self.base_url = sandbox.base_url
        self.http = requests.Session()
        self.http.auth = AUTH
        self.http.headers["Accept"] = MX_MEDIA_TYPE

    def call(self, method: str, path: str, *, check_spec: bool = True, **kwargs) -> requests.Response:
        """One exchange; successes are validated against the spec (request and response)."""
        response = self.http.request(method, self.base_url + path, **kwargs)
        if check_spec and response.status_code == 204 and path.endswith("/challenges"):
            # S11 describes this 204 ("not CHALLENGED") only in prose, so only the request can be checked.
            assert_request_matches_spec(response.request)
        elif check_spec and 200 <= response.status_code < 300:
            assert_matches_spec(response)
        return response

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.call("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.call("PUT", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.call("DELETE", path, **kwargs)

    def admin(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, f"{self.base_url}/_sandbox/{path}", **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    # flows every test needs
    def create_user(self, user_id: str = "user-1") -> str:
        response = self.post("/users", json={"user": {"id": user_id, "email": f"{user_id}@example.com"}})
        assert response.status_code == 200
        return response.json()["user"]["guid"]

    def credentials(self, institution: str, login: str, password: str) -> list[dict]:
        fields = self.get(f"/institutions/{institution}/credentials").json()["credentials"]
        values = {"LOGIN": login, "PASSWORD": password}
        return [{"guid": f["guid"], "value": values[f["field_name"]]} for f in fields]

    def create_member(self, user_guid: str, password: str = "password", institution: str = "mxbank") -> dict:
        body = {
            "member": {
                "institution_code": institution,
                "credentials": self.credentials(institution, "mxuser", password),
            }
        }
        response = self.post(f"/users/{user_guid}/members", json=body)
        assert response.status_code == 202, response.text
        return response.json()["member"]

    def member(self, user_guid: str, member_guid: str) -> dict:
        return self.get(f"/users/{user_guid}/members/{member_guid}").json()["member"]

    def connected_member(self, password: str = "password", user_id: str = "user-1") -> tuple[str, str]:
        user_guid = self.create_user(user_id)
        member_guid = self.create_member(user_guid, password)["guid"]
        assert self.member(user_guid, member_guid)["connection_status"] == "CONNECTED"
        return user_guid, member_guid


@pytest.fixture
def start_sandbox():
    """``start_sandbox(**options) -> MxSession``; every sandbox started is stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(**options) -> MxSession:
            return MxSession(stack.enter_context(running_sandbox(**(FAST | options))))

        yield start


@pytest.fixture
def mx(start_sandbox) -> MxSession:
    return start_sandbox()
