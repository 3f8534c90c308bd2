"""What deploys the pipeline on Kubernetes, checked statically (no Docker engine, no cluster, no helm here): the image
builds from the repository's files only, runs as no root and carries no secret; the Helm values name the chart's
real keys and state the same instance as ``mx-pipeline instance production``; the connect service runs the same image.
"""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from mx_pipeline.warehouse.models import REFERENCE_TABLES

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRET_VARIABLES = (
    "MX_API_KEY",
    "MX_CLIENT_ID",
    "DAGSTER_PG_PASSWORD",
    "MX_WEBHOOK_PASSWORD",
    "MX_PIPELINE_API_TOKEN",
    "MX_PIPELINE_RATE_BUDGET_URL",
)


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _of(kind: str) -> list[str]:
    return [argument for instruction, argument in _instructions() if instruction == kind]


def _tracked(path: str) -> bool:
    listed = subprocess.run(["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True, check=True)
    return bool(listed.stdout.strip())


def test_the_image_is_built_from_files_the_repository_holds():
    sources = [source for copy in _of("COPY") for source in copy.split()[:-1]]

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"the image copies {source}, which the repository lacks"
        assert _tracked(source), f"the image copies {source}, which git does not track (a build elsewhere lacks it)"


def test_the_image_installs_the_project_with_its_pinned_kubernetes_extra():
    (install,) = [run for run in _of("RUN") if "pip install" in run]
    extra = re.search(r'-e "\.\[(\w+)\]"', install).group(1)

    (pin,) = PYPROJECT["project"]["optional-dependencies"][extra]
    assert pin.startswith("dagster-k8s==")
    versions = {
        d.split("==")[0]: d.split("==")[1].split()[0] for d in PYPROJECT["project"]["dependencies"] if "==" in d
    }
    assert pin.split("==")[1] == versions["dagster-postgres"] == versions["dagster-duckdb"]  # one release train


def test_every_process_starts_from_bytecode_compiled_at_install():
    """Where PYTHONDONTWRITEBYTECODE is set (the image, CI) nothing caches bytecode at run time: every run worker and
    CLI call would compile dagster's and the package's sources again, about 3.5 s each, unless the install did."""
    image_env = dict(line.split("=", 1) for line in _of("ENV")[0].split())
    (install,) = [run for run in _of("RUN") if "pip install" in run]
    makefile = (ROOT / "Makefile").read_text()
    (venv_install,) = [line for line in makefile.splitlines() if "uv pip install" in line]

    assert image_env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "--no-compile" not in install  # pip compiles what it installs
    assert "python -m compileall -q mx_pipeline" in install  # but not an editable package's own sources
    assert "--compile-bytecode" in venv_install  # uv compiles nothing unless told


def test_the_image_runs_a_python_the_project_supports_as_no_root_and_serves_the_code_location():
    (base,) = _of("FROM")
    python = re.match(r"python:(\d+)\.(\d+)", base).groups()
    required = re.match(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups()
    assert tuple(map(int, python)) >= tuple(map(int, required))

    (user,) = _of("USER")
    assert user not in ("root", "0")
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    (module,) = [entry["python_module"]["module_name"] for entry in workspace["load_from"]]
    assert f'"-m", "{module}"' in _of("CMD")[0]


def test_the_image_carries_no_secret_and_leaves_state_and_environment_out():
    environment = " ".join(_of("ENV") + _of("ARG"))
    for name in SECRET_VARIABLES:
        assert name not in environment
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "data/*"} <= set(ignored)
    assert "!data/dagster_home/dagster.yaml" in ignored  # the instance's config
    assert "!data/reference/demo_users.csv" not in ignored  # the demo's users are never registered by a deployment


def test_the_image_carries_the_reference_data_every_model_run_loads():
    """The models load our categories and MX's map to them from ``data/reference/`` on every run: an image without
    them builds no mart (found by review)."""
    copied = " ".join(_of("COPY"))
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for table in REFERENCE_TABLES:
        source = f"data/reference/{table}.csv"
        assert source in copied and f"!{source}" in ignored, f"the image lacks {source}"


def _manifests() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "k8s" / "connect-service.yaml").read_text()))


