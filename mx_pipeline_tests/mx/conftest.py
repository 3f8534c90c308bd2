import pytest
import requests
import responses

from mx_pipeline.mx import MxClient, RateLimiter, RateLimits, RetryPolicy
from mx_pipeline_tests.contract import assert_matches_spec, assert_request_matches_spec
from mx_pipeline_tests.mx.payloads import BASE_URL

CLIENT_ID = "test-client-id-4f1c"
API_KEY = "test-api-key-9b2e7d4a1f"


@pytest.fixture
def mx_api(request):
    """A mocked MX host. On teardown every exchange is checked against MX's spec: each request the client
    sent, and each 2xx body a test served. Error bodies are not in the spec (MX declares none), nor is the
    bodiless 204 that the challenges endpoint documents only in prose: for those the request is checked."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
        if request.node.get_closest_marker("off_contract"):
            return
        for call in mock.calls:
            response = call.response
            if isinstance(response, requests.Response) and 200 <= response.status_code < 300 and response.content:
                assert_matches_spec(call.response)
            else:
                assert_request_matches_spec(call.request)


@pytest.fixture
def sleeps():
    """Every sleep the client would do, recorded instead of slept."""
    return []


@pytest.fixture
def client(sleeps):
    limiter = RateLimiter(RateLimits(requests_per_second=1000, burst=1000, per_member_interval=0), sleep=sleeps.append)
    retry = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_max=4.0)
    # jitter=1.0 makes each backoff its ceiling, so tests can assert the exact schedule.
    options = dict(retry=retry, limiter=limiter, sleep=sleeps.append, jitter=lambda: 1.0)
    with MxClient(BASE_URL, CLIENT_ID, API_KEY, **options) as mx:
        yield mx
