"""Every MX endpoint the sandbox serves answers spec-valid bodies, and the wire rules (auth, Accept, errors)."""

import base64

import pytest
import requests

from mx_pipeline.sandbox.app import api_routes
from mx_pipeline_tests.contract import MX_MEDIA_TYPE, assert_matches_spec


def test_every_served_endpoint_answers_a_spec_valid_exchange(mx):
    user = mx.create_user()
    served = set()

    def hit(method, path, template, **kwargs):
        response = mx.call(method, path, **kwargs)
        assert 200 <= response.status_code < 300, (path, response.text)
        served.add((method, template))
        return response

    U, M = "/users/{user_guid}", "/users/{user_guid}/members/{member_guid}"
    hit("GET", "/users", "/users", params={"id": "user-1"})
    hit("POST", "/users", "/users", json={"user": {"id": "user-2", "metadata": "x"}})
    hit("GET", f"/users/{user}", U)
    hit("PUT", f"/users/{user}", U, json={"user": {"email": "new@example.com"}})
    hit(
        "POST", f"/users/{user}/widget_urls", U + "/widget_urls", json={"widget_url": {"widget_type": "connect_widget"}}
    )
    hit("GET", "/institutions", "/institutions", params={"name": "mx"})
    hit("GET", "/institutions/mxbank", "/institutions/{institution_code}")
    hit("GET", "/institutions/mxbank/credentials", "/institutions/{institution_code}/credentials")
    member = mx.create_member(user, "challenge")["guid"]
    served.add(("POST", U + "/members"))
    hit("GET", f"/users/{user}/members", U + "/members")
    hit("GET", f"/users/{user}/members/{member}", M)
    hit("GET", f"/users/{user}/members/{member}/status", M + "/status")
    challenges = hit("GET", f"/users/{user}/members/{member}/challenges", M + "/challenges").json()["challenges"]
    answers = [{"guid": c["guid"], "value": "correct"} for c in challenges]
    hit("PUT", f"/users/{user}/members/{member}/resume", M + "/resume", json={"member": {"challenges": answers}})
    hit("GET", f"/users/{user}/members/{member}/credentials", M + "/credentials")
    hit("PUT", f"/users/{user}/members/{member}", M, json={"member": {"metadata": "m"}})
    hit("POST", f"/users/{user}/members/{member}/aggregate", M + "/aggregate")
    mx.admin("POST", "aggregations/finish")
    hit("POST", f"/users/{user}/members/{member}/check_balance", M + "/check_balance")
    accounts = hit("GET", f"/users/{user}/members/{member}/accounts", M + "/accounts").json()["accounts"]
    account = accounts[0]["guid"]
    hit("GET", f"/users/{user}/members/{member}/accounts/{account}", M + "/accounts/{account_guid}")
    hit("GET", f"/users/{user}/members/{member}/transactions", M + "/transactions")
    hit("GET", f"/users/{user}/accounts", U + "/accounts")
    hit("GET", f"/users/{user}/accounts/{account}", U + "/accounts/{account_guid}")
    txns = hit("GET", f"/users/{user}/accounts/{account}/transactions", U + "/accounts/{account_guid}/transactions")
    hit("GET", f"/users/{user}/transactions", U + "/transactions", params={"includes": "merchants"})
    hit("GET", f"/users/{user}/categories/default", U + "/categories/default")
    hit("GET", "/categories/default", "/categories/default")
    merchant = next(t["merchant_guid"] for t in txns.json()["transactions"] if t["merchant_guid"])
    hit("GET", f"/merchants/{merchant}", "/merchants/{merchant_guid}")
    hit("DELETE", f"/users/{user}/members/{member}", M)
    hit("DELETE", f"/users/{user}", U)
    declared = {(method, route.path) for route in api_routes() for method in route.methods - {"HEAD"}}
    assert declared == served


def test_successes_use_mx_s_vendor_media_type(mx):
    response = mx.get("/institutions")
    assert response.headers["Content-Type"] == MX_MEDIA_TYPE


@pytest.mark.parametrize(
    "auth", [None, ("sandbox-client-id", "wrong-key"), ("someone-else", "sandbox-api-key")], ids=str
)
def test_missing_or_wrong_basic_auth_answers_401_in_mx_s_error_shape(mx, auth):
    response = requests.get(mx.base_url + "/institutions", auth=auth, headers={"Accept": MX_MEDIA_TYPE})
    assert response.status_code == 401
    assert set(response.json()) == {"error"} and response.json()["error"]["message"]


