"""Crash trials: ``kill -9`` an ingest run at a random (seeded) moment, let the daemon recover, compare with MX.

Each trial first changes MX: a new end user in the CSV (the run registers it at MX) and new transactions on
one member. Then it launches ``ingest`` and, at a moment drawn from the seed (the k-th step to start, plus a
delay into it; k = 0 is the worker still loading the code), kills the run's worker and everything it started
with SIGKILL. From then on nobody acts: the daemon's loops (``Deployment.tick``) notice the dead run, free
its pool slot and retry it. The trial has converged when no run is in flight, none is waiting to be retried,
the dead run's last retry did all its steps (it succeeded, or was killed after its last step, which leaves
Dagster nothing to retry) and the warehouse equals the sandbox's truth. A trial that does not get there
unattended gets the one manual step an operator would take, launching ``ingest`` again, counted in
``manual_steps``.

``run_crash_trials`` is what the test and the benchmark call; the benchmark prints ``summary(results)``.
"""

import contextlib
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.execution.stats import StepEventStatus

from mx_pipeline_tests.resilience.deployment import Deployment, deployed, kill_process_family
from mx_pipeline_tests.resilience.truth import compare

USERS = {"crash-1": "password", "crash-2": "password"}  # each connects one MX Bank member
MAX_KILL_DELAY_SECONDS = 1.0  # into the chosen step (a short step may be over by then: the kill lands later)
UNATTENDED_SECONDS = 240.0  # a loaded machine runs two to three ingest runs in that time
MANUAL_SECONDS = 240.0
ATTEMPTS = 3  # a drawn moment can come after the run ended: the trial then draws again, on a new run


@dataclass
class TrialResult:
    trial: int
    moment: str  # the drawn moment: "after step k of n started, + d s" (k = 0: while the worker loads)
    killed_in: str  # the step the worker was inside at the kill ("startup": before its first step)
    killed: bool  # False when the run had finished before the drawn moment (nothing was killed)
    seconds_to_converge: float | None  # from the kill to "converged"; None: never
    runs_launched_by_daemon: int  # retries
    manual_steps: int
    lost: int
    duplicated: int
    wrong: int
    details: str = ""

    @property
    def converged_unattended(self) -> bool:
        return self.seconds_to_converge is not None and self.manual_steps == 0 and not self.differences

    @property
    def differences(self) -> int:
        return self.lost + self.duplicated + self.wrong


def run_crash_trials(n: int, seed: int, tmp_path: Path, **run_monitoring) -> list[TrialResult]:
    """``n`` trials on one deployment (one sandbox, instance and code server) under ``tmp_path``."""
    rng = random.Random(seed)
    with deployed(tmp_path, USERS, seed=seed, **run_monitoring) as deployment:
        results = []
        for trial in range(1, n + 1):
            results.append(_trial(deployment, trial, rng))
            if results[-1].seconds_to_converge is None:
                break  # wedged: later trials would only measure the wedge
        return results


def summary(results: list[TrialResult]) -> str:
    killed = [r for r in results if r.killed]
    converged = [r.seconds_to_converge for r in killed if r.converged_unattended]
    lines = [
        f"{len(results)} trials, {len(killed)} killed mid-run;"
        f" {sum(r.converged_unattended for r in results)} converged with no manual step",
        f"lost {sum(r.lost for r in results)}, duplicated {sum(r.duplicated for r in results)},"
        f" wrong {sum(r.wrong for r in results)}; manual steps {sum(r.manual_steps for r in results)}",
    ]
    if converged:
        lines.append(f"seconds from kill to converged: median {sorted(converged)[len(converged) // 2]:.0f},"
                     f" max {max(converged):.0f}")  # fmt: skip
    lines += [
        f"  trial {r.trial:2}: {r.moment:36} killed in {r.killed_in:28} retries {r.runs_launched_by_daemon}"
        f"  {_seconds(r.seconds_to_converge)}"
        f"{'  manual step' if r.manual_steps else ''}{'  ' + r.details if r.details else ''}"
        for r in results
    ]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "WEDGED" if value is None else f"{value:.0f} s"


def _trial(deployment: Deployment, trial: int, rng: random.Random) -> TrialResult:
    before = {run.run_id for run in deployment.runs()}
    for _ in range(ATTEMPTS):
        _change_mx(deployment, trial, rng)
        run_id = deployment.submit_ingest(tags={"crash_trial": str(trial)})
        moment, killed_in = _kill_at_a_random_moment(deployment, run_id, rng)
        if killed_in is not None:
            break
    killed_at = time.monotonic()
    recovered = _recovers_unattended(deployment, run_id)
    differences = compare(deployment.warehouse_path, deployment.sandbox.world) if recovered else None
    manual_steps = 0
    if differences is None or not differences.none:
        manual_steps = 1  # what an operator would do: launch the ingest again
        recovered = _run_ingest(deployment, {"crash_trial": f"{trial}-manual"})
        differences = compare(deployment.warehouse_path, deployment.sandbox.world)
    retries = [r for r in deployment.runs() if r.run_id not in before and r.parent_run_id]
    return TrialResult(
        trial=trial,
        moment=moment,
        killed_in=killed_in or "(the run had ended)",
        killed=killed_in is not None,
        seconds_to_converge=time.monotonic() - killed_at if recovered and differences.none else None,
        runs_launched_by_daemon=len(retries),
        manual_steps=manual_steps,
        lost=sum(differences.lost.values()),
        duplicated=sum(differences.duplicated.values()),
        wrong=sum(differences.wrong.values()),
        details="" if differences.none else str(differences),
    )


