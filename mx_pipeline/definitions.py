"""The code location ``workspace.yaml`` loads: every module under ``mx_pipeline/defs/``."""

from pathlib import Path

import dagster as dg

from mx_pipeline import settings

settings.keep_files_private()  # the code server and every run worker load this module first


@dg.definitions
def defs() -> dg.Definitions:
    settings.check_environment()  # a wrong variable: the load fails with one line naming it, before any module
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
