"""Reconnect links and the state carried through Connect's redirect: opaque tokens, their meaning in the store.

A token is ``<key id>.<id>.<mac>``: a random id (``link_store.py`` keeps what it stands for), its HMAC-SHA256
under the link secret for one purpose (a reconnect link or a callback state), and the key id, a short
non-secret fingerprint of that secret. Nothing in it reads as (or decodes to) a user, member or guid. A link id
always gives the same URL, so a notification resent later carries the same link, rebuilt from its id.

Widget URLs expire after ten minutes or first use, so a notification never embeds one: its link leads to the
connect service, which mints a fresh widget URL at click time (the link's policy: ``link_store.py``).

Dagster and the connect service must share the link secret and the data directory (the store); a link signed
under another key, or well signed yet unknown to the store, means they do not: said once in the log, with the
likely cause, while the user sees a friendly page.
"""

import base64
import hashlib
import hmac
import logging
import re
from pathlib import Path

from mx_pipeline.connect.link_store import (
    ConnectIntent,
    InvalidLink,
    LinkStore,
    ReconnectLink,
    UnknownLink,
    utc_now,
)

__all__ = ["ConnectIntent", "ForgedLink", "InvalidLink", "LinkSigner", "Links", "reconnect_url"]

log = logging.getLogger(__name__)
RECONNECT, CALLBACK_STATE = "reconnect", "callback-state"
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MISMATCH = (
    "Dagster and the connect service use different MX_PIPELINE_LINK_SECRET or MX_PIPELINE_DATA_DIR: "
    "links the pipeline issues cannot be opened here (%s). Compare their /healthz link_key_id and link_store_id "
    "(the reconnect_notifications asset check does)."
)


class ForgedLink(InvalidLink):
    status = 400
    page = "This link is not valid. Please check that the whole link was copied, or reconnect your bank from the app."


class ForeignKey(InvalidLink):
    """Shaped like ours, under another key id: another secret signed it (or someone made it up)."""

    page = UnknownLink.page


class LinkSigner:
    """Signs and checks ids for one secret; ``key_id`` names the secret without revealing it."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        self.key_id = _b64(hmac.digest(self._secret, b"key-id", hashlib.sha256))[:8]

    def token(self, purpose: str, item_id: str) -> str:
        return f"{self.key_id}.{item_id}.{self._mac(purpose, item_id)}"

    def read(self, purpose: str, token: str) -> str:
        """The id ``token`` carries; :class:`ForgedLink` unless we signed it for ``purpose``, or
        :class:`ForeignKey` when it was signed under another secret's key id."""
        parts = token.split(".")
        if len(parts) != 3 or not _ID.match(parts[1]):
            raise ForgedLink()
        key_id, item_id, mac = parts
        if key_id != self.key_id:
            raise ForeignKey()
        if not hmac.compare_digest(mac.encode(), self._mac(purpose, item_id).encode()):
            raise ForgedLink()
        return item_id

    def _mac(self, purpose: str, item_id: str) -> str:
        return _b64(hmac.digest(self._secret, f"{purpose}:{item_id}".encode(), hashlib.sha256))


def reconnect_url(public_url: str, signer: LinkSigner, link_id: str) -> str:
    """The link a notification carries: the same for the same link id, minting a widget URL only when clicked."""
    return f"{public_url.rstrip('/')}/reconnect/{signer.token(RECONNECT, link_id)}"


class Links:
    """The signer and the store together: what each side of the link does."""

    def __init__(self, signer: LinkSigner, store: LinkStore) -> None:
        self.signer, self.store = signer, store
        self._reported: set[str] = set()

    @classmethod
    def at(cls, secret: str, store_path: Path, *, clock=utc_now) -> "Links":
        return cls(LinkSigner(secret), LinkStore(store_path, clock=clock))

    @property
    def identity(self) -> dict[str, str]:
        """Which secret and which store these links use (no secret, no path): /healthz shows it."""
        return {"link_key_id": self.signer.key_id, "link_store_id": self.store.store_id}

    def open_reconnect(self, token: str, *, only_check: bool = False) -> ReconnectLink:
        """The link ``token`` names, opened now (or, ``only_check``, whether it would open), or an
        :class:`InvalidLink` saying why not."""
        return self._mismatch_said(lambda: self.store.open(self.signer.read(RECONNECT, token), only_check=only_check))

    def callback_state(self, intent: ConnectIntent) -> str:
        """The ``state`` for one Connect session of ``intent``."""
        return self.signer.token(CALLBACK_STATE, self.store.save_state(intent))

    def read_callback_state(self, token: str) -> tuple[str, ConnectIntent]:
        """(the state's id, the intent it stands for); the id is the same for a reload of the same callback."""
        state_id = self._mismatch_said(lambda: self.signer.read(CALLBACK_STATE, token))
        return state_id, self.store.read_state(state_id)  # unknown: long expired (and let go), not a mismatch

    def _mismatch_said(self, work):
        try:
            return work()
        except (ForeignKey, UnknownLink) as exc:
            cause = "signed under another link secret" if isinstance(exc, ForeignKey) else "unknown to this store"
            if cause not in self._reported:  # once per cause: a flood of made-up links cannot flood the log
                self._reported.add(cause)
                log.error(MISMATCH, f"a link {cause}")
            raise


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
