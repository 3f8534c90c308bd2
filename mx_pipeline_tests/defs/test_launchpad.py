"""What the Dagster UI's launchpad offers and answers, asked through the webserver's own GraphQL schema.

The code location is loaded as the webserver loads it (the GraphQL resolvers validate the config against the
job's schema, then ask the location for the run's execution plan, which resolves the config mapping); it is
in process here, which spares a code server but runs the same calls.
"""

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql, infer_job_selector

from mx_pipeline.defs.jobs import NO_TARGET, REFRESH_OP
from mx_pipeline_tests.defs.conftest import LOCATION

LOCATION_NAME = "mx_pipeline"
DEFAULT_CONFIG = """
query($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) { ... on RunConfigSchema { rootDefaultYaml } }
}
"""


@pytest.fixture(scope="module")
def webserver():
    """The webserver's view: an instance and the code location, as ``make dev`` serves them."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="mx_pipeline.definitions", attribute="defs"), location_name=LOCATION_NAME
    )
    with (
        dg.instance_for_test() as instance,
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as process_context,
    ):
        yield instance, process_context


def _launch(webserver, job_name: str, run_config: dict) -> dict:
    """Press the launchpad's Launch button with ``run_config`` in its editor."""
    _, process_context = webserver
    context = process_context.create_request_context()
    selector = infer_job_selector(context, job_name, location_name=LOCATION_NAME)
    params = {"selector": selector, "runConfigData": run_config}
    result = execute_dagster_graphql(context, LAUNCH_PIPELINE_EXECUTION_MUTATION, {"executionParams": params})
    return result.data["launchPipelineExecution"]


def test_refresh_members_opens_on_a_config_that_names_nobody(webserver):
    _, process_context = webserver
    context = process_context.create_request_context()
    selector = infer_job_selector(context, "refresh_members", location_name=LOCATION_NAME)
    shown = execute_dagster_graphql(context, DEFAULT_CONFIG, {"selector": selector}).data
    assert (
        shown["runConfigSchemaOrError"]["rootDefaultYaml"]
        == "member_guids: []\noverride_safety: false\nuser_guids: []\n"
    )


@pytest.mark.parametrize("run_config", [{}, {"member_guids": [], "user_guids": [], "override_safety": True}])
def test_refresh_members_naming_nobody_is_refused_at_launch_with_the_reason_and_no_run(webserver, run_config):
    instance, _ = webserver
    runs_before = len(instance.get_runs())
    answer = _launch(webserver, "refresh_members", run_config)
    assert answer["__typename"] == "PythonError"  # the launchpad's error dialog
    assert answer["message"].strip() == f"dagster._core.errors.DagsterInvalidConfigError: {NO_TARGET}"
    assert len(instance.get_runs()) == runs_before  # never created, so no failed run and no step errors


def test_refresh_members_naming_a_member_or_a_user_is_launched_as_a_manual_refresh(webserver):
    instance, _ = webserver
    for target in ({"member_guids": ["MBR-1"]}, {"user_guids": ["USR-1"]}):
        answer = _launch(webserver, "refresh_members", target)
        assert answer["__typename"] == "LaunchRunSuccess", answer
        run = instance.get_run_by_id(answer["run"]["runId"])
        assert run.run_config == target


def _fields(config_type, path: str = ""):
    for name, field in getattr(config_type, "fields", {}).items():
        yield f"{path}{name}", field
        yield from _fields(field.config_type, f"{path}{name}.")


def _op_config_fields(job: dg.JobDefinition):
    """Every field under an op's (or a graph's op's) ``config``, as the launchpad lists them."""
    ops = job.run_config_schema.config_type.fields["ops"].config_type
    return [(name, field) for name, field in _fields(ops, "ops.") if ".config." in name]


def test_every_config_field_users_fill_in_the_launchpad_is_described():
    refresh_members = LOCATION.resolve_job_def("refresh_members")
    shown = {
        "refresh_members": list(_fields(refresh_members.run_config_schema.config_type)),
        **{name: _op_config_fields(LOCATION.resolve_job_def(name)) for name in ("sync_members", "ingest")},
    }
    assert {name for name, _ in shown["refresh_members"]} == {"member_guids", "user_guids", "override_safety"}
    assert f"ops.{REFRESH_OP}.config.override_safety" in {name for name, _ in shown["sync_members"]}
    undescribed = {job: [name for name, field in fields if not field.description] for job, fields in shown.items()}
    assert undescribed == {"refresh_members": [], "sync_members": [], "ingest": []}
