"""A misconfigured environment is one line naming the variable to set, never a traceback.

Settings raise :class:`~mx_pipeline.settings.ConfigError`; every ``mx-pipeline`` subcommand prints its message on
one line and exits 2 (argparse's code for a usage error); the code location fails to load with the same message.
"""

import os
import subprocess
import sys

import pytest

from mx_pipeline import definitions, settings

SECRET = "not-to-be-printed-0123456789"
MX_VARIABLES = (
    "MX_CLIENT_ID",
    "MX_API_KEY",
    "MX_BASE_URL",
    "MX_SANDBOX_PORT",
    "MX_PIPELINE_CONNECT_PORT",
    "MX_CONCURRENCY",
    "MX_REQUESTS_PER_SECOND",
)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in MX_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    return monkeypatch


@pytest.mark.parametrize(
    "env, named",
    [
        ({"MX_CLIENT_ID": "my-client"}, "MX_API_KEY"),
        ({"MX_API_KEY": SECRET}, "MX_CLIENT_ID"),
        ({"MX_CLIENT_ID": "my-client", "MX_API_KEY": SECRET, "MX_BASE_URL": "int-api.mx.com"}, "MX_BASE_URL"),
        ({"MX_BASE_URL": "ftp://127.0.0.1:8765"}, "MX_BASE_URL"),
        ({"MX_BASE_URL": "https://api.mx.com"}, "MX_CLIENT_ID and MX_API_KEY"),  # MX, with the sandbox's keys
        (
            {"MX_CLIENT_ID": "my-client", "MX_API_KEY": SECRET, "MX_BASE_URL": f"my-client:{SECRET}@api.mx.com"},
            "MX_BASE_URL",
        ),
        (
            {
                "MX_CLIENT_ID": "my-client",
                "MX_API_KEY": SECRET,
                "MX_BASE_URL": f"https://my-client:{SECRET}@api.mx.com",
            },
            "MX_BASE_URL",
        ),
        ({"MX_SANDBOX_PORT": "eighty"}, "MX_SANDBOX_PORT"),
        ({"MX_SANDBOX_PORT": "70000"}, "MX_SANDBOX_PORT"),
        ({"MX_CONCURRENCY": "eight"}, "MX_CONCURRENCY"),
        ({"MX_CONCURRENCY": "0"}, "MX_CONCURRENCY"),
        ({"MX_CONCURRENCY": "65"}, "MX_CONCURRENCY"),
        ({"MX_REQUESTS_PER_SECOND": "fast"}, "MX_REQUESTS_PER_SECOND"),
        ({"MX_REQUESTS_PER_SECOND": "1001"}, "MX_REQUESTS_PER_SECOND"),
    ],
)
def test_mx_settings_name_the_variable_that_is_wrong(clean_env, env, named):
    for name, value in env.items():
        clean_env.setenv(name, value)

    with pytest.raises(settings.ConfigError) as raised:
        settings.MxSettings.from_env()

    assert named in str(raised.value)
    assert SECRET not in str(raised.value)
    assert raised.value.__context__ is None  # no "during handling of the above exception" chain


def test_connect_settings_name_a_port_that_is_not_a_number(clean_env):
    clean_env.setenv("MX_PIPELINE_CONNECT_PORT", "8780x")

    with pytest.raises(settings.ConfigError, match="MX_PIPELINE_CONNECT_PORT"):
        settings.ConnectSettings.from_env()


def test_a_well_configured_environment_still_loads(clean_env):
    clean_env.setenv("MX_CLIENT_ID", "my-client")
    clean_env.setenv("MX_API_KEY", SECRET)
    clean_env.setenv("MX_BASE_URL", "https://api.mx.com")

    configured = settings.MxSettings.from_env()

    assert (configured.base_url, configured.client_id, configured.is_sandbox) == (
        "https://api.mx.com",
        "my-client",
        False,
    )


def test_the_code_location_fails_to_load_with_the_one_message(clean_env):
    # Raised before any module under defs/ is built: the UI shows this message, not a tree of modules.
    clean_env.setenv("MX_CLIENT_ID", "my-client")

    with pytest.raises(settings.ConfigError, match="MX_API_KEY is not"):
        definitions.defs()


@pytest.mark.parametrize(
    "command, env, named",
    [
        (["demo"], {"MX_CLIENT_ID": "my-client"}, "MX_API_KEY"),
        (["offboard-user", "someone"], {"MX_API_KEY": SECRET}, "MX_CLIENT_ID"),
        (["serve"], {"MX_PIPELINE_CONNECT_PORT": "eighty"}, "MX_PIPELINE_CONNECT_PORT"),
        (["sandbox"], {"MX_SANDBOX_PORT": "99999"}, "MX_SANDBOX_PORT"),
    ],
)
def test_every_command_prints_one_line_naming_the_variable_and_exits_2(tmp_path, command, env, named):
    environment = {k: v for k, v in os.environ.items() if k not in MX_VARIABLES}
    environment |= {"MX_PIPELINE_DATA_DIR": str(tmp_path), **env}

    done = subprocess.run(
        [sys.executable, "-m", "mx_pipeline.cli", *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("mx-pipeline: ") and named in line
    assert SECRET not in done.stderr
