"""Crash recovery: ``kill -9`` at a random moment of an ingest run, then nobody acts; the pipeline converges.

Each trial kills the run's worker at a seeded random moment (see ``crash.py``); the daemon's loops alone must
bring the warehouse to the sandbox's truth: every raw table's live rows and ``fct_transactions``, amount by
amount, nothing lost, duplicated or wrong. The suite runs three trials to stay within its time budget (each
is two or three ingest runs); the issue's ten are ``run_crash_trials(10, ...)``, for a benchmark to print.
"""

from mx_pipeline_tests.resilience.crash import run_crash_trials, summary

TRIALS_IN_SUITE = 3
SEED = 11


def test_every_trial_converges_to_the_truth_with_no_manual_step(tmp_path):
    results = run_crash_trials(TRIALS_IN_SUITE, SEED, tmp_path)
    report = summary(results)
    assert len(results) == TRIALS_IN_SUITE, report
    assert all(r.killed for r in results), report  # each kill landed mid-run
    assert all(r.converged_unattended for r in results), report
    assert sum(r.lost + r.duplicated + r.wrong for r in results) == 0, report
