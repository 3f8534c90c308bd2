"""The warehouse against the sandbox's truth, row by row and amount by amount: what was lost, duplicated or wrong.

The truth is the sandbox's memory (every user, member, account and transaction it holds, all connected); the
warehouse side is the live rows of the raw tables (``removed_at`` null) and ``marts.fct_transactions``.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb


@dataclass
class Differences:
    """Per table: keys MX has that the warehouse lacks, extra copies, and rows that differ or MX never had."""

    lost: Counter = field(default_factory=Counter)
    duplicated: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def none(self) -> bool:
        return not (+self.lost or +self.duplicated or +self.wrong)

    def __str__(self) -> str:
        counts = f"lost {dict(+self.lost)}, duplicated {dict(+self.duplicated)}, wrong {dict(+self.wrong)}"
        return counts + (f"; e.g. {self.examples[:5]}" if self.examples else "")


def truth_of(world) -> dict[str, dict[str, tuple]]:
    """The sandbox's objects as the warehouse should hold them, keyed by guid (amounts to the cent)."""
    with world.lock:
        transactions = {g: t for rows in world.transactions.values() for g, t in rows.items()}
        return {
            "raw.mx_users": {g: (u.id,) for g, u in world.users.items()},
            "raw.mx_members": {g: (m.user_guid,) for g, m in world.members.items()},
            "raw.mx_member_status": {g: (m.connection_status.value,) for g, m in world.members.items()},
            "raw.mx_accounts": {g: (a.member_guid, f"{a.balance:.2f}") for g, a in world.accounts.items()},
            "raw.mx_transactions": {
                g: (t.account_guid, t.status, t.type, f"{t.amount:.2f}", t.date.isoformat())
                for g, t in transactions.items()
            },
            "marts.fct_transactions": {
                g: (f"{-t.amount if t.type == 'DEBIT' else t.amount:.2f}", t.date.isoformat(), t.status)
                for g, t in transactions.items()
            },
        }


WAREHOUSE_ROWS = {
    "raw.mx_users": "select guid, id from raw.mx_users where removed_at is null",
    "raw.mx_members": "select guid, user_guid from raw.mx_members where removed_at is null",
    "raw.mx_member_status": "select guid, connection_status from raw.mx_member_status where removed_at is null",
    "raw.mx_accounts": """
        select guid, member_guid, printf('%.2f', balance) from raw.mx_accounts where removed_at is null""",
    "raw.mx_transactions": """
        select guid, account_guid, status, type, printf('%.2f', amount), cast(date as varchar)
        from raw.mx_transactions where removed_at is null""",
    "marts.fct_transactions": """
        select transaction_guid, printf('%.2f', amount), cast(transaction_date as varchar), status
        from marts.fct_transactions""",
}


def compare(warehouse: Path, world, tables: Iterable[str] = tuple(WAREHOUSE_ROWS)) -> Differences:
    """``tables`` (every table of ``WAREHOUSE_ROWS``) against the truth; the warehouse is opened read-only."""
    truth, found = truth_of(world), Differences()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table in tables:
            rows = con.execute(WAREHOUSE_ROWS[table]).fetchall()
            _compare_table(table, truth[table], rows, found)
    return found


def _compare_table(table: str, expected: dict[str, tuple], rows: list[tuple], found: Differences) -> None:
    copies = Counter(row[0] for row in rows)
    found.duplicated[table] += sum(n - 1 for n in copies.values())
    held = {row[0]: tuple(row[1:]) for row in rows}
    for guid, value in held.items():
        if expected.get(guid) != value:
            found.wrong[table] += 1
            found.examples.append(f"{table} {guid}: {value} != {expected.get(guid)}")
    # fct_transactions leaves out pending rows (a posted twin arrived, or MX has deleted them by now)
    required = {g for g, v in expected.items() if table != "marts.fct_transactions" or v[-1] == "POSTED"}
    missing = required - held.keys()
    found.lost[table] += len(missing)
    found.examples += [f"{table} {guid}: missing" for guid in sorted(missing)[:3]]
