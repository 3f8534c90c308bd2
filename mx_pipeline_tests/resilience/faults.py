"""A fault trial: the whole pipeline against a sandbox that fails requests, compared with the sandbox's truth.

``run_fault_trial(tmp_path, seed)`` connects many members with faults off, turns per-kind faults on, runs
every asset of the code location until a run reports success (bounded), then compares the warehouse (live raw
rows and ``marts.fct_transactions``) with the sandbox's memory, guid by guid and amount by amount
(``truth.compare``). The fault-injection test asserts on the result; a benchmark script can print it.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import requests

from mx_pipeline import definitions, settings
from mx_pipeline.defs.resources import ConnectLinksResource, MxResource, WarehouseResource
from mx_pipeline.mx import MxClient, RateLimiter, RateLimits, RetryPolicy
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse import Warehouse
from mx_pipeline_tests.resilience.truth import Differences, compare

# The figures, each kind on its own; plus lost answers to writes (a create that happened, answered 5xx).
FAULT_RATES = {
    "server_error": 0.10,
    "rate_limited": 0.05,
    "truncated_json": 0.01,
    "invalid_json": 0.01,
    "server_error_after_write": 0.05,
}
# Enough members that a 1% fault kind shows up several times (a member costs ~4 requests, a user ~2).
CONNECTED_USERS = 50
PASSWORDS = ("password", "another-password")  # one MX Bank member per password (any other password connects)
HISTORY_DAYS = 20  # ~75 transactions per member (~7,700 in all)
UNCONNECTED_USERS = 3  # only in the users CSV: the run registers them with MX, under faults
MAX_RUNS = 3  # a run may fail (a request still failing after its retries); it must never succeed with gaps
SANDBOX = {
    "freeze_clock": True,
    "aggregation_seconds": 0,
    "start_time": "2026-11-25T12:00:00Z",
    "history_days": HISTORY_DAYS,
    "fault_retry_after_seconds": 0,  # an injected 429 asks for no wait: the trial stays fast
    # The sandbox's own request limits are not what this trial is about.
    "user_requests_per_window": 10**9,
    "member_requests_per_window": 10**9,
    "abuse_429s_before_degrade": 10**9,
}


class PatientMx(MxResource):
    """The code location's MX resource with its production retry budget but (almost) no waiting between tries."""

    backoff_base: float = 0.001

    def client(self, observers=()):
        client = super().client(observers)
        client.transport.retry = RetryPolicy(backoff_base=self.backoff_base, backoff_max=self.backoff_base * 8)
        return client


@dataclass
class FaultTrialResult:
    seed: int
    runs: int  # runs until the first that reported success (MAX_RUNS + 1: none did)
    succeeded: bool
    transactions: int  # at MX (the truth)
    differences: Differences  # the warehouse (raw tables, fct_transactions) against the truth, by table
    users_missing: list[str]  # ids in the users CSV that MX does not have
    users_duplicated: list[str]  # ids MX has more than one user for
    requests: int  # HTTP attempts the pipeline made (ops.api_calls), retries included
    garbled_retried: int  # attempts whose 200 body did not parse (recorded in ops.api_calls.error)
    quarantined: int  # ops.quarantine rows the runs wrote
    faults_injected: dict[str, int]
    seconds: float

    @property
    def lost(self) -> int:
        return sum(self.differences.lost.values()) + len(self.users_missing)

    @property
    def duplicated(self) -> int:
        return sum(self.differences.duplicated.values()) + len(self.users_duplicated)

    @property
    def wrong(self) -> int:
        return sum(self.differences.wrong.values())

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {'success' if self.succeeded else 'NO SUCCESS'} after {self.runs} run(s); "
            f"{self.transactions} transactions; lost {self.lost}, duplicated {self.duplicated}, wrong {self.wrong} "
            f"({self.differences}; users missing {self.users_missing[:3]}, duplicated {self.users_duplicated[:3]}); "
            f"{self.requests} requests, faults injected {self.faults_injected}, {self.garbled_retried} garbled "
            f"bodies retried, {self.quarantined} quarantined; {self.seconds:.1f} s"
        )


