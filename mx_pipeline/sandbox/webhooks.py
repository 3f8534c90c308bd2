"""MX-style webhook delivery: JSON POST with HTTP Basic auth, retried with backoff in a background thread.

MX retries failed deliveries with diminishing frequency (no more than 12 retries over ~24 h) and treats any
2xx as received (docs.mx.com/resources/webhooks). The sandbox keeps the same idea at test speed: a bounded list of
real-time delays (config ``webhook_retry_delays_real_seconds``) and a log of every attempt.
"""

import heapq
import itertools
import threading
import time
from typing import Any

import requests


class WebhookSender:
    """Queues payloads and delivers them from one daemon thread; ``enqueue`` never blocks a request."""

    def __init__(
        self,
        url: str,
        username: str | None,
        password: str | None,
        retry_delays: tuple[float, ...],
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._auth = (username, password) if username is not None else None
        self._retry_delays = retry_delays
        self._timeout = timeout
        self._queue: list[tuple[float, int, int, dict[str, Any]]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._stopping = False
        self._session = requests.Session()
        self.attempts: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.abandoned: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Schedule a first delivery attempt now."""
        self._schedule(payload, attempt=1, due=time.monotonic())

    def _schedule(self, payload: dict[str, Any], attempt: int, due: float) -> None:
        with self._condition:
            heapq.heappush(self._queue, (due, next(self._sequence), attempt, payload))
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.monotonic()):
                    timeout = None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic())
                    self._condition.wait(timeout)
                if self._stopping:
                    return
                _, _, attempt, payload = heapq.heappop(self._queue)
            self._deliver(payload, attempt)

    def _deliver(self, payload: dict[str, Any], attempt: int) -> None:
        outcome: dict[str, Any] = {
            "type": payload.get("type"),
            "member_guid": payload.get("member_guid"),
            "attempt": attempt,
        }
        try:
            response = self._session.post(self.url, json=payload, auth=self._auth, timeout=self._timeout)
            outcome["status_code"] = response.status_code
            ok = 200 <= response.status_code < 300
        except requests.RequestException as error:
            outcome["error"] = type(error).__name__
            ok = False
        self.attempts.append(outcome)
        if ok:
            self.delivered.append(payload)
        elif attempt <= len(self._retry_delays):
            self._schedule(payload, attempt + 1, time.monotonic() + self._retry_delays[attempt - 1])
        else:
            self.abandoned.append(payload)

    def pending(self) -> int:
        with self._condition:
            return len(self._queue)

    def stop(self) -> None:
        """Stop the delivery thread (queued deliveries are dropped)."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(timeout=5)
        self._session.close()

    def log(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "attempts": list(self.attempts),
            "delivered": len(self.delivered),
            "abandoned": len(self.abandoned),
            "queued": self.pending(),
        }