def _recovers_unattended(deployment: Deployment, run_id: str) -> bool:
    """The daemon alone settles everything, and the killed run's last retry did all its steps."""
    try:
        deployment.wait_for(lambda: _settled(deployment), "the daemon has nothing left to do", UNATTENDED_SECONDS)
    except AssertionError:
        return False
    return _did_all_its_steps(deployment, _last_of_group(deployment, run_id))


def _did_all_its_steps(deployment: Deployment, run: dg.DagsterRun) -> bool:
    """The run succeeded, or it was killed after its last step succeeded and before it could say so: monitoring
    then marks it failed, and Dagster rightly declines to retry it ("No steps needed to be retried")."""
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return True
    plan = deployment.instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    steps = run.step_keys_to_execute or [step.key for step in plan.steps]
    succeeded = {
        s.step_key for s in deployment.instance.get_run_step_stats(run.run_id) if s.status == StepEventStatus.SUCCESS
    }
    return succeeded >= set(steps)


def _run_ingest(deployment: Deployment, tags: dict[str, str]) -> bool:
    run_id = deployment.submit_ingest(tags=tags)
    try:
        deployment.wait_for(lambda: deployment.run(run_id).is_finished, "a manual ingest run", MANUAL_SECONDS)
    except AssertionError:
        return False
    return deployment.run(run_id).status == dg.DagsterRunStatus.SUCCESS


def _change_mx(deployment: Deployment, trial: int, rng: random.Random) -> None:
    """A new end user for the run to register, and new transactions on one member, which MX aggregated a minute
    after the last trial (the sandbox's clock is frozen: an aggregation at the very same second would look like
    none, and the member would rightly be skipped as unchanged)."""
    with deployment.users_csv.open("a") as csv:
        csv.write(f"crash-new-{trial}\n")
    deployment.admin("clock/advance", seconds=60)
    member = rng.choice(sorted(deployment.sandbox.world.members))
    deployment.admin(f"members/{member}/transactions", count=rng.randint(1, 5))


def _kill_at_a_random_moment(deployment: Deployment, run_id: str, rng: random.Random) -> tuple[str, str | None]:
    """Kill the run's worker once its ``k``-th step started, plus a delay: (the moment, the step it was in, or
    None when the run had ended by then)."""
    pid = deployment.wait_for(lambda: deployment.worker_pid(run_id), "the run has a worker")
    plan = deployment.instance.get_execution_plan_snapshot(deployment.run(run_id).execution_plan_snapshot_id)
    steps = len(plan.steps)
    k, delay = rng.randint(0, steps - 2), rng.uniform(0, MAX_KILL_DELAY_SECONDS)
    while _started_steps(deployment, run_id) < k and not deployment.run(run_id).is_finished:
        time.sleep(0.05)
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)  # frozen where it is (and starts no process): what it was doing is what dies
    # Nothing reads the instance's SQLite files until the worker is dead: frozen, it may hold the lock of its event
    # log or of the runs table, and a reader then fails ("database is locked") however long it waits. So the kill
    # takes the pid read before the freeze. Nothing has written since the freeze (and no daemon ticks in between),
    # so the run's status and the step read after the kill are what the kill interrupted.
    kill_process_family(pid)
    ended = deployment.run(run_id).is_finished
    step = None if ended else deployment.running_step(run_id) or ("startup" if k == 0 else "between steps")
    return f"after step {k} of {steps} started, + {delay:.2f} s", step


def _started_steps(deployment: Deployment, run_id: str) -> int:
    return len(deployment.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START))


def _settled(deployment: Deployment) -> bool:
    """No run in flight, and no failed run the daemon is still to retry."""
    runs = deployment.runs()
    return all(run.is_finished for run in runs) and not any(
        run.tags.get("dagster/will_retry") == "true" and "dagster/auto_retry_run_id" not in run.tags for run in runs
    )


def _last_of_group(deployment: Deployment, run_id: str) -> dg.DagsterRun:
    run = deployment.run(run_id)
    while "dagster/auto_retry_run_id" in run.tags:
        run = deployment.run(run.tags["dagster/auto_retry_run_id"])
    return run
