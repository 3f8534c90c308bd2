"""Our client against the built-in sandbox over loopback: the whole mission's MX path, end to end.

create user -> widget URL -> complete Connect on the page -> status -> aggregate -> accounts -> transactions,
plus the MFA path through the API, non-sequential statuses, and a second process pointing MX_BASE_URL at a
running sandbox.
"""

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from mx_pipeline import settings
from mx_pipeline.mx import ConnectionStatus, MxClient, NotFound
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline_tests.conftest import FAST_SANDBOX


def connect_on_the_page(widget_url: str, password: str = "password") -> str:
    """Click through the sandbox's Connect page as a person would; returns the member guid it reports."""
    browser = requests.Session()
    page = browser.get(widget_url)
    session_url = page.url
    browser.post(f"{session_url}/institution", data={"institution_code": "mxbank"})
    page = browser.post(f"{session_url}/credentials", data={"LOGIN": "mxuser", "PASSWORD": password})
    assert 'id="connected"' in page.text, page.text[:500]
    return re.search(r'"member_guid":\s*"(MBR-[^"]+)"', page.text).group(1)


def credentials(mx: MxClient, password: str) -> dict[str, str]:
    fields = {c.field_name: c.guid for c in mx.list_institution_credentials("mxbank")}
    return {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}


def test_the_full_flow_through_the_connect_page(sandbox, sandbox_client):
    mx = sandbox_client
    user = mx.ensure_user(id="end-user-1")
    assert mx.ensure_user(id="end-user-1").guid == user.guid  # idempotent on our id

    widget = mx.request_widget_url(user.guid, mode="aggregation", ui_message_version=4)
    member_guid = connect_on_the_page(widget.url)

    status = mx.read_member_status(user.guid, member_guid)
    assert status.status is ConnectionStatus.CONNECTED and status.is_done_aggregating

    refreshed = mx.aggregate_member(user.guid, member_guid)
    assert refreshed.guid == member_guid

    accounts = list(mx.list_member_accounts(user.guid, member_guid))
    everything = {"from_date": dt.date(2000, 1, 1), "to_date": dt.date(2100, 1, 1)}
    transactions = list(mx.list_member_transactions(user.guid, member_guid, **everything))
    with sandbox.world.lock:
        truth = sandbox.world.member_by_guid(member_guid)
        true_accounts = {a.guid for a in sandbox.world.accounts_of_member(truth)}
        true_transactions = {t.guid for t in sandbox.world.transactions_of_member(member_guid)}
    assert accounts and {a.guid for a in accounts} == true_accounts
    assert {t.guid for t in transactions} == true_transactions
    assert all(t.member_guid == member_guid for t in transactions)
    assert {t.type for t in transactions} <= {"CREDIT", "DEBIT"}
    assert all(t.amount is not None and t.amount >= 0 for t in transactions)  # MX sends amounts unsigned


def test_mfa_through_the_api_then_a_later_aggregation_comes_back_challenged(sandbox, sandbox_client):
    mx = sandbox_client
    user = mx.ensure_user(id="end-user-2")
    member = mx.create_member(user.guid, institution_code="mxbank", credentials=credentials(mx, "challenge"))
    status = mx.read_member_status(user.guid, member.guid)
    assert status.status is ConnectionStatus.CHALLENGED

    (question,) = mx.list_member_challenges(user.guid, member.guid)
    mx.resume_aggregation(user.guid, member.guid, {question.guid: "correct"})
    assert mx.read_member_status(user.guid, member.guid).is_done_aggregating
    assert mx.list_member_challenges(user.guid, member.guid) == []  # 204 once no longer challenged

    # Statuses are not sequential: a healthy member can be challenged again on any aggregation.
    requests.post(
        f"{sandbox.base_url}/_sandbox/members/{member.guid}/connection_status", json={"connection_status": "CHALLENGED"}
    )
    assert mx.read_member(user.guid, member.guid).status is ConnectionStatus.CHALLENGED


def test_bad_credentials_leave_the_member_denied(sandbox_client):
    mx = sandbox_client
    user = mx.ensure_user(id="end-user-3")
    member = mx.create_member(user.guid, institution_code="mxbank", credentials=credentials(mx, "UNAUTHORIZED"))
    assert mx.read_member_status(user.guid, member.guid).status is ConnectionStatus.DENIED


def test_unknown_objects_are_typed_not_found(sandbox_client):
    with pytest.raises(NotFound):
        sandbox_client.read_user("USR-does-not-exist")


def test_a_second_process_uses_a_running_sandbox_through_mx_base_url_unchanged(sandbox):
    script = textwrap.dedent(
        """
        from mx_pipeline.mx import MxClient
        from mx_pipeline.settings import MxSettings
        with MxClient.from_settings(MxSettings.from_env()) as mx:
            user = mx.ensure_user(id="from-another-process")
            print(user.guid, len(list(mx.list_institutions())))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MX_")} | {"MX_BASE_URL": sandbox.base_url}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    guid, institutions = result.stdout.split()
    assert guid.startswith("USR-") and int(institutions) >= 1
    assert time.monotonic() - started < 60


def test_a_long_history_streams_across_pages_of_the_maximum_size():
    calls = []
    with (
        running_sandbox(**FAST_SANDBOX, history_days=900) as sandbox,
        MxClient(
            sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, observers=[calls.append]
        ) as mx,
    ):
        user = mx.ensure_user(id="long-history")
        member = mx.create_member(user.guid, institution_code="mxbank", credentials=credentials(mx, "password"))
        calls.clear()
        stream = mx.list_member_transactions(user.guid, member.guid, from_date=dt.date(2000, 1, 1))
        guids = [t.guid for t in stream]
        with sandbox.world.lock:
            truth = {t.guid for t in sandbox.world.transactions_of_member(member.guid)}
    assert len(guids) == len(set(guids)) == len(truth) > 1000
    assert set(guids) == truth
    assert len(calls) == -(-len(truth) // 1000)  # one request per page of 1000
