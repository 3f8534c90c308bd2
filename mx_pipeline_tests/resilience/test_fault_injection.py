"""The pipeline against a sandbox failing ~17% of requests (5xx, 429, truncated and non-JSON 200s, lost write
answers, each at its own rate): the first run that reports success holds exactly the sandbox's truth."""

from mx_pipeline_tests.resilience.faults import FAULT_RATES, MAX_RUNS, run_fault_trial


def test_the_first_successful_run_under_faults_equals_the_truth_with_nothing_lost_doubled_or_wrong(tmp_path):
    result = run_fault_trial(tmp_path, seed=11)
    print(result.summary())

    assert result.succeeded, f"no run reported success in {MAX_RUNS}: {result.summary()}"
    assert result.transactions > 5_000
    assert (result.lost, result.duplicated, result.wrong) == (0, 0, 0), result.summary()
    # The trial proves something only if every kind of fault was actually injected.
    assert all(result.faults_injected[kind] > 0 for kind in FAULT_RATES), result.faults_injected
    assert result.garbled_retried >= result.faults_injected["truncated_json"] + result.faults_injected["invalid_json"]
