"""Reconnect notifications are delivered outside the writer pool, in bounded batches, each at most once.

A product backend that hangs must not stop ingestion: no pool slot and no warehouse connection are held while
a notification is POSTed. A run leases its batch in the outbox first, so two runs delivering at the same time
never send the same notification; what a run does not get to stays pending for the next one.
"""

import contextlib
import json
import threading
from collections.abc import Iterator

import dagster as dg
import pytest

from mx_pipeline.defs.resources import NotifierResource
from mx_pipeline.warehouse import tables
from mx_pipeline_tests.local_http import QuietHandler, serving
from mx_pipeline_tests.releasable_hold import held_until_released

from .conftest import INGEST, metadata_of

LIFECYCLE = dg.AssetSelection.groups("lifecycle")  # the status gate and the notifications, on stored statuses
DEADLINE = 180  # seconds; generous on a loaded machine, and only ever reached by a test about to fail


@pytest.fixture
def pipeline(pipeline):
    """On the sandbox's frozen clock: a job MX is running ends only when a test finishes it, never mid-run."""
    pipeline.sandbox.freeze_clock()
    return pipeline


class Backend:
    """A product backend on loopback that holds its first ``hang_first`` requests until released."""

    def __init__(self, hang_first: int = 0) -> None:
        self.hang_first, self.received = hang_first, []
        self.hanging, self.released = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        backend = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with backend._lock:
                    hang, backend.hang_first = backend.hang_first > 0, backend.hang_first - 1
                if hang:
                    backend.hanging.set()
                    backend.released.wait(DEADLINE)
                with backend._lock:
                    backend.received.append(body["notification_id"])
                self.send_response(204)
                self.end_headers()

        with serving(Handler, path="/notifications", on_close=self.released.set) as url:
            yield url


def notifier(url: str, **options) -> NotifierResource:
    # A request the backend holds is waited for, not timed out and retried: each POST reaches it once.
    return NotifierResource(url=url, retry_backoff_seconds=0.0, timeout_seconds=DEADLINE, **options)


def in_background(materialize) -> tuple[threading.Thread, list]:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(materialize()), daemon=True)
    thread.start()
    return thread, results


def asking(pipeline) -> set[str]:
    return {f"{pipeline.member_of['user-mfa']}:1", f"{pipeline.member_of['user-denied']}:1"}


def states(pipeline) -> dict[str, tuple]:
    rows = pipeline.query("select notification_id, state, attempts, leased_by from ops.reconnect_notifications")
    return {notification_id: tuple(rest) for notification_id, *rest in rows}


def test_while_the_backend_hangs_other_runs_take_the_writer_pool_and_the_file_is_free(pipeline):
    backend = Backend(hang_first=1)
    pools = {"concurrency": {"pools": {"default_limit": 1}}}  # the project's instance: one writer at a time
    with dg.instance_for_test(overrides=pools) as instance, backend.serving() as url:
        run_config = {"ops": {"raw__mx_users": {"config": {"users_csv": str(pipeline.users_csv)}}}}
        resources = pipeline.resources(notifier=notifier(url))
        first, first_result = in_background(
            lambda: dg.materialize(INGEST, resources=resources, run_config=run_config, instance=instance)
        )
        assert backend.hanging.wait(DEADLINE), "the first run never tried to deliver"
        with held_until_released(pipeline.warehouse.path) as analyst:  # no connection of the run is open
            analyst.release()
        members = [dg.AssetKey(tables.MEMBERS.key_path)]
        second, second_result = in_background(
            lambda: dg.materialize(INGEST, selection=members, resources=resources, instance=instance)
        )
        second.join(DEADLINE / 2)
        second_done_while_hanging = not second.is_alive()
        backend.released.set()
        first.join(DEADLINE)
        second.join(DEADLINE)
    assert second_done_while_hanging, "a warehouse step waited for the pool while a notification was being sent"
    assert second_result[0].success and first_result[0].success
    assert sorted(backend.received) == sorted(asking(pipeline))


def test_two_runs_delivering_at_the_same_time_never_send_a_notification_twice(pipeline):
    backend = Backend(hang_first=1)  # the first run's first POST hangs while a second run goes all the way
    with backend.serving() as url:
        first, first_result = in_background(lambda: pipeline.materialize(notifier=notifier(url)))
        assert backend.hanging.wait(DEADLINE), "the first run never tried to deliver"
        second = pipeline.materialize(notifier=notifier(url))
        backend.released.set()
        first.join(DEADLINE)
    assert first_result[0].success
    meta = metadata_of(second)["ops.reconnect_notifications"]
    assert meta["delivered"] == 0 and sorted(meta["left_for_next_run"]) == sorted(asking(pipeline))  # being sent
    assert sorted(backend.received) == sorted(asking(pipeline))  # each exactly once
    assert {n: s[:2] for n, s in states(pipeline).items()} == {n: ("delivered", 1) for n in asking(pipeline)}


def test_a_run_delivers_at_most_its_batch_within_its_time_budget_and_the_next_run_sends_the_rest(pipeline):
    backend = Backend()
    with backend.serving() as url:
        first = metadata_of(pipeline.materialize(notifier=notifier(url, batch_size=1)))
        assert (first["ops.reconnect_notifications"]["delivered"], len(backend.received)) == (1, 1)
        [left] = first["ops.reconnect_notifications"]["left_for_next_run"]
        assert states(pipeline)[left] == ("pending", 0, None)  # not attempted, not leased: free for the next run
        out_of_time = dg.materialize(
            INGEST, selection=LIFECYCLE, resources=pipeline.resources(notifier=notifier(url, time_budget_seconds=0))
        )
        assert metadata_of(out_of_time)["ops.reconnect_notifications"]["left_for_next_run"] == [left]
        assert states(pipeline)[left] == ("pending", 0, None)
        dg.materialize(INGEST, selection=LIFECYCLE, resources=pipeline.resources(notifier=notifier(url)))
    assert sorted(backend.received) == sorted(asking(pipeline))  # each once, none lost
    assert {n: s[:2] for n, s in states(pipeline).items()} == {n: ("delivered", 1) for n in asking(pipeline)}
