"""All sandbox state behind one lock: users, members, accounts, transactions, widget URLs and the truth log.

Every public method takes the lock; the aggregation module's functions expect the caller to hold it.
"""

import random
import threading
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from mx_pipeline.sandbox.clock import SandboxClock, iso, parse_start_time
from mx_pipeline.sandbox.config import SandboxConfig
from mx_pipeline.sandbox.datagen import bank_login_key
from mx_pipeline.sandbox.errors import MxError, not_found
from mx_pipeline.sandbox.records import Account, BankLogin, ConnectSession, Member, Transaction, User, WidgetUrl


class World:
    """The fake MX's memory. ``lock`` is re-entrant so admin helpers can compose operations."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock | None = None) -> None:
        self.config = config
        self.clock = clock or SandboxClock(parse_start_time(config.start_time), frozen=config.freeze_clock)
        self.lock = threading.RLock()
        self._guid_rng = random.Random(f"{config.seed}:guids")
        self.users: dict[str, User] = {}
        self.members: dict[str, Member] = {}
        self._member_guids_by_user: dict[str, dict[str, None]] = {}  # ordered sets: O(1) per-user look-ups
        self._user_guid_by_id: dict[str, str] = {}
        self.last_background_scan: datetime | None = None
        self.accounts: dict[str, Account] = {}
        self.bank_logins: dict[str, BankLogin] = {}  # outlive their members: a re-link finds the same history
        self.transactions: dict[str, dict[str, Transaction]] = {}  # member guid -> guid -> row
        self.widget_urls: dict[str, WidgetUrl] = {}
        self.connect_sessions: dict[str, ConnectSession] = {}
        self.watched_members: set[str] = set()  # running a job or waiting for MFA: the tick looks only at these
        self.status_history: list[dict[str, Any]] = []
        self.abuse_degradations: list[dict[str, Any]] = []
        self.rate_limited: Counter = Counter()  # "user:<guid>" / "member:<guid>" -> 429s answered
        self.aggregation_count: Counter = Counter()  # member guid -> jobs started
        self.outbox: list[dict[str, Any]] = []  # webhook payloads emitted, in order
        self.webhook_sink = None  # callable(payload) set by the app when webhooks are configured

    # ids and time
    def new_guid(self, prefix: str) -> str:
        """A deterministic (seeded) MX-style guid, e.g. ``USR-<uuid4>``."""
        with self.lock:
            return f"{prefix}-{uuid.UUID(int=self._guid_rng.getrandbits(128), version=4)}"

    def new_token(self) -> str:
        with self.lock:
            return f"{self._guid_rng.getrandbits(160):040x}"

    def now(self) -> datetime:
        return self.clock.now()

    # users
    def create_user(self, id: str | None, email: str | None, is_disabled: bool, metadata: str | None) -> User:
        """POST /users. A duplicate ``id`` is 409 (MX: "an object with the given attributes already exists")."""
        with self.lock:
            if id is not None and id in self._user_guid_by_id:
                raise MxError(409, "A user with this id already exists.")
            user = User(self.new_guid("USR"), id, email, bool(is_disabled), metadata)
            self.users[user.guid] = user
            self._member_guids_by_user[user.guid] = {}
            if id is not None:
                self._user_guid_by_id[id] = user.guid
            return user

    def change_user_id(self, user: User, new_id: str | None) -> None:
        """Give a user another partner ``id`` (409 when another user has it)."""
        with self.lock:
            if new_id == user.id:
                return
            if new_id is not None and new_id in self._user_guid_by_id:
                raise MxError(409, "A user with this id already exists.")
            self._user_guid_by_id.pop(user.id, None)
            if new_id is not None:
                self._user_guid_by_id[new_id] = user.guid
            user.id = new_id

    def user_by_id(self, id: str) -> User | None:
        with self.lock:
            guid = self._user_guid_by_id.get(id)
            return self.users.get(guid) if guid else None

    def user(self, user_guid: str) -> User:
        with self.lock:
            user = self.users.get(user_guid)
            if user is None:
                raise not_found("User")
            return user

    def delete_user(self, user_guid: str) -> None:
        with self.lock:
            self.user(user_guid)
            for member in self.members_of(user_guid):
                self.forget_member(member)
            user = self.users.pop(user_guid)
            self._user_guid_by_id.pop(user.id, None)
            self._member_guids_by_user.pop(user_guid, None)

    # members
    def add_member(self, member: Member) -> None:
        with self.lock:
            self.members[member.guid] = member
            self._member_guids_by_user.setdefault(member.user_guid, {})[member.guid] = None

    def members_of(self, user_guid: str) -> list[Member]:
        with self.lock:
            return [self.members[g] for g in self._member_guids_by_user.get(user_guid, {})]

    def member(self, user_guid: str, member_guid: str) -> Member:
        with self.lock:
            self.user(user_guid)
            member = self.members.get(member_guid)
            if member is None or member.user_guid != user_guid:
                raise not_found("Member")
            return member

    def member_by_guid(self, member_guid: str) -> Member:
        with self.lock:
            member = self.members.get(member_guid)
            if member is None:
                raise not_found("Member")
            return member

    def forget_member(self, member: Member) -> None:
        """Drop a member and everything aggregated under it."""
        with self.lock:
            for account in member.data.accounts if member.data else []:
                self.accounts.pop(account.guid, None)
            self.transactions.pop(member.guid, None)
            self.watched_members.discard(member.guid)
            self.members.pop(member.guid, None)
            self._member_guids_by_user.get(member.user_guid, {}).pop(member.guid, None)

    def bank_login_of(self, member: Member) -> BankLogin:
        """The bank's side of the member's login (user, institution, LOGIN), created on first use."""
        with self.lock:
            key = bank_login_key(
                self.config.seed, member.user_guid, member.institution_code, member.credentials.get("LOGIN")
            )
            return self.bank_logins.setdefault(key, BankLogin(key))

    # accounts and transactions
    def accounts_of_member(self, member: Member) -> list[Account]:
        with self.lock:
            return list(member.data.accounts) if member.data else []

    def account(self, user_guid: str, account_guid: str) -> Account:
        with self.lock:
            self.user(user_guid)
            account = self.accounts.get(account_guid)
            if account is None or account.user_guid != user_guid:
                raise not_found("Account")
            return account

    def transactions_of_member(self, member_guid: str) -> list[Transaction]:
        with self.lock:
            return list(self.transactions.get(member_guid, {}).values())

    def live_transactions_of_user(self, user_guid: str) -> list[Transaction]:
        """What MX lists for the user now: every live member's rows (a deleted member's are gone)."""
        with self.lock:
            self.user(user_guid)
            rows = [t for m in self.members_of(user_guid) for t in self.transactions.get(m.guid, {}).values()]
            return sorted(rows, key=lambda t: (t.transacted_at, t.guid))

    def pending_of_member(self, member_guid: str) -> list[Transaction]:
        with self.lock:
            return [t for t in self.transactions.get(member_guid, {}).values() if t.status == "PENDING"]

    # webhooks and truth
    def emit(self, payload: dict[str, Any]) -> None:
        """Record a webhook payload and hand it to the sender (never blocks: the sender queues it)."""
        with self.lock:
            self.outbox.append(payload)
            sink = self.webhook_sink
        if sink is not None:
            sink(payload)

    def truth(self) -> dict[str, Any]:
        """Counts and logs for tests and demos (GET /_sandbox/truth)."""
        with self.lock:
            statuses = Counter(m.connection_status.value for m in self.members.values())
            return {
                "now": iso(self.now()),
                "users": len(self.users),
                "members": len(self.members),
                "accounts": len(self.accounts),
                "transactions": sum(len(rows) for rows in self.transactions.values()),
                "pending_transactions": sum(
                    1 for rows in self.transactions.values() for t in rows.values() if t.status == "PENDING"
                ),
                "members_by_status": dict(sorted(statuses.items())),
                "members_being_aggregated": sum(1 for m in self.members.values() if m.is_being_aggregated),
                "aggregations_started": sum(self.aggregation_count.values()),
                "rate_limited": dict(self.rate_limited),
                "abuse_degradations": list(self.abuse_degradations),
                "webhooks_emitted": len(self.outbox),
            }
