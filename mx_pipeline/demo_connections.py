"""The demo users' bank connections on the built-in sandbox: what ``mx-pipeline demo`` and ``dev`` both open on.

Every demo user (``data/reference/demo_users.csv``) connects through the API as the Connect widget would, with
the sandbox's test credentials (username ``mxuser``; the password chooses how the connection ends), so the
lifecycle has something to show: connected members at two institutions, one waiting on an MFA answer, one the
bank keeps degraded and one with wrong credentials.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass

from mx_pipeline.mx import MxClient
from mx_pipeline.warehouse import Warehouse

TEST_USERNAME = "mxuser"


@dataclass(frozen=True)
class DemoConnection:
    user_id: str
    institution_code: str
    password: str
    ends: str  # the connection status the password leads to


DEMO_CONNECTIONS = (
    DemoConnection("demo-ada", "mxbank", "password", "CONNECTED"),
    DemoConnection("demo-ada", "sandboxcu", "password", "CONNECTED"),
    DemoConnection("demo-grace", "mxbank", "password", "CONNECTED"),
    DemoConnection("demo-alan", "sandboxcu", "password", "CONNECTED"),
    DemoConnection("demo-alan", "mxbank", "DEGRADED", "DEGRADED"),  # the bank's trouble: backed off, re-read
    DemoConnection("demo-katherine", "mxbank", "challenge", "CHALLENGED"),  # the MFA answer is never given
    DemoConnection("demo-edsger", "mxbank", "UNAUTHORIZED", "DENIED"),  # wrong credentials
)


def registered_demo_users(warehouse: Warehouse) -> dict[str, str]:
    """Our user id -> MX user guid, for the users the ``users`` asset registered."""
    with warehouse.connect() as con:
        return dict(con.execute("select id, mx_user_guid from ops.end_users where mx_user_guid is not null").fetchall())


def connect_demo_members(
    client: MxClient, user_guids: Mapping[str, str], timeout_seconds: float = 60.0
) -> list[tuple[str, str]]:
    """Connect every demo connection and wait for MX to finish aggregating them; (user guid, member guid)s."""
    institutions = sorted({c.institution_code for c in DEMO_CONNECTIONS})
    print(f"Connecting the demo users: {len(DEMO_CONNECTIONS)} connections at {', '.join(institutions)} ...")
    fields = {code: {c.field_name: c.guid for c in client.list_institution_credentials(code)} for code in institutions}
    members = []
    for connection in DEMO_CONNECTIONS:
        user_guid, guids = user_guids[connection.user_id], fields[connection.institution_code]
        credentials = {guids["LOGIN"]: TEST_USERNAME, guids["PASSWORD"]: connection.password}
        member = client.create_member(user_guid, institution_code=connection.institution_code, credentials=credentials)
        members.append((user_guid, member.guid))
    _wait_for_aggregation(client, members, timeout_seconds)
    return members


def _wait_for_aggregation(client: MxClient, members: list[tuple[str, str]], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    waiting = set(members)
    while waiting and time.monotonic() < deadline:
        waiting = {(u, m) for u, m in waiting if client.read_member_status(u, m).is_being_aggregated}
        if waiting:
            time.sleep(0.5)
    print(f"  {len(members) - len(waiting)} of {len(members)} connections finished aggregating", flush=True)
