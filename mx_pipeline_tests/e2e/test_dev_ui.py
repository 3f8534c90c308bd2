"""``make dev`` opens on data: the Dagster UI it starts shows materialized assets with row counts and the
``member_health`` of the CHALLENGED demo member, in headless Chromium.

One ``mx-pipeline dev`` for the module, as a user starts it (a fresh data directory, free ports, no MX
credentials: the built-in sandbox), stopped the way a user stops it (Ctrl-C), after which nothing it started
still listens. Exact values come from the warehouse (the analysts' file) and Dagster's GraphQL; the browser must
find them on the page too. Every wait is on a condition, with deadlines generous for a loaded 2-core machine.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import requests

from mx_pipeline.demo_connections import DEMO_CONNECTIONS
from mx_pipeline_tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, _browser_or_skip
from mx_pipeline_tests.local_http import free_port

START_DEADLINE_SECONDS = 420  # sandbox, connect service, dg dev and a first ingest on two busy cores
STOP_DEADLINE_SECONDS = 90
OPENED_ON_DATA = "  ingest succeeded"
LATEST_MATERIALIZATIONS = """
{ assetNodes { assetKey { path } assetMaterializations(limit: 1) {
    metadataEntries { label ... on IntMetadataEntry { intValue } ... on MarkdownMetadataEntry { mdStr } } } } }
"""
INGEST_RUNS = '{ runsOrError(filter: {pipelineName: "ingest"}) { ... on Runs { results { status } } } }'


@dataclass
class Dev:
    ui: str
    data: Path
    log: Path


def _is_listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _wait_for(condition: Callable[[], bool], what: str, deadline: float, process: subprocess.Popen, log: Path):
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {process.returncode}" if process.poll() is not None else "still running"
            pytest.fail(
                f"{what}: not within the deadline (mx-pipeline dev {state}); its output:\n{log.read_text()[-6000:]}"
            )
        time.sleep(0.5)


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> Iterator[Dev]:
    _browser_or_skip()  # before starting anything
    data = tmp_path_factory.mktemp("dev_data")
    ports = {name: free_port() for name in ("MX_SANDBOX_PORT", "MX_PIPELINE_CONNECT_PORT", "MX_PIPELINE_UI_PORT")}
    unset = ("MX_CLIENT_ID", "MX_API_KEY", "MX_BASE_URL", "MX_SANDBOX_HOST", "MX_PIPELINE_CONNECT_URL", "DAGSTER_HOME")
    env = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("MX_WEBHOOK_")}
    env |= {name: str(port) for name, port in ports.items()} | {"MX_PIPELINE_DATA_DIR": str(data)}
    log = data.parent / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "mx-pipeline"), "dev"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    ui = f"http://127.0.0.1:{ports['MX_PIPELINE_UI_PORT']}"
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        _wait_for(lambda: OPENED_ON_DATA in log.read_text(), "the first ingest run", deadline, process, log)
        _wait_for(lambda: _answers(f"{ui}/server_info"), "the Dagster UI", deadline, process, log)
        yield Dev(ui=ui, data=data, log=log)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        try:
            process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]
    assert [name for name, port in ports.items() if _is_listening(port)] == []


def _answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=5).ok
    return False


def _graphql(dev: Dev, query: str) -> dict:
    response = requests.post(f"{dev.ui}/graphql", json={"query": query}, timeout=60)
    response.raise_for_status()
    return response.json()["data"]


def _latest_metadata(dev: Dev) -> dict[str, dict]:
    """Asset key -> its latest materialization's metadata (label -> int or markdown)."""
    latest = {}
    for node in _graphql(dev, LATEST_MATERIALIZATIONS)["assetNodes"]:
        for materialization in node["assetMaterializations"]:
            entries = materialization["metadataEntries"]
            latest["/".join(node["assetKey"]["path"])] = {
                e["label"]: e.get("intValue", e.get("mdStr")) for e in entries
            }
    return latest


def _analysts(dev: Dev, sql: str) -> list[tuple]:
    with duckdb.connect(str(dev.data / "analytics.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_dev_serves_the_ui_with_dg_dev_in_this_environment(dev):
    log = dev.log.read_text()
    assert f"starting: {Path(sys.executable).parent / 'dg'} dev " in log
    assert "Use 'dg dev' instead" not in log  # dagster dev's supersession warning
    assert "does not match the virtual environment" not in log  # dg found our venv active, created none


def test_dev_opens_on_a_materialized_ingest_with_row_counts(dev):
    assert {run["status"] for run in _graphql(dev, INGEST_RUNS)["runsOrError"]["results"]} == {"SUCCESS"}
    latest = _latest_metadata(dev)
    ((transactions,),) = _analysts(dev, "select count(*) from marts.fct_transactions")
    assert latest["raw/mx_members"]["dagster/row_count"] == len(DEMO_CONNECTIONS)
    assert latest["marts/member_health"]["dagster/row_count"] == len(DEMO_CONNECTIONS)
    assert latest["marts/fct_transactions"]["dagster/row_count"] == transactions > 0
    row_count = f"{transactions:,}"

    with _chromium() as page:
        page.goto(f"{dev.ui}/assets/marts/fct_transactions", wait_until="domcontentloaded")
        page.get_by_text("Row count").first.wait_for(timeout=120_000)
        page.get_by_text(row_count, exact=True).first.wait_for(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "dev-01-fct-transactions.png"), full_page=True)


def test_dev_shows_the_member_health_of_the_challenged_member(dev):
    ((member, user, route, reason),) = _analysts(
        dev,
        "select member_guid, user_id, route, reason from marts.member_health where connection_status = 'CHALLENGED'",
    )
    assert (user, route) == ("demo-katherine", "needs_mfa")
    preview = _latest_metadata(dev)["marts/member_health"]["preview"]
    assert f"| {member} | demo-katherine | mxbank | CHALLENGED | needs_mfa | {reason} |" in preview
    degraded = _analysts(dev, "select route from marts.member_health where connection_status = 'DEGRADED'")
    assert degraded == [("degraded",)]

    with _chromium() as page:
        page.goto(f"{dev.ui}/assets/marts/member_health", wait_until="domcontentloaded")
        try:
            show = page.locator("tr", has_text="preview").get_by_text("[Show Markdown]")
            show.first.wait_for(timeout=120_000)
            show.first.click()
            row = page.get_by_role("dialog").locator("tr", has_text=member)
            row.wait_for(timeout=60_000)
            assert [cell.strip() for cell in row.locator("td").all_inner_texts()] == [
                member,
                "demo-katherine",
                "mxbank",
                "CHALLENGED",
                "needs_mfa",
                reason,
            ]
        finally:
            page.screenshot(path=str(ARTIFACTS / "dev-02-member-health.png"), full_page=True)


@contextlib.contextmanager
def _chromium():
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200}, locale="en-US")  # "1,319"
            # A first visit may be greeted by Dagster's newsletter dialog, over whatever is to be clicked.
            greeting = page.get_by_text("Join the Dagster community")
            page.add_locator_handler(greeting, lambda: page.get_by_role("button", name="Skip").click())
            yield page
        finally:
            browser.close()
