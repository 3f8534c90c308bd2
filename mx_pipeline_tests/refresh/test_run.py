"""A refresh run's claims are let go on every path, and no warehouse connection is open while MX is called; on the
shared ledger, recording and releasing need no warehouse at all."""

import contextlib
import datetime as dt

import pytest

from mx_pipeline import settings
from mx_pipeline.mx import MxClient
from mx_pipeline.mx.errors import ConnectionFailed
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.refresh.run import RECORD_WAIT_SECONDS, SLA, WEBHOOK, refresh_step
from mx_pipeline.refresh.shared_ledger import SharedLedger
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse import Warehouse, WarehouseBusy
from mx_pipeline.warehouse.refresh_state import WarehouseLedger
from mx_pipeline_tests.conftest import FAST_SANDBOX

RUN_KEY = "refresh-20261125T120000-1"
POLICY = RefreshPolicy(poll_first_seconds=0.01, poll_max_seconds=0.01, poll_timeout_seconds=5)


class SpiedWarehouse(Warehouse):
    """A warehouse that knows how many of its connections are open, and can be busy for its first few opens."""

    def __init__(self, path, busy_for: int = 0) -> None:
        super().__init__(path)
        self.open_connections, self.busy_for = 0, busy_for

    @contextlib.contextmanager
    def connect(self, **options):
        if self.busy_for:
            self.busy_for -= 1
            raise WarehouseBusy(f"{self.path} is held by another process (an analyst's session)")
        with super().connect(**options) as con:
            self.open_connections += 1
            try:
                yield con
            finally:
                self.open_connections -= 1


