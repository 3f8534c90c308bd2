"""What the ingest benchmarks share: the sandbox in a child process, its users' banks connected, and our ingest.

The sandbox runs in a child process so the benchmark's peak RSS is the pipeline's own, with MX's limits as
the sandbox models them (per user and per member windows, DEGRADED on abuse): only latency and the length
of the history are chosen here.
"""

import contextlib
import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import requests

from mx_pipeline import definitions, settings
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.mx import MxClient
from mx_pipeline.mx.transport import MX_MEDIA_TYPE
from mx_pipeline.warehouse import Warehouse, tables
from mx_pipeline.warehouse.transaction_sync import SyncPolicy

# Imported before any clock starts, as the SDK loop imports MX's SDK and pandas before its first request: a run
# imports pandas and pandera only when it first lands records (the code server never loads them), about 0.45 s
# that the first timed run alone would otherwise pay.
importlib.import_module("mx_pipeline.warehouse.schemas")

# The ingest job's fetching steps, as a user's run goes through them: users, members, status, the gate, accounts,
# transactions (and their checks); not the refresh scheduler's aggregations, nor the models.
FETCH_STEPS = dg.AssetSelection.groups("ingest", "lifecycle").materializable()
# Both test institutions take MX Bank's test login (username mxuser, password "password" connects).
INSTITUTIONS = ("mxbank", "sandboxcu")
_CHILD = """
import json, sys
from mx_pipeline.sandbox.server import running_sandbox
with running_sandbox(**json.loads(sys.argv[1])) as sandbox:
    print(sandbox.base_url, flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin (or dies)
"""


@contextlib.contextmanager
def sandbox_process(**options) -> Iterator[str]:
    """The sandbox (``options``: ``SandboxConfig`` fields) in a child process; yields its base URL."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(options)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        base_url = child.stdout.readline().strip()
        if not base_url:
            raise RuntimeError(f"the sandbox did not start (exit code {child.wait()})")
        yield base_url
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def connect_members(base_url: str, users: int, members_per_user: int, tmp: Path) -> Path:
    """Register ``users`` users, each with ``members_per_user`` connected banks, let every aggregation finish, and
    return the users CSV the ``users`` step reads."""
    if not 1 <= members_per_user <= len(INSTITUTIONS):
        raise SystemExit(f"members per user: 1 to {len(INSTITUTIONS)} (one per test institution)")
    ids = [f"bench-{i}" for i in range(users)]
    users_csv = tmp / "users.csv"
    users_csv.write_text("id\n" + "".join(f"{i}\n" for i in ids))
    # The sandbox makes a member's whole history when it is created: decades of it (the 1M benchmark) take longer
    # than a production read timeout.
    with MxClient(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, timeout=(5.0, 900.0)) as client:
        fields = {
            code: {c.field_name: c.guid for c in client.list_institution_credentials(code)}
            for code in INSTITUTIONS[:members_per_user]
        }
        for user_id in ids:
            user = client.create_user(id=user_id)
            for code, guids in fields.items():
                credentials = {guids["LOGIN"]: "mxuser", guids["PASSWORD"]: "password"}
                client.create_member(user.guid, institution_code=code, credentials=credentials)
    requests.post(f"{base_url}/_sandbox/aggregations/finish", timeout=3600).raise_for_status()
    return users_csv


def sandbox_seconds_per_page(base_url: str, latency_ms: int, probes: int = 5) -> float:
    """The sandbox's own time to serve a page of 1,000 transactions, beyond its added latency (median of
    ``probes`` requests, one at a time). Its handlers run one at a time on its event loop, so however many
    clients read at once, all pages take at least pages x this."""
    with requests.Session() as session:
        session.auth = (settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY)
        session.headers["Accept"] = MX_MEDIA_TYPE
        user = session.get(f"{base_url}/users", timeout=60).json()["users"][0]["guid"]
        member = session.get(f"{base_url}/users/{user}/members", timeout=60).json()["members"][0]["guid"]
        page = f"{base_url}/users/{user}/members/{member}/transactions"
        seconds = []
        for _ in range(probes):
            started = time.monotonic()  # to the last byte: decoding the JSON is the client's time, not the sandbox's
            response = session.get(page, params={"records_per_page": 1000, "from_date": "1970-01-01"}, timeout=60)
            seconds.append(time.monotonic() - started)
    records = len(response.json()["transactions"])
    return (statistics.median(seconds) - latency_ms / 1000) * 1000 / max(records, 1)


@dataclass(frozen=True)
class IngestRun:
    seconds: float
    requests: int  # HTTP attempts, as ops.api_calls records them
    rate_limited: int  # of which MX (the sandbox) answered 429
    transactions: int
    steps: dict[str, float] = field(default_factory=dict)  # seconds each Dagster step took (ours only)

    @property
    def per_second(self) -> float:
        return self.transactions / self.seconds


def our_mx_resource(base_url: str, requests_per_second: float | None = None) -> MxResource:
    """The ``mx`` resource as shipped, pointed at the sandbox: its pacing untouched (unless a global budget is
    given: the per-member spacing stays), members read at once as ``MX_CONCURRENCY`` says."""
    budget = {} if requests_per_second is None else {"requests_per_second": requests_per_second}
    return MxResource(
        base_url=base_url,
        client_id=settings.SANDBOX_CLIENT_ID,
        api_key=settings.SANDBOX_API_KEY,
        concurrency=settings.MxSettings.from_env().concurrency,
        **budget,
    )


def run_our_ingest(
    base_url: str,
    users_csv: Path,
    warehouse: Path,
    *,
    history_days: int = SyncPolicy.history_days,
    requests_per_second: float | None = None,
) -> IngestRun:
    """Our fetch steps on a fresh warehouse, in process as a run executes them; timed from launch to the end."""
    location = definitions.defs()
    resources = {
        **location.resources,
        "mx": our_mx_resource(base_url, requests_per_second),
        "warehouse": WarehouseResource(path=str(warehouse)),
    }
    run_config = {
        "ops": {
            "raw__mx_users": {"config": {"users_csv": str(users_csv)}},
            "raw__mx_transactions": {"config": {"history_days": history_days}},
        },
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.monotonic()
        result = dg.materialize(
            [*location.assets, *location.asset_checks],
            selection=FETCH_STEPS,
            resources=resources,
            run_config=run_config,
            instance=instance,
        )
        seconds = time.monotonic() - started
        steps = _step_seconds(instance, result.run_id)
    with Warehouse(warehouse).connect() as con:
        calls, limited = con.execute("select count(*), count(*) filter (status = 429) from ops.api_calls").fetchone()
        (rows,) = con.execute(f"select count(*) from {tables.TRANSACTIONS.name}").fetchone()
    return IngestRun(seconds, calls, limited, rows, steps)


def _step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Each step's duration, from its start to its end in the run's event log, in the order the steps started."""
    started, ended = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ended[entry.step_key] = entry.timestamp
    return {step: ended[step] - at for step, at in started.items() if step in ended}