def run_fault_trial(tmp_path: Path, seed: int, *, rates: dict[str, float] = FAULT_RATES) -> FaultTrialResult:
    started = time.monotonic()
    with running_sandbox(seed=seed, **SANDBOX) as sandbox:
        base_url, world = sandbox.base_url, sandbox.world
        users_csv, user_ids = _connect_members(base_url, tmp_path)
        _set_faults(base_url, rates)
        warehouse = Warehouse(tmp_path / "warehouse.duckdb")
        runs, succeeded = 0, False
        while runs < MAX_RUNS and not succeeded:
            runs += 1
            succeeded = _materialize(base_url, warehouse, users_csv).success
        injected = _set_faults(base_url, dict.fromkeys(rates, 0.0))["injected"]
    with world.lock:  # the truth is the sandbox's memory, which faults never touch
        ids = [u.id for u in world.users.values()]
        transactions = sum(len(rows) for rows in world.transactions.values())
    differences = compare(warehouse.path, world)
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        requests_made, garbled = con.execute(
            "select count(*), count(*) filter (where error like 'MalformedResponse%') from ops.api_calls"
        ).fetchone()
        (quarantined,) = con.execute("select count(*) from ops.quarantine").fetchone()
    return FaultTrialResult(
        seed=seed,
        runs=runs if succeeded else MAX_RUNS + 1,
        succeeded=succeeded,
        transactions=transactions,
        differences=differences,
        users_missing=sorted(set(user_ids) - set(ids)),
        users_duplicated=sorted({i for i in ids if ids.count(i) > 1}),
        requests=requests_made,
        garbled_retried=garbled,
        quarantined=quarantined,
        faults_injected=injected,
        seconds=time.monotonic() - started,
    )


def _connect_members(base_url: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """Users with connected MX Bank members, made with faults off; the CSV also names users MX lacks yet."""
    connected = [f"trial-user-{i}" for i in range(CONNECTED_USERS)]
    unconnected = [f"trial-new-user-{i}" for i in range(UNCONNECTED_USERS)]
    with MxClient(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, limiter=_fast()) as client:
        fields = {c.field_name: c.guid for c in client.list_institution_credentials("mxbank")}
        for user_id in connected:
            user = client.ensure_user(id=user_id)
            for password in PASSWORDS:
                credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}
                client.create_member(user.guid, institution_code="mxbank", credentials=credentials)
    requests.post(f"{base_url}/_sandbox/aggregations/finish", timeout=60).raise_for_status()
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id\n" + "".join(f"{user_id}\n" for user_id in connected + unconnected))
    return users_csv, connected + unconnected


def _set_faults(base_url: str, rates: dict[str, float]) -> dict:
    response = requests.post(f"{base_url}/_sandbox/faults", json={"rates": rates}, timeout=10)
    response.raise_for_status()
    return response.json()


def _materialize(base_url: str, warehouse: Warehouse, users_csv: Path) -> dg.ExecuteInProcessResult:
    location = definitions.defs()
    resources = {
        **location.resources,
        "mx": PatientMx(
            base_url=base_url,
            client_id=settings.SANDBOX_CLIENT_ID,
            api_key=settings.SANDBOX_API_KEY,
            requests_per_second=10_000,
            per_member_interval=0.0,
        ),
        "warehouse": WarehouseResource(path=str(warehouse.path)),
        "connect_links": ConnectLinksResource(public_url="https://connect.example.com"),
    }
    run_config = {
        "ops": {"raw__mx_users": {"config": {"users_csv": str(users_csv)}}},
        "loggers": {"console": {"config": {"log_level": "ERROR"}}},
    }
    every_asset = [*location.assets, *location.asset_checks]
    return dg.materialize(every_asset, resources=resources, run_config=run_config, raise_on_error=False)


def _fast() -> RateLimiter:
    return RateLimiter(RateLimits(requests_per_second=10_000, burst=1_000, per_member_interval=0))
