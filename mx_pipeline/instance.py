"""The Dagster instances the pipeline runs on.

- **Local** (the default of ``make dev`` and ``make demo``): ``data/dagster_home/dagster.yaml``, everything of
  Dagster's in SQLite under the data directory; its comments say why each setting is there.
- **Production**: the same instance with Dagster's runs, event logs, schedules and pool slots in Postgres, so that
  the webserver, the daemon and run workers on other machines share them, and with limits on the runs at once:
  ``mx-pipeline instance production`` renders it into a Dagster home from the environment
  (``settings.ProductionInstanceSettings``). The file names the Postgres variables, never their values: Dagster
  reads them when the instance loads.
"""

import os
from pathlib import Path

import yaml

from mx_pipeline.settings import ProductionInstanceSettings

LOCAL_CONFIG = Path(__file__).resolve().parents[1] / "data" / "dagster_home" / "dagster.yaml"
CONFIG_FILE = "dagster.yaml"
JOB_TAG = "mx_pipeline/job"  # every job tags its runs with its name, for the run queue's limits
# A second run of these waits in the queue for the first: both would read and write the same members and tables.
ONE_RUN_AT_A_TIME = ("ingest", "build_models")
_HEADER = f"""# Rendered by `mx-pipeline instance`; render it again rather than edit it. What each setting is for: the
# comments of the project's {LOCAL_CONFIG.relative_to(LOCAL_CONFIG.parents[2])} and mx_pipeline/instance.py.
"""
# dagster-postgres installs psycopg2, while SQLAlchemy 2.1 reads a plain postgresql:// URL with psycopg 3.
POSTGRES_SCHEME = "postgresql+psycopg2"
_POSTGRES_KEYS = {
    "DAGSTER_PG_HOST": "hostname",
    "DAGSTER_PG_PORT": "port",
    "DAGSTER_PG_USERNAME": "username",
    "DAGSTER_PG_PASSWORD": "password",
    "DAGSTER_PG_DB": "db_name",
}


def local_config() -> dict:
    return yaml.safe_load(LOCAL_CONFIG.read_text())


def production_config(settings: ProductionInstanceSettings) -> dict:
    """The local instance with Postgres storage and the run queue's limits (pools, monitoring, retries kept)."""
    config = local_config()
    postgres_db: dict = {_POSTGRES_KEYS[name]: {"env": name} for name in settings.postgres_variables}
    postgres_db["scheme"] = POSTGRES_SCHEME
    if settings.sslmode:
        postgres_db["params"] = {"sslmode": settings.sslmode}
    config["storage"] = {"postgres": {"postgres_db": postgres_db}}
    config["concurrency"]["runs"] = {
        "max_concurrent_runs": settings.max_concurrent_runs,
        "tag_concurrency_limits": [{"key": JOB_TAG, "value": job, "limit": 1} for job in ONE_RUN_AT_A_TIME],
    }
    return config


def rendered(config: dict) -> str:
    """A config as the text of a ``dagster.yaml``, saying where it came from."""
    return _HEADER + yaml.safe_dump(config, sort_keys=False)


def write_instance(home: Path, text: str) -> Path:
    """``home/dagster.yaml``, checked by Dagster's own schema (with the environment it names) before it replaces
    the file there: a config Dagster would refuse at start is refused here, and an old file stays whole."""
    from dagster._core.instance.config import dagster_instance_config

    home.mkdir(parents=True, exist_ok=True)
    partial = home / f"{CONFIG_FILE}.partial"
    partial.write_text(text)
    try:
        dagster_instance_config(str(home), config_filename=partial.name)
    except BaseException:
        partial.unlink()
        raise
    target = home / CONFIG_FILE
    os.replace(partial, target)
    return target
