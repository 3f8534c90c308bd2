"""Deterministic fault injection, each kind at its own rate.

- ``server_error``: 500/502/503/504, answered before the request is processed (nothing happened).
- ``rate_limited``: 429 with a (short) Retry-After, answered before the request is processed.
- ``truncated_json`` / ``invalid_json``: GET only; the request is processed and its 200 body is cut
  mid-document / replaced by a non-JSON page (what a flaky proxy does).
- ``server_error_after_write``: writes only (POST, PUT, DELETE); the request is processed and committed, then
  answered with a 5xx (the answer is lost: a create did happen).

One seeded draw per MX API request picks at most one kind (the rates partition [0, 1)), so a seed and a
request sequence always fail the same way. The rates can change while the sandbox runs (``/_sandbox/faults``);
``injected`` counts what was injected, by kind.
"""

import json
import random
import threading
from collections import Counter
from collections.abc import Mapping
from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mx_pipeline.sandbox.errors import MxError

FAULT_KINDS = ("server_error", "rate_limited", "truncated_json", "invalid_json", "server_error_after_write")
SHORTHAND_KINDS = FAULT_KINDS[:4]  # what the ``fault_rate`` shorthand spreads evenly over
READ_ONLY_KINDS = frozenset({"truncated_json", "invalid_json"})  # corrupting a write's answer is a lost answer
WRITE_ONLY_KINDS = frozenset({"server_error_after_write"})
SERVER_ERROR_STATUSES = (500, 502, 503, 504)


class Fault(NamedTuple):
    kind: str
    status: int


def rates_from_config(config) -> dict[str, float]:
    """Each kind's rate: its own ``<kind>_rate`` plus an even share of the ``fault_rate`` shorthand."""
    share = config.fault_rate / len(SHORTHAND_KINDS)
    return {kind: getattr(config, f"{kind}_rate") + (share if kind in SHORTHAND_KINDS else 0.0) for kind in FAULT_KINDS}


class FaultInjector:
    """Decides, per request, whether and how to misbehave."""

    def __init__(self, seed: int, rates: Mapping[str, float] | None = None, retry_after_seconds: float = 1.0) -> None:
        self._rng = random.Random(f"{seed}:faults")
        self._lock = threading.Lock()
        self.rates = dict.fromkeys(FAULT_KINDS, 0.0)
        self.retry_after_seconds = retry_after_seconds
        self.injected: Counter[str] = Counter()
        self.configure(rates or {})

    @classmethod
    def from_config(cls, config) -> "FaultInjector":
        return cls(config.seed, rates_from_config(config), config.fault_retry_after_seconds)

    def configure(self, rates: Mapping[str, float], retry_after_seconds: float | None = None) -> None:
        """Change the given kinds' rates (the others keep theirs); ValueError on an unknown kind or bad rates."""
        unknown = sorted(set(rates) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s): {', '.join(unknown)} (known: {', '.join(FAULT_KINDS)})")
        new = self.rates | {kind: float(rate) for kind, rate in rates.items()}
        if any(not 0.0 <= rate <= 1.0 for rate in new.values()) or sum(new.values()) > 1.0 + 1e-9:
            raise ValueError(f"each fault rate must be within 0..1 and together at most 1, got {new}")
        if retry_after_seconds is not None and retry_after_seconds < 0:
            raise ValueError("retry_after_seconds must not be negative")
        with self._lock:
            self.rates = new
            if retry_after_seconds is not None:
                self.retry_after_seconds = retry_after_seconds

    def draw(self, method: str) -> Fault | None:
        """The fault to inject into this request, or None."""
        with self._lock:
            if not any(self.rates.values()):
                return None
            point, edge = self._rng.random(), 0.0
            for kind in FAULT_KINDS:
                edge += self.rates[kind]
                if point < edge:
                    break
            else:
                return None
            is_read = method == "GET"
            if (kind in READ_ONLY_KINDS and not is_read) or (kind in WRITE_ONLY_KINDS and is_read):
                return None
            if kind.startswith("server_error"):
                status = self._rng.choice(SERVER_ERROR_STATUSES)
            else:
                status = 429 if kind == "rate_limited" else 200
            self.injected[kind] += 1
            return Fault(kind, status)

    def refuse(self, fault: Fault | None) -> None:
        """Raise the error a fault answers before the request is processed (a 5xx or a 429)."""
        if fault is None:
            return
        if fault.kind == "server_error":
            raise MxError(fault.status, "Something went wrong with MX's servers (sandbox injected fault).")
        if fault.kind == "rate_limited":
            retry_after = {"Retry-After": f"{self.retry_after_seconds:g}"}
            raise MxError(429, "Rate limit exceeded (sandbox injected fault).", retry_after)

    def spoil(self, fault: Fault | None, response: Response) -> Response:
        """The answer a fault leaves of a processed request: a corrupted body, or a 5xx after the write."""
        if fault is None or response.status_code >= 300:
            return response
        if fault.kind in READ_ONLY_KINDS and response.status_code == 200:
            return Response(self.corrupt(response.body, fault.kind), status_code=200, media_type=response.media_type)
        if fault.kind == "server_error_after_write":
            error = MxError(fault.status, "Something went wrong with MX's servers (sandbox injected fault).")
            return Response(json.dumps(error.body()), status_code=fault.status, media_type=response.media_type)
        return response

    @staticmethod
    def corrupt(body: bytes, kind: str) -> bytes:
        """A truncated body (cut mid-document) or one that is not JSON at all."""
        if kind == "truncated_json":
            return body[: max(1, len(body) // 2)]
        return b"<html><body>502 Bad Gateway</body></html>"

    def state(self) -> dict:
        with self._lock:
            return {
                "rates": dict(self.rates),
                "retry_after_seconds": self.retry_after_seconds,
                "injected": {kind: self.injected[kind] for kind in FAULT_KINDS},
            }


async def faults_endpoint(request: Request) -> Response:
    """GET: rates and what was injected so far. POST ``{"rates": {kind: rate}, "retry_after_seconds": s}``:
    change the given rates (the others keep theirs)."""
    injector: FaultInjector = request.app.state.runtime.faults
    if request.method == "POST":
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("rates", {}), dict):
                raise ValueError('expected {"rates": {kind: rate}, "retry_after_seconds": seconds}')
            injector.configure(body.get("rates", {}), body.get("retry_after_seconds"))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": {"message": str(exc)}}, 400)
    return JSONResponse(injector.state())
