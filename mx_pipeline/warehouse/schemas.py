"""pandera schemas: what a valid raw row looks like, one schema per raw table.

The record classes already reject wrong JSON types; these add the rules the warehouse relies on (MX guid
prefixes, closed vocabularies, money that fits ``DECIMAL(18, 4)`` without rounding, keys never null).
"""

import pandera.pandas as pa

from mx_pipeline.warehouse import tables

# DECIMAL(18, 4) holds 14 integer digits and 4 decimals; more decimals would be rounded silently on cast.
MONEY = r"^-?\d{1,14}(\.\d{1,4})?$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


def _guid(prefix: str, *, nullable: bool = False) -> pa.Column:
    # \Z, not $: Python's $ also matches before a final newline, and "MBR-1\n" is no member's guid
    return pa.Column(object, pa.Check.str_matches(rf"^{prefix}-\S+\Z"), nullable=nullable)


def _text(*checks: pa.Check, nullable: bool = True) -> pa.Column:
    return pa.Column(object, list(checks), nullable=nullable)


def _load_columns() -> dict[str, pa.Column]:
    return {
        "payload": _text(pa.Check.str_startswith("{"), nullable=False),
        "run_id": _text(nullable=False),
        "fetched_at": pa.Column("datetime64[us, UTC]", nullable=False),
    }


def _schema(spec: tables.TableSpec, columns: dict[str, pa.Column]) -> pa.DataFrameSchema:
    schema = pa.DataFrameSchema({**columns, **_load_columns()}, strict=True, name=spec.name)
    if set(schema.columns) != set(spec.columns):
        raise ValueError(f"the {spec.name} schema and table spec name different columns")
    return schema


USERS = _schema(tables.USERS, {"guid": _guid("USR"), "id": _text()})

MEMBERS = _schema(
    tables.MEMBERS,
    {
        "guid": _guid("MBR"),
        "user_guid": _guid("USR"),
        "institution_code": _text(),
        "connection_status": _text(),
    },
)

MEMBER_STATUS = _schema(
    tables.MEMBER_STATUS,
    {
        "guid": _guid("MBR"),
        "user_guid": _guid("USR"),
        "connection_status": _text(),
        "is_being_aggregated": pa.Column("boolean", nullable=True),
        "successfully_aggregated_at": pa.Column("datetime64[us, UTC]", nullable=True),
    },
)

ACCOUNTS = _schema(
    tables.ACCOUNTS,
    {
        "guid": _guid("ACT"),
        "member_guid": _guid("MBR"),
        "user_guid": _guid("USR"),
        "type": _text(),
        "balance": _text(pa.Check.str_matches(MONEY)),
        "currency_code": _text(),
        "updated_at": pa.Column("datetime64[us, UTC]", nullable=True),
    },
)

TRANSACTIONS = _schema(
    tables.TRANSACTIONS,
    {
        "guid": _guid("TRN"),
        "member_guid": _guid("MBR"),
        "account_guid": _guid("ACT"),
        "user_guid": _guid("USR"),
        "status": _text(pa.Check.isin(["PENDING", "POSTED"]), nullable=False),
        "type": _text(pa.Check.isin(["CREDIT", "DEBIT"]), nullable=False),
        "amount": _text(pa.Check.str_matches(MONEY), nullable=False),
        "date": _text(pa.Check.str_matches(ISO_DATE), nullable=False),
        "updated_at": pa.Column("datetime64[us, UTC]", nullable=True),
        "removed_at": pa.Column("datetime64[us, UTC]", nullable=True),
    },
)

BY_TABLE: dict[str, pa.DataFrameSchema] = {
    tables.USERS.name: USERS,
    tables.MEMBERS.name: MEMBERS,
    tables.MEMBER_STATUS.name: MEMBER_STATUS,
    tables.ACCOUNTS.name: ACCOUNTS,
    tables.TRANSACTIONS.name: TRANSACTIONS,
}
