"""The Dagster instances: the production one is the local one with its storage in Postgres and limits on the runs
at once, rendered from the environment, naming the Postgres variables and never their values, and checked by
Dagster's own schema before it replaces a file. (Deployed on a real Postgres: ``resilience/test_production_instance``.)
"""

import pytest
import yaml

from mx_pipeline import cli, definitions, instance, settings

PASSWORD = "pg-password-not-to-be-written-42"
POSTGRES = {
    "DAGSTER_PG_HOST": "pg.internal.example",
    "DAGSTER_PG_PORT": "6543",
    "DAGSTER_PG_USERNAME": "dagster_user",
    "DAGSTER_PG_PASSWORD": PASSWORD,
    "DAGSTER_PG_DB": "dagster_db",
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in (*POSTGRES, "DAGSTER_PG_SSLMODE", "MX_PIPELINE_MAX_CONCURRENT_RUNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    return monkeypatch


@pytest.fixture
def production_env(env):
    for name, value in POSTGRES.items():
        env.setenv(name, value)
    return env


def _written(home) -> dict:
    return yaml.safe_load((home / "dagster.yaml").read_text())


def test_the_production_instance_names_the_postgres_variables_never_their_values(production_env, tmp_path):
    assert cli.main(["instance", "production", "--home", str(tmp_path / "home")]) == 0

    text = (tmp_path / "home" / "dagster.yaml").read_text()
    for value in POSTGRES.values():
        assert value not in text
    postgres_db = _written(tmp_path / "home")["storage"]["postgres"]["postgres_db"]
    assert postgres_db == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "scheme": "postgresql+psycopg2",  # the driver dagster-postgres installs
    }


def test_the_production_instance_is_the_local_one_with_postgres_storage_and_limits_on_runs(production_env, tmp_path):
    production_env.setenv("MX_PIPELINE_MAX_CONCURRENT_RUNS", "12")
    production_env.setenv("DAGSTER_PG_SSLMODE", "require")

    assert cli.main(["instance", "production", "--home", str(tmp_path)]) == 0

    production, local = _written(tmp_path), instance.local_config()
    for kept in ("run_launcher", "run_monitoring", "run_retries", "telemetry"):
        assert production[kept] == local[kept]
    assert production["concurrency"]["pools"] == local["concurrency"]["pools"]  # one warehouse writer at a time
    assert "storage" not in local
    assert production["storage"]["postgres"]["postgres_db"]["params"] == {"sslmode": "require"}
    assert production["concurrency"]["runs"] == {
        "max_concurrent_runs": 12,
        "tag_concurrency_limits": [
            {"key": "mx_pipeline/job", "value": "ingest", "limit": 1},
            {"key": "mx_pipeline/job", "value": "build_models", "limit": 1},
        ],
    }


def test_every_job_tags_its_runs_with_its_name_and_the_queue_limits_jobs_that_exist():
    jobs = {job.name: job for job in definitions.defs().resolve_all_job_defs() if not job.name.startswith("__")}

    assert {name: job.tags.get(instance.JOB_TAG) for name, job in jobs.items()} == {name: name for name in jobs}
    assert set(instance.ONE_RUN_AT_A_TIME) <= set(jobs)


def test_without_its_postgres_the_production_instance_is_refused_naming_the_variables(env, tmp_path, capsys):
    env.setenv("DAGSTER_PG_HOST", "pg.internal.example")

    assert cli.main(["instance", "production", "--home", str(tmp_path)]) == cli.MISCONFIGURED

    message = capsys.readouterr().err
    assert "set DAGSTER_PG_USERNAME, DAGSTER_PG_DB" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "many", "1001", "-3"])
def test_a_number_of_runs_that_is_not_one_is_refused(production_env, tmp_path, capsys, value):
    production_env.setenv("MX_PIPELINE_MAX_CONCURRENT_RUNS", value)

    assert cli.main(["instance", "production", "--home", str(tmp_path)]) == cli.MISCONFIGURED

    assert f"MX_PIPELINE_MAX_CONCURRENT_RUNS={value!r}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_instance_dagster_refuses_leaves_the_file_there_whole(production_env, tmp_path):
    good = instance.write_instance(tmp_path, instance.LOCAL_CONFIG.read_text()).read_text()
    refused = instance.production_config(settings.ProductionInstanceSettings.from_env())
    refused["run_retries"]["max_retries"] = "twice"

    with pytest.raises(Exception, match="max_retries"):
        instance.write_instance(tmp_path, instance.rendered(refused))

    assert (tmp_path / "dagster.yaml").read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dagster.yaml"]


def test_the_local_instance_the_command_writes_is_the_projects(env, tmp_path):
    assert cli.main(["instance", "local"]) == 0  # into the data directory's Dagster home by default

    assert (settings.dagster_home() / "dagster.yaml").read_text() == instance.LOCAL_CONFIG.read_text()
