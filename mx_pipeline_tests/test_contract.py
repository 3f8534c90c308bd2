"""The contract oracle itself: it must reject what MX's spec forbids, or every contract test is vacuous."""

import pytest
import requests
from openapi_core.validation.request.exceptions import RequestValidationError
from openapi_core.validation.response.exceptions import InvalidData

from mx_pipeline_tests.contract import MX_MEDIA_TYPE, assert_matches_spec


def exchange(method: str, path: str, body: bytes, status: int = 200, **request_kwargs) -> requests.Response:
    request = requests.Request(
        method, "http://127.0.0.1:1" + path, headers={"Accept": MX_MEDIA_TYPE}, auth=("id", "key"), **request_kwargs
    )
    response = requests.Response()
    response.status_code, response._content, response.request = status, body, request.prepare()
    response.headers["Content-Type"] = MX_MEDIA_TYPE
    return response


def test_a_spec_valid_exchange_passes():
    assert_matches_spec(exchange("GET", "/users/USR-1", b'{"user": {"guid": "USR-1", "id": "u1"}}'))


def test_a_wrongly_typed_field_is_rejected():
    with pytest.raises(InvalidData, match="is not of type 'string'"):
        assert_matches_spec(exchange("GET", "/users/USR-1", b'{"user": {"guid": 42}}'))


def test_a_string_where_mx_s_spec_says_boolean_is_rejected():
    # most_recent_job_guid is declared boolean (a spec bug): a faithful body sends null, not "JOB-...".
    body = b'{"member": {"guid": "MBR-1", "most_recent_job_guid": "JOB-1"}}'
    with pytest.raises(InvalidData):
        assert_matches_spec(exchange("GET", "/users/USR-1/members/MBR-1", body))


def test_a_request_body_of_the_wrong_shape_is_rejected():
    with pytest.raises(RequestValidationError):
        assert_matches_spec(exchange("POST", "/users", b'{"user": {"guid": "USR-1"}}', json={"user": {"id": 7}}))
