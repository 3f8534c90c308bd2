"""MX's member ``connection_status`` vocabulary, shared by the client, the sandbox and the lifecycle rules.

The classic spec (v20111101) types ``connection_status`` as a free string; the closed list is the enum of the
v20250224 spec (22 values, plus null for members that never aggregate). The numeric ids are the ones MX uses
as ``connection_status_id`` in webhooks and in the widget's ``memberStatusUpdate`` event.
"""

from enum import StrEnum


class ConnectionStatus(StrEnum):
    CREATED = "CREATED"
    PREVENTED = "PREVENTED"
    DENIED = "DENIED"
    CHALLENGED = "CHALLENGED"
    REJECTED = "REJECTED"
    LOCKED = "LOCKED"
    CONNECTED = "CONNECTED"
    IMPEDED = "IMPEDED"
    RECONNECTED = "RECONNECTED"
    DEGRADED = "DEGRADED"
    DISCONNECTED = "DISCONNECTED"
    DISCONTINUED = "DISCONTINUED"
    CLOSED = "CLOSED"
    DELAYED = "DELAYED"
    FAILED = "FAILED"
    UPDATED = "UPDATED"
    DISABLED = "DISABLED"
    IMPORTED = "IMPORTED"
    RESUMED = "RESUMED"
    EXPIRED = "EXPIRED"
    IMPAIRED = "IMPAIRED"
    PENDING = "PENDING"

    @property
    def id(self) -> int:
        """MX's numeric ``connection_status_id``."""
        return CONNECTION_STATUS_IDS[self]


# Declaration order above is MX's id order (0 = CREATED ... 21 = PENDING).
CONNECTION_STATUS_IDS: dict[ConnectionStatus, int] = {status: i for i, status in enumerate(ConnectionStatus)}

# The statuses MX calls end-user actionable: exactly the ones that fire its CONNECTION_STATUS webhook.
END_USER_ACTIONABLE: frozenset[ConnectionStatus] = frozenset(
    {
        ConnectionStatus.CHALLENGED,
        ConnectionStatus.DENIED,
        ConnectionStatus.EXPIRED,
        ConnectionStatus.IMPAIRED,
        ConnectionStatus.IMPEDED,
        ConnectionStatus.LOCKED,
        ConnectionStatus.PREVENTED,
        ConnectionStatus.REJECTED,
    }
)


def parse_connection_status(value: str | None) -> ConnectionStatus | None:
    """The enum member for a wire value; None for null or a value MX has added since (never raises)."""
    if value is None:
        return None
    try:
        return ConnectionStatus(value)
    except ValueError:
        return None
