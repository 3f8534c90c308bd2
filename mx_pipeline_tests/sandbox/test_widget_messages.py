"""Every event the sandbox's Connect page sends, checked against MX's published definitions (PMD, vendored in
fixtures/post_message_definition.yml), and where it is posted."""

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from mx_pipeline_tests.sandbox.widget_flows import Browser, connect, delivery, event_types, widget_url

PMD = Path(__file__).parent / "fixtures" / "post_message_definition.yml"
PMD_TYPES = {"string": str, "number": (int, float), "boolean": bool}


def definitions() -> dict[str, dict]:
    """``mx/<namespace>/<action>`` (generic ones ``mx/<action>``) -> the payload's field definitions."""
    tree = yaml.safe_load(PMD.read_text())["post_messages"]
    found = {}
    for namespaces in tree.values():  # widget, entity
        for namespace, actions in namespaces.items():
            for action, definition in actions.items():
                prefix = "mx" if namespace == "generic" else f"mx/{namespace}"
                found[f"{prefix}/{action}"] = definition["payload"]
    return found


DEFINITIONS = definitions()


def problems(value, fields: dict, where: str) -> list[str]:
    """Why ``value`` does not decode as PMD's ``fields`` (MX's SDK decoders are strict: missing or mistyped fields
    fail); fields PMD does not define are refused too."""
    if not isinstance(value, dict):
        return [f"{where} is not an object"]
    found = [f"{where}.{name} is not defined by PMD" for name in value.keys() - fields.keys()]
    for name, spec in fields.items():
        kind, optional = (spec["type"], spec.get("optional", False)) if isinstance(spec, dict) else (spec, False)
        if name not in value:
            found += [] if optional else [f"{where}.{name} is missing"]
        elif isinstance(kind, dict):
            found += problems(value[name], kind, f"{where}.{name}")
        elif not isinstance(value[name], PMD_TYPES[kind]) or isinstance(value[name], bool) != (kind == "boolean"):
            found.append(f"{where}.{name} is not a {kind}: {value[name]!r}")
    return found


def assert_all_match_pmd(events: list[dict]) -> None:
    for event in events:
        assert event["mx"] is True and set(event) == {"mx", "type", "metadata"}, event
        assert event["type"] in DEFINITIONS, f"unknown type {event['type']}"
        assert problems(event["metadata"], DEFINITIONS[event["type"]], event["type"]) == []


def test_the_checker_knows_pmd_and_refuses_what_its_decoders_refuse():
    assert DEFINITIONS["mx/load"] == {}
    assert DEFINITIONS["mx/connect/memberStatusUpdate"]["connection_status"] == "number"
    session = {"user_guid": "USR-1", "session_guid": "SES-1"}
    assert problems({**session, "member_guid": "MBR-1", "connection_status": "6"},
                    DEFINITIONS["mx/connect/memberStatusUpdate"], "m") == ["m.connection_status is not a number: '6'"]  # fmt: skip
    assert problems({**session, "institution": {"code": "x"}}, DEFINITIONS["mx/connect/enterCredentials"], "m") == [
        "m.institution.guid is missing"
    ]
    assert problems({**session, "extra": 1}, DEFINITIONS["mx/connect/backToSearch"], "m") == [
        "m.extra is not defined by PMD"
    ]


