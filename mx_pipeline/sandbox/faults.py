"""Deterministic fault injection: 5xx, 429 with Retry-After, truncated and invalid JSON bodies.

Faults are drawn from a seeded RNG, one draw per MX API request, so a given seed and request sequence always
fails the same way. Error faults (5xx, 429) answer before the request is processed (no side effects); body
corruption applies only to GET responses, after processing (retrying a corrupted POST could duplicate data).
"""

import random
import threading

FAULT_KINDS = ("server_error", "rate_limited", "truncated_json", "invalid_json")
SERVER_ERROR_STATUSES = (500, 502, 503, 504)


class FaultInjector:
    """Decides, per request, whether and how to misbehave."""

    def __init__(self, seed: int, fault_rate: float) -> None:
        self.fault_rate = fault_rate
        self._rng = random.Random(f"{seed}:faults")
        self._lock = threading.Lock()
        self.injected: list[str] = []

    def draw(self, method: str) -> tuple[str, int] | None:
        """``(kind, status)`` for a fault to inject, or None. Body corruption is only drawn for GET."""
        if self.fault_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.fault_rate:
                return None
            kind = self._rng.choice(FAULT_KINDS)
            status = self._rng.choice(SERVER_ERROR_STATUSES) if kind == "server_error" else 429
            if kind in ("truncated_json", "invalid_json") and method != "GET":
                return None
            self.injected.append(kind)
            return kind, status

    @staticmethod
    def corrupt(body: bytes, kind: str) -> bytes:
        """A truncated body (cut mid-document) or one that is not JSON at all."""
        if kind == "truncated_json":
            return body[: max(1, len(body) // 2)]
        return b"<html><body>502 Bad Gateway</body></html>"
