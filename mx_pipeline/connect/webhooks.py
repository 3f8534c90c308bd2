"""MX's webhook endpoint, following MX's published practice (docs.mx.com/resources/webhooks).

- MX authenticates with HTTP Basic (the credentials set in MX's Client Dashboard): anything else gets 401 and
  nothing is stored.
- An authenticated delivery is spooled (fsynced) and then answered 204 at once. MX resends on failure, up to
  12 times over about a day, and warns that payloads may carry nulls and new fields; so content is never
  judged here: an error would only make MX resend the same bytes. The pipeline parses when it drains the
  spool and quarantines what it cannot store as an event, with the reason and the bytes exactly (bytes that
  are not UTF-8 are spooled as surrogate escapes, so nothing about them is lost).
- Bodies over ``max_bytes`` get 413 (no MX payload is anywhere near it). A CONNECTION_STATUS body has no
  timestamp, so the same bytes are a redelivery only while they are still the latest event of the member they
  name, and within the spool's dedupe window (longer than MX's day of retries): CHALLENGED, CONNECTED,
  CHALLENGED again the same day (a bank asking for MFA on every aggregation) is two challenges, and so is
  CHALLENGED again weeks later. The member guid is the only thing read from the body here.
"""

import base64
import binascii
import hashlib
import logging
import secrets
from functools import partial

from anyio import CapacityLimiter, to_thread
from starlette.requests import Request
from starlette.responses import Response

from mx_pipeline.connect.bodies import BodyTooLarge, read_capped
from mx_pipeline.connect.spool import Spool
from mx_pipeline.lifecycle.events import member_named_by

log = logging.getLogger(__name__)
MAX_WEBHOOK_BYTES = 256 * 1024
SPOOL_WRITERS = 8  # webhook writes at once, in threads of their own (never the ones MX calls wait in)


class WebhookReceiver:
    def __init__(self, spool: Spool, username: str, password: str, max_bytes: int = MAX_WEBHOOK_BYTES) -> None:
        self.spool = spool
        self._expected = f"{username}:{password}".encode() if username and password else None
        self.max_bytes = max_bytes
        self._writers = CapacityLimiter(SPOOL_WRITERS)
        if self._expected is None:
            log.warning("MX_WEBHOOK_USERNAME/MX_WEBHOOK_PASSWORD are not set: every webhook delivery is refused")

    async def receive(self, request: Request) -> Response:
        if not self._authenticated(request.headers.get("Authorization", "")):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="mx-webhooks"'})
        try:
            body = await read_capped(request, self.max_bytes)
        except BodyTooLarge:
            return Response(status_code=413)
        # MX payloads carry no event id: the same bytes, with no other event of the member since, are a redelivery.
        key = hashlib.sha256(body).hexdigest()
        text = body.decode("utf-8", errors="surrogateescape")  # kept byte-exact, even when not UTF-8
        meta = {"content_type": request.headers.get("Content-Type", "")}
        # Off the event loop: a write waiting for the spool's lock (the sensor pruning) stalls no other request.
        append = partial(self.spool.append, "mx_webhook", key, text, meta, member=member_named_by(body))
        await to_thread.run_sync(append, limiter=self._writers)
        return Response(status_code=204)

    def _authenticated(self, header: str) -> bool:
        if self._expected is None or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:], validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(given, self._expected)