def test_the_connect_service_runs_the_code_locations_image_on_the_shared_data_volume():
    (deployment,) = [m for m in _manifests() if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (claim,) = [m for m in _manifests() if m["kind"] == "PersistentVolumeClaim"]
    env = dict(line.split("=", 1) for line in _of("ENV")[0].split())

    assert container["command"][:2] == ["mx-pipeline", "serve"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == env["MX_PIPELINE_DATA_DIR"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "env" not in container  # everything from the Secret and the ConfigMap, nothing inline


@pytest.mark.parametrize("name", SECRET_VARIABLES)
def test_no_deployment_file_holds_a_secret_value(name):
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert not re.search(rf"{name}\s*[:=]\s*\S", path.read_text()), f"{path} sets {name}"


# The keys of Dagster's chart (helm/dagster/values.yaml and its templates, dagster-io/dagster, chart 1.12.19 with
# the 1.13 additions) that a values file of ours may set. Under a key ending in "*" the chart passes the value
# through as Kubernetes or Dagster config (volumes, Secret references, driver params), so its inside is not the
# chart's.
CHART_KEYS = {
    "global.postgresqlSecretName",
    "dagster-user-deployments.enabled",
    "dagster-user-deployments.enableSubchart",
    "dagster-user-deployments.deployments[].name",
    "dagster-user-deployments.deployments[].image.repository",
    "dagster-user-deployments.deployments[].image.tag",
    "dagster-user-deployments.deployments[].image.pullPolicy",
    "dagster-user-deployments.deployments[].dagsterApiGrpcArgs",
    "dagster-user-deployments.deployments[].port",
    "dagster-user-deployments.deployments[].includeConfigInLaunchedRuns.enabled",
    "dagster-user-deployments.deployments[].envSecrets*",
    "dagster-user-deployments.deployments[].envConfigMaps*",
    "dagster-user-deployments.deployments[].volumes*",
    "dagster-user-deployments.deployments[].volumeMounts*",
    "dagster-user-deployments.deployments[].resources*",
    "runLauncher.type",
    "runLauncher.config.k8sRunLauncher.loadInclusterConfig",
    "runLauncher.config.k8sRunLauncher.jobNamespace",
    "runLauncher.config.k8sRunLauncher.resources*",
    "postgresql.enabled",
    "postgresql.postgresqlHost",
    "postgresql.postgresqlUsername",
    "postgresql.postgresqlDatabase",
    "postgresql.postgresqlParams*",
    "postgresql.service.port",
    "generatePostgresqlPasswordSecret",
    "dagsterDaemon.runCoordinator.enabled",
    "dagsterDaemon.runCoordinator.type",
    "dagsterDaemon.runCoordinator.config.customRunCoordinator.module",
    "dagsterDaemon.runCoordinator.config.customRunCoordinator.class",
    "dagsterDaemon.runCoordinator.config.customRunCoordinator.config*",
    "dagsterDaemon.runMonitoring.enabled",
    "dagsterDaemon.runMonitoring.startTimeoutSeconds",
    "dagsterDaemon.runMonitoring.cancelTimeoutSeconds",
    "dagsterDaemon.runMonitoring.maxRuntimeSeconds",
    "dagsterDaemon.runMonitoring.maxResumeRunAttempts",
    "dagsterDaemon.runMonitoring.pollIntervalSeconds",
    "dagsterDaemon.runMonitoring.freeSlotsAfterRunEndSeconds",
    "dagsterDaemon.runRetries.enabled",
    "dagsterDaemon.runRetries.maxRetries",
    "dagsterDaemon.runRetries.retryOnAssetOrOpFailure",
    "concurrency.enabled",
    "concurrency.pools.defaultLimit",
    "concurrency.pools.granularity",
    "concurrency.runs.maxConcurrentRuns",
    "concurrency.runs.tagConcurrencyLimits[].key",
    "concurrency.runs.tagConcurrencyLimits[].value",
    "concurrency.runs.tagConcurrencyLimits[].limit",
    "migrate.enabled",
    "telemetry.enabled",
}
PASSED_THROUGH = {key.removesuffix("*") for key in CHART_KEYS if key.endswith("*")}


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _key_paths(node, prefix: str = "") -> set[str]:
    if prefix in PASSED_THROUGH:
        return {prefix + "*"}
    if isinstance(node, dict):
        return {path for key, value in node.items() for path in _key_paths(value, f"{prefix}.{key}".lstrip("."))}
    if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        return {path for item in node for path in _key_paths(item, prefix + "[]")}
    return {prefix}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _instance_the_chart_renders(values: dict) -> dict:
    """The parts of dagster.yaml the chart's instance templates write from these values (configmap-instance.yaml,
    _concurrency.tpl): camelCase keys to Dagster's, each tag limit as key, value, limit."""
    daemon, concurrency = values["dagsterDaemon"], values["concurrency"]
    coordinator = daemon["runCoordinator"]["config"]["customRunCoordinator"]
    runs = concurrency["runs"]
    return {
        "run_coordinator": {k: coordinator[k] for k in ("module", "class", "config")},
        "run_monitoring": {_snake(key): value for key, value in daemon["runMonitoring"].items()},
        "run_retries": {_snake(key): value for key, value in daemon["runRetries"].items()},
        "concurrency": {
            "pools": {_snake(key): value for key, value in concurrency["pools"].items()},
            "runs": {
                "max_concurrent_runs": runs["maxConcurrentRuns"],
                "tag_concurrency_limits": runs["tagConcurrencyLimits"],
            },
        },
        "telemetry": values["telemetry"],
    }


def test_the_helm_values_set_only_keys_the_chart_has():
    assert _key_paths(_values()) <= CHART_KEYS, sorted(_key_paths(_values()) - CHART_KEYS)


def test_the_helm_values_state_the_instance_mx_pipeline_instance_production_writes():
    from dagster._core.instance.config import validate_concurrency_config

    from mx_pipeline import instance
    from mx_pipeline.settings import POSTGRES_REQUIRED, ProductionInstanceSettings

    values = _values()
    limits = values["concurrency"]["runs"]["maxConcurrentRuns"]
    production = instance.production_config(ProductionInstanceSettings(POSTGRES_REQUIRED, None, limits))
    rendered = _instance_the_chart_renders(values)

    for section in ("run_monitoring", "run_retries", "concurrency", "telemetry"):
        assert rendered[section] == production[section], section
    validate_concurrency_config(rendered)  # a queued run coordinator carrying no limits of its own
    assert rendered["run_coordinator"] == {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {},
    }


def test_the_helm_values_run_the_image_of_the_code_location_on_the_shared_data_volume():
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    (connect,) = [m for m in _manifests() if m["kind"] == "Deployment"]
    (container,) = connect["spec"]["template"]["spec"]["containers"]
    env = dict(line.split("=", 1) for line in _of("ENV")[0].split())

    assert deployment["dagsterApiGrpcArgs"] == ["-m", "mx_pipeline.definitions"]
    assert container["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # run pods get the same environment and volume
    (mount,) = deployment["volumeMounts"]
    assert mount["mountPath"] == env["MX_PIPELINE_DATA_DIR"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"]] == ["mx-pipeline-data"]
    assert {s["name"] for s in deployment["envSecrets"]} == {
        r["secretRef"]["name"] for r in container["envFrom"] if "secretRef" in r
    }
