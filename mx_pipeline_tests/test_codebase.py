"""The architecture's rules, checked mechanically (stdlib ``ast`` only), so a newcomer sees them on day one."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mx_pipeline"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 400


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # "from pkg import mod" imports pkg.mod: record each name under its module.
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def in_package(sub: str) -> list[Path]:
    return [m for m in MODULES if m.relative_to(PACKAGE).parts[0] == sub]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_modules_stay_small(module):
    assert len(module.read_text().splitlines()) <= MAX_MODULE_LINES


def test_there_is_no_grab_bag_module():
    assert not [m for m in MODULES if m.stem in {"utils", "helpers", "common", "misc"}]


def test_only_settings_reads_the_environment():
    readers = [m for m in MODULES if "os.environ" in m.read_text() or "os.getenv" in m.read_text()]
    assert [m.relative_to(PACKAGE).as_posix() for m in readers] == ["settings.py"]


def test_no_secret_is_resolved_at_import():
    assert not [m for m in MODULES if ".get_value()" in m.read_text() and "EnvVar" in m.read_text()]


@pytest.mark.parametrize("layer", ["mx", "warehouse"])
def test_client_and_warehouse_do_not_depend_on_dagster(layer):
    for module in in_package(layer):
        assert not {i for i in imports_of(module) if i.split(".")[0] == "dagster"}, module


def test_the_client_imports_nothing_else_of_the_project():
    for module in in_package("mx"):
        project = {i for i in imports_of(module) if i.startswith("mx_pipeline")}
        assert all(i.startswith("mx_pipeline.mx") for i in project), module


def test_the_sandbox_never_imports_the_client_it_stands_in_for():
    allowed = {"mx_pipeline.mx.statuses", "mx_pipeline.settings"}
    for module in in_package("sandbox"):
        project = {
            i for i in imports_of(module) if i.startswith("mx_pipeline") and not i.startswith("mx_pipeline.sandbox")
        }
        assert all(i.startswith(tuple(allowed)) for i in project), module


# The programs that run the code location; every other module is a library the wiring uses, never the reverse.
ENTRY_POINTS = {"definitions.py", "demo.py"}


def test_only_the_entry_points_import_the_dagster_wiring():
    for module in MODULES:
        if module.relative_to(PACKAGE).parts[0] == "defs" or module.name in ENTRY_POINTS:
            continue
        assert not {i for i in imports_of(module) if i.startswith("mx_pipeline.defs")}, module
