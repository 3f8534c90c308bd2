"""The raw tables, declared once: key, columns and how a row's freshness is judged.

``upsert`` and ``schemas`` read these specs, so adding a column means editing the migration and this file.
"""

from dataclasses import dataclass

LOAD_COLUMNS = ("run_id", "fetched_at")


@dataclass(frozen=True)
class TableSpec:
    """A raw table keyed by MX guid."""

    name: str  # schema-qualified, e.g. raw.mx_transactions; also the Dagster asset key path
    columns: tuple[str, ...]  # every column a loaded frame carries, in table order
    key: str = "guid"
    # Among duplicates of one guid in a batch, the row with the greatest value here wins (then the later row).
    latest_by: str | None = None
    # Cast each frame column this way on insert: money arrives as exact decimal text, payloads as JSON text.
    casts: tuple[tuple[str, str], ...] = ()

    @property
    def content_columns(self) -> tuple[str, ...]:
        """Columns whose change makes a re-read an update (everything but the key and the load metadata)."""
        return tuple(c for c in self.columns if c != self.key and c not in LOAD_COLUMNS)

    @property
    def key_path(self) -> list[str]:
        return self.name.split(".")


USERS = TableSpec("raw.mx_users", ("guid", "id", "payload", "run_id", "fetched_at"), casts=(("payload", "json"),))

MEMBERS = TableSpec(
    "raw.mx_members",
    ("guid", "user_guid", "institution_code", "connection_status", "payload", "run_id", "fetched_at"),
    casts=(("payload", "json"),),
)

MEMBER_STATUS = TableSpec(
    "raw.mx_member_status",
    (
        "guid",
        "user_guid",
        "connection_status",
        "is_being_aggregated",
        "successfully_aggregated_at",
        "payload",
        "run_id",
        "fetched_at",
    ),
    casts=(("payload", "json"),),
)

ACCOUNTS = TableSpec(
    "raw.mx_accounts",
    (
        "guid",
        "member_guid",
        "user_guid",
        "type",
        "balance",
        "currency_code",
        "updated_at",
        "payload",
        "run_id",
        "fetched_at",
    ),
    latest_by="updated_at",
    casts=(("balance", "decimal(18, 4)"), ("payload", "json")),
)

TRANSACTIONS = TableSpec(
    "raw.mx_transactions",
    (
        "guid",
        "member_guid",
        "account_guid",
        "user_guid",
        "status",
        "type",
        "amount",
        "date",
        "updated_at",
        "removed_at",
        "payload",
        "run_id",
        "fetched_at",
    ),
    latest_by="updated_at",
    casts=(("amount", "decimal(18, 4)"), ("date", "date"), ("removed_at", "timestamptz"), ("payload", "json")),
)
