"""Signed, expiring tokens for reconnect links and for the state carried through Connect's redirect.

Widget URLs expire after ten minutes or first use, so a notification never embeds one: it carries a signed
link to the connect service, which mints a fresh widget URL at click time.
"""

from dataclasses import asdict, dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

RECONNECT_LINK_MAX_AGE = 30 * 24 * 3600  # a notification stays actionable for a month
CALLBACK_STATE_MAX_AGE = 3600  # a Connect session is long over after an hour


@dataclass(frozen=True)
class ConnectIntent:
    """Who is connecting what, in which mode, and where the user goes afterwards."""

    user_id: str
    user_guid: str
    mode: str
    member_guid: str | None = None
    return_to: str | None = None


class InvalidLink(Exception):
    """A link whose signature is wrong or whose time is up."""


class LinkSigner:
    def __init__(self, secret: str) -> None:
        self._reconnect = URLSafeTimedSerializer(secret, salt="mx_pipeline.reconnect")
        self._state = URLSafeTimedSerializer(secret, salt="mx_pipeline.callback-state")

    def reconnect_token(self, intent: ConnectIntent) -> str:
        return self._reconnect.dumps(asdict(intent))

    def read_reconnect_token(self, token: str, max_age: int = RECONNECT_LINK_MAX_AGE) -> ConnectIntent:
        return _load(self._reconnect, token, max_age)

    def callback_state(self, intent: ConnectIntent) -> str:
        return self._state.dumps(asdict(intent))

    def read_callback_state(self, token: str, max_age: int = CALLBACK_STATE_MAX_AGE) -> ConnectIntent:
        return _load(self._state, token, max_age)


def _load(serializer: URLSafeTimedSerializer, token: str, max_age: int) -> ConnectIntent:
    try:
        return ConnectIntent(**serializer.loads(token, max_age=max_age))
    except SignatureExpired:
        raise InvalidLink("this link has expired") from None
    except (BadSignature, TypeError):
        raise InvalidLink("this link is not valid") from None


def reconnect_url(public_url: str, signer: LinkSigner, intent: ConnectIntent) -> str:
    """The link a notification carries: stable for a month, minting a widget URL only when clicked."""
    return f"{public_url.rstrip('/')}/reconnect/{signer.reconnect_token(intent)}"
