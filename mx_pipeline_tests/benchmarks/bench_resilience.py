"""Benchmark: does the pipeline converge on the truth under faults and after kill -9? Prints both figures.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_resilience --fault-seeds 3 --crash-trials 10

- Faults: the whole code location against a sandbox answering 10% 5xx, 5% 429, 1% truncated and 1% non-JSON
  bodies (each kind at its own rate) plus 5% lost answers to writes; after the first run that reports success,
  the warehouse against the sandbox's truth read without faults (``resilience/faults.py``).
- Crashes: ``kill -9`` of an ingest run's worker at a seeded random moment, then only Dagster's daemon (run
  monitoring, slot freeing, run retries) until the warehouse equals the truth (``resilience/crash.py``).
"""

import argparse
import tempfile
from pathlib import Path

from mx_pipeline_tests.resilience.crash import run_crash_trials, summary
from mx_pipeline_tests.resilience.faults import run_fault_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault-seeds", type=int, default=3, help="fault trials, one per seed (default 3)")
    parser.add_argument("--crash-trials", type=int, default=10, help="kill -9 trials (default 10)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    print(f"== faults: {args.fault_seeds} trial(s), first successful run against the truth")
    fault_results = []
    for seed in range(args.seed, args.seed + args.fault_seeds):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_fault_trial(Path(tmp), seed)
        fault_results.append(result)
        print(result.summary(), flush=True)
    clean = sum(r.succeeded and r.lost == r.duplicated == r.wrong == 0 for r in fault_results)
    print(f"fault trials equal to the truth after their first success: {clean}/{len(fault_results)}")

    print(f"\n== crashes: {args.crash_trials} trial(s) of kill -9 mid-ingest, then unattended recovery")
    with tempfile.TemporaryDirectory() as tmp:
        crash_results = run_crash_trials(args.crash_trials, args.seed, Path(tmp))
    print(summary(crash_results))
    converged = sum(r.converged_unattended for r in crash_results)  # equal to the truth, no manual step
    print(f"crash trials converged to the truth with no manual step: {converged}/{len(crash_results)}")


if __name__ == "__main__":
    main()