def test_a_garbled_authorization_header_is_401_not_a_crash(mx):
    headers = {"Accept": MX_MEDIA_TYPE, "Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()}
    assert requests.get(mx.base_url + "/institutions", headers=headers).status_code == 401


def test_the_sandbox_accepts_the_credentials_it_was_started_with(start_sandbox):
    mx = start_sandbox(client_id="my-id", api_key="my-key")
    response = requests.get(mx.base_url + "/institutions", auth=("my-id", "my-key"), headers={"Accept": MX_MEDIA_TYPE})
    assert response.status_code == 200
    assert mx.get("/institutions", check_spec=False).status_code == 401


@pytest.mark.parametrize("accept", [None, "application/json", "application/vnd.mx.api.v2+json"])
def test_a_missing_or_wrong_accept_header_answers_406(mx, accept):
    headers = {"Accept": accept} if accept else {"Accept": ""}
    response = requests.get(mx.base_url + "/institutions", auth=mx.http.auth, headers=headers)
    assert response.status_code == 406
    assert "error" in response.json()


def test_unknown_objects_answer_404_in_mx_s_error_shape(mx):
    user = mx.create_user()
    for path in [
        "/users/USR-nope",
        f"/users/{user}/members/MBR-nope",
        "/institutions/nope",
        "/merchants/MCH-nope",
        f"/users/{user}/accounts/ACT-nope",
        "/no/such/path",
    ]:
        response = mx.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["message"]


def test_a_member_of_another_user_is_not_found(mx):
    owner, member = mx.connected_member()
    stranger = mx.create_user("user-2")
    assert mx.get(f"/users/{stranger}/members/{member}").status_code == 404
    assert mx.get(f"/users/{owner}/members/{member}").status_code == 200


def test_a_duplicate_user_id_is_409(mx):
    mx.create_user("same")
    response = mx.post("/users", json={"user": {"id": "same"}})
    assert response.status_code == 409


def test_invalid_json_and_missing_envelopes_are_400(mx):
    bad_json = mx.post("/users", data=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert mx.post("/users", json={"id": "x"}).status_code == 400
    # S11 createUser: "None of these parameters are required, but the user object cannot be empty"
    assert mx.post("/users", json={"user": {}}).status_code == 400


def test_deleting_a_member_needs_no_accept_header(mx):
    # The spec declares no Accept for deleteMember and MX's own SDK sends none (unlike deleteUser).
    user, member = mx.connected_member()
    response = requests.delete(f"{mx.base_url}/users/{user}/members/{member}", auth=mx.http.auth)
    assert response.status_code == 204
    assert requests.delete(f"{mx.base_url}/users/{user}", auth=mx.http.auth).status_code == 406


def test_creating_a_member_without_credentials_is_400_and_unknown_credential_guids_are_422(mx):
    user = mx.create_user()
    assert mx.post(f"/users/{user}/members", json={"member": {"institution_code": "mxbank"}}).status_code == 400
    body = {"member": {"institution_code": "mxbank", "credentials": [{"guid": "CRD-nope", "value": "x"}]}}
    assert mx.post(f"/users/{user}/members", json=body).status_code == 422


def test_connecting_the_same_credentials_twice_is_409(mx):
    user = mx.create_user()
    mx.create_member(user, "password")
    body = {"member": {"institution_code": "mxbank", "credentials": mx.credentials("mxbank", "mxuser", "password")}}
    assert mx.post(f"/users/{user}/members", json=body).status_code == 409


def test_users_can_be_found_by_their_id_and_deleted(mx):
    guid = mx.create_user("findme")
    mx.create_user("other")
    found = mx.get("/users", params={"id": "findme"}).json()["users"]
    assert [u["guid"] for u in found] == [guid]
    assert mx.delete(f"/users/{guid}").status_code == 204
    assert mx.get(f"/users/{guid}").status_code == 404


def test_member_responses_send_null_for_the_job_fields_mx_s_spec_mistypes(mx):
    user, member = mx.connected_member()
    body = mx.member(user, member)
    assert body["most_recent_job_guid"] is None
    assert body["most_recent_job_detail_text"] is None
    assert body["aggregated_at"].endswith("Z")


def test_widget_urls_point_at_the_sandbox_connect_page(mx):
    user = mx.create_user()
    url = mx.post(f"/users/{user}/widget_urls", json={"widget_url": {"widget_type": "connect_widget"}}).json()
    assert url["widget_url"]["url"].startswith(mx.base_url + "/connect/")
    assert url["widget_url"]["user_id"] == "user-1"


def test_widget_urls_need_a_widget_type(mx):
    user = mx.create_user()
    assert mx.post(f"/users/{user}/widget_urls", json={"widget_url": {}}).status_code == 400


def test_the_spec_oracle_sees_the_real_exchange(mx):
    # Guard against a vacuous contract: a sandbox body is checked, not a stub.
    response = mx.get("/institutions/mxbank")
    assert_matches_spec(response)
    assert response.json()["institution"]["code"] == "mxbank"