def test_every_event_of_full_flows_matches_pmd(start_sandbox):
    mx = start_sandbox(aggregation_seconds=30)
    user = mx.create_user()
    sent = []

    # Search, pick, go back, pick again; a wrong password, then the right one; MFA; a slow connection; Done.
    browser = Browser(widget_url(mx, user), Referer="https://app.example/accounts")
    browser.reload(q="mx")
    browser.post("institution", institution_code="sandboxcu")
    browser.post("back")
    browser.post("institution", institution_code="mxbank")
    browser.post("credentials", LOGIN="mxuser", PASSWORD="UNAUTHORIZED")
    mx.admin("POST", "clock/advance", json={"seconds": 30})
    browser.reload()
    browser.post("credentials", LOGIN="mxuser", PASSWORD="challenge")
    mx.admin("POST", "clock/advance", json={"seconds": 30})
    browser.reload()
    browser.post("mfa", **{"answer-0": "correct"})
    mx.admin("POST", "clock/advance", json={"seconds": 30})
    browser.reload()
    browser.post("done")
    sent += browser.delivered
    assert {
        "mx/load", "mx/connect/loaded", "mx/connect/institutionSearch", "mx/connect/selectedInstitution",
        "mx/connect/stepChange", "mx/connect/backToSearch", "mx/connect/enterCredentials",
        "mx/connect/updateCredentials", "mx/connect/memberStatusUpdate", "mx/connect/submitMFA",
        "mx/connect/memberConnected", "mx/connect/connected/primaryAction",
    } == {e["type"] for e in browser.delivered}  # fmt: skip

    # The same credentials again: MX refuses to create the member.
    browser = Browser(widget_url(mx, user))
    connect(browser, "challenge")
    assert "mx/connect/createMemberError" in event_types(browser.page)
    sent += browser.delivered

    # OAuth: the bank's sign-in is requested, denied, requested again.
    browser = Browser(widget_url(mx, user, current_institution_code="mxbank_oauth"))
    browser.post("oauth")
    (requested,) = [e for e in browser.delivered if e["type"] == "mx/connect/oauthRequested"]
    authorize = requested["metadata"]["url"]
    browser.http.post(authorize, data={"decision": "deny"})
    browser.reload()
    browser.post("oauth")
    sent += browser.delivered
    assert {"mx/connect/oauthRequested", "mx/connect/oauthError"} <= {e["type"] for e in browser.delivered}

    assert_all_match_pmd(sent)


def test_events_are_posted_to_the_embedding_page_s_origin_only(mx):
    user = mx.create_user()
    embedded = Browser(widget_url(mx, user), Referer="https://app.example:8443/settings/banks?tab=1")
    assert delivery(embedded.page)["target_origin"] == "https://app.example:8443"
    assert 'postMessage(e, "*")' not in embedded.page.text
    # Opened on its own (a link in a mail): no parent known, nothing is posted anywhere.
    alone = Browser(widget_url(mx, user))
    assert delivery(alone.page)["target_origin"] is None
    assert [e["type"] for e in delivery(alone.page)["events"]] == ["mx/load", "mx/connect/loaded"]


@pytest.mark.parametrize("version", [1, 3])
def test_only_ui_message_version_4_is_spoken(mx, version):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, ui_message_version=version), Referer="https://app.example/")
    assert delivery(connect(browser))["events"] == [] and browser.delivered == []


def test_a_browser_flow_sends_mx_s_sequence(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, ui_message_version=4), Referer="https://app.example/")
    connect(browser)
    steps = [
        (e["metadata"]["previous"], e["metadata"]["current"]) for e in browser.delivered if "stepChange" in e["type"]
    ]
    assert [e["type"].removeprefix("mx/") for e in browser.delivered] == [
        "load", "connect/loaded", "connect/selectedInstitution", "connect/stepChange", "connect/enterCredentials",
        "connect/stepChange", "connect/memberConnected", "connect/stepChange",
    ]  # fmt: skip
    assert steps == [("search", "enterCreds"), ("enterCreds", "connecting"), ("connecting", "connected")]
    assert browser.delivered[0]["metadata"] == {}
    assert browser.delivered[1]["metadata"]["initial_step"] == "search"


def test_a_webview_navigation_carries_the_event_s_metadata(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, is_mobile_webview=True))
    loaded = delivery(browser.page)["webview_urls"][1]
    assert loaded.startswith("mx://connect/loaded?metadata=")
    assert '"initial_step":"search"' in parse_qs(urlsplit(loaded).query)["metadata"][0]
