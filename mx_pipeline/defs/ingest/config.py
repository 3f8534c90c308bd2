"""The config the ingest assets take: which users to register, which members a run touches, how far back to read.

Every field is described: the Dagster launchpad shows the descriptions beside the fields.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from mx_pipeline.warehouse.members import Scope
from mx_pipeline.warehouse.transaction_sync import SyncPolicy

DEMO_USERS_CSV = Path(__file__).resolve().parents[3] / "data" / "reference" / "demo_users.csv"


class UsersConfig(dg.Config):
    users_csv: str = Field(
        default=str(DEMO_USERS_CSV),
        description="A CSV with an `id` column: our end users' ids, each registered with MX as a user (once). Empty:"
        " no CSV (end users come only through the connect service). The default, the demo's users, is read where it"
        " is there (a checkout; the image leaves it out); any other path that is not a file fails the run.",
    )


class ScopeConfig(dg.Config):
    """Which members a run touches: these users' and these (an event, a refresh batch); both empty: all."""

    user_guids: list[str] = Field(
        default=[], description="MX user guids (USR-...): the run touches their members (and member_guids' only)."
    )
    member_guids: list[str] = Field(
        default=[], description="MX member guids (MBR-...) the run touches; with user_guids also empty: every member."
    )

    @property
    def scope(self) -> Scope:
        return Scope(tuple(self.user_guids), tuple(self.member_guids))


class TransactionsConfig(ScopeConfig):
    history_days: int = Field(
        default=SyncPolicy.history_days, description="A member's first sync reads this many days of history."
    )
    reconcile_lookback_days: int = Field(
        default=SyncPolicy.reconcile_lookback_days,
        description="Days re-read in full on every sync, to notice pendings MX removed (it does within 14 days).",
    )
    overlap_days: int = Field(
        default=SyncPolicy.overlap_days,
        description="Days before the last change seen that are read again (MX filters changes by date only).",
    )