class FailingMx:
    """An MX client whose every call fails in a way no batch absorbs (a bug, a dropped worker, a cancelled run)."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.calls = error, 0

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls += 1
            raise self.error

        return call


def claims(warehouse: Warehouse) -> list[tuple]:
    with Warehouse(warehouse.path).connect() as con:
        return con.execute("select member_guid, trigger, run_key from ops.refresh_claims order by 1").fetchall()


def claimed(warehouse: Warehouse, *members: tuple[str, str], trigger: str = SLA) -> None:
    with Warehouse(warehouse.path).connect() as con:
        WarehouseLedger(con).claim(members, trigger=trigger, run_key=RUN_KEY, now=dt.datetime.now(dt.UTC))


def connect_member(mx: MxClient):
    """A user and a member connected at MX Bank, as an end user would connect it; returns (user, member)."""
    user = mx.ensure_user(id="user-1")
    fields = {c.field_name: c.guid for c in mx.list_institution_credentials("mxbank")}
    credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "password"}
    return user, mx.create_member(user.guid, institution_code="mxbank", credentials=credentials)


def refresh(warehouse: Warehouse, client) -> list:
    attempts, _ = refresh_step(warehouse, client, POLICY, run_key=RUN_KEY, trigger=SLA, run_id="run-1")
    return attempts


def test_a_warehouse_busy_as_the_step_starts_fails_it_but_its_claims_are_let_go(tmp_path):
    warehouse = SpiedWarehouse(tmp_path / "warehouse.duckdb")
    claimed(warehouse, ("MBR-1", "USR-1"), ("MBR-2", "USR-1"))
    warehouse.busy_for = 1  # an analyst held the file past the step's wait, then closed it
    mx = FailingMx(AssertionError("MX must not be asked for members the run could not read"))
    with pytest.raises(WarehouseBusy):
        refresh(warehouse, mx)
    assert claims(warehouse) == []  # the next tick may claim them again at once, not in hours
    assert mx.calls == 0


@pytest.mark.parametrize(
    "error", [RuntimeError("a bug"), KeyboardInterrupt(), ConnectionFailed("MX unreachable")], ids=type
)
def test_a_step_that_crashes_mid_refresh_lets_go_of_its_claims(tmp_path, error):
    warehouse = SpiedWarehouse(tmp_path / "warehouse.duckdb")
    claimed(warehouse, ("MBR-1", "USR-1"))
    mx = FailingMx(error)
    with contextlib.suppress(type(error)):
        refresh(warehouse, mx)
    assert mx.calls >= 1
    assert claims(warehouse) == []


def test_a_webhooks_claim_stays_for_its_status_read(tmp_path):
    warehouse = SpiedWarehouse(tmp_path / "warehouse.duckdb")
    claimed(warehouse, ("MBR-1", "USR-1"), trigger=WEBHOOK)
    warehouse.busy_for = 1
    with pytest.raises(WarehouseBusy):
        refresh(warehouse, FailingMx(AssertionError("no aggregation for a webhook's claim")))
    assert claims(warehouse) == [("MBR-1", WEBHOOK, RUN_KEY)]  # member_status releases it


def test_no_warehouse_connection_is_open_while_mx_is_called(tmp_path):
    warehouse = SpiedWarehouse(tmp_path / "warehouse.duckdb")
    open_during_calls: list[int] = []
    with running_sandbox(**FAST_SANDBOX) as sandbox:
        observe = [lambda call: open_during_calls.append(warehouse.open_connections)]
        with MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, observers=observe) as mx:
            user, member = connect_member(mx)
            claimed(warehouse, (member.guid, user.guid))
            open_during_calls.clear()
            [attempt] = refresh(warehouse, mx)
    assert attempt.member_guid == member.guid and attempt.outcome in {"refreshed", "declined"}
    assert open_during_calls and set(open_during_calls) == {0}  # every MX call made with the warehouse closed
    assert claims(warehouse) == []


def test_a_claim_counts_its_ttl_from_the_steps_start_and_the_ttl_outlives_a_live_step(tmp_path):
    warehouse = SpiedWarehouse(tmp_path / "warehouse.duckdb")
    queued_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=55)  # the run queued behind others for a while
    with warehouse.connect() as con:
        WarehouseLedger(con).claim([("MBR-1", "USR-1")], trigger=SLA, run_key=RUN_KEY, now=queued_at)
    seen: list[dt.datetime] = []

    class ReadsItsClaim(FailingMx):
        def __getattr__(self, name):
            with Warehouse(warehouse.path).connect() as con:
                seen.append(con.execute("select claimed_at from ops.refresh_claims").fetchone()[0])
            return super().__getattr__(name)

    with contextlib.suppress(RuntimeError):
        refresh(warehouse, ReadsItsClaim(RuntimeError("MX is down")))
    assert seen and seen[0] > queued_at + dt.timedelta(minutes=50)
    policy = RefreshPolicy()
    step_at_most = dt.timedelta(seconds=policy.poll_timeout_seconds + RECORD_WAIT_SECONDS)
    assert step_at_most < policy.claim_ttl <= dt.timedelta(hours=1)  # a killed run's members wait an hour at most


class HeldAfterItsFirstConnection(SpiedWarehouse):
    """A warehouse another process takes, for longer than any wait, once the step has read its claims."""

    @contextlib.contextmanager
    def connect(self, **options):
        with super().connect(**options) as con:
            self.busy_for = 10**6  # every later open finds it held
            yield con


def test_on_the_shared_ledger_a_step_records_and_releases_while_the_warehouse_is_held(tmp_path, postgres):
    database = postgres.create_database()
    ledger = SharedLedger(postgres.url(database))
    warehouse = HeldAfterItsFirstConnection(tmp_path / "warehouse.duckdb")
    with (
        running_sandbox(**FAST_SANDBOX) as sandbox,
        MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY) as mx,
    ):
        user, member = connect_member(mx)
        ledger.claim([(member.guid, user.guid)], trigger=SLA, run_key=RUN_KEY, now=dt.datetime.now(dt.UTC))
        [attempt], _ = refresh_step(
            warehouse, mx, POLICY, run_key=RUN_KEY, trigger=SLA, run_id="run-1", shared_url=postgres.url(database)
        )
    assert postgres.query(database, "select member_guid, outcome from refresh_attempts") == [
        (member.guid, attempt.outcome)
    ]
    assert postgres.query(database, "select count(*) from refresh_claims") == [(0,)]
