"""One pooled HTTP transport for MX: auth, headers, pacing, retries, error mapping and call records."""

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import requests
import simplejson
import urllib3
from requests.adapters import HTTPAdapter

from mx_pipeline.mx import errors
from mx_pipeline.mx.rate_limit import RateLimiter
from mx_pipeline.mx.redaction import LOGGER, REDACTOR

MX_MEDIA_TYPE = "application/vnd.mx.api.v1+json"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# MX names no request-id header; these are the conventional ones, recorded when present.
REQUEST_ID_HEADERS = ("X-Request-Id", "X-Request-ID", "Request-Id")
DEFAULT_POOL_SIZE = 10  # requests' own default


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Backoff is exponential with full jitter, capped; Retry-After wins when sent."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # A Retry-After longer than this is not waited out inside a request: the caller gets RateLimited with
    # the value and can reschedule instead of holding a worker.
    retry_after_max: float = 60.0


@dataclass(frozen=True)
class ApiCall:
    """One HTTP attempt, as recorded in ``ops.api_calls``. Never holds credentials or bodies."""

    started_at: datetime
    method: str
    path_template: str
    status: int | None
    latency_ms: float
    attempt: int
    request_id: str | None
    user_guid: str | None
    member_guid: str | None
    error: str | None


@dataclass(frozen=True)
class MxResponse:
    status: int
    body: dict[str, Any] | None
    headers: Mapping[str, str]


CallObserver = Callable[[ApiCall], None]


class Transport:
    """Sends MX requests through one pooled ``requests.Session``; threads may share it (and its limiter)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        api_key: str,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy = RetryPolicy(),
        limiter: RateLimiter | None = None,
        observers: Iterable[CallObserver] = (),
        session: requests.Session | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``pool_size``: connections kept open to MX; at least the number of threads sending at once (a thread
        finding none free opens one and drops it after its request)."""
        REDACTOR.add(client_id, api_key)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self.limiter = limiter or RateLimiter()
        self.observers = list(observers)
        self._sleep = sleep
        self._jitter = jitter
        self._session = session or _pooled_session(pool_size)
        self._session.auth = (client_id, api_key)
        self._session.headers.update({"Accept": MX_MEDIA_TYPE, "User-Agent": "mx_pipeline"})
        # Once MX refuses our credentials (401) they stay refused: the threads reading beside the one refused send
        # nothing more, where each would otherwise have its own 401 for every member left.
        self._refused_credentials = False

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        path_template: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        user_guid: str | None = None,
        member_guid: str | None = None,
        idempotent: bool | None = None,
    ) -> MxResponse:
        """Send one logical request, retrying what is safe to retry; raise a typed error otherwise."""
        path = path_template.format(**{k: quote(str(v), safe="") for k, v in (path_params or {}).items()})
        safe_to_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        query = {k: _wire(v) for k, v in (params or {}).items() if v is not None}
        observe = partial(self._observe, method, path_template, user_guid, member_guid)
        for attempt in range(1, self.retry.max_attempts + 1):
            if self._refused_credentials:
                raise errors.AuthError("not sent: MX refused our credentials earlier", method=method, path=path,
                                       status=401)  # fmt: skip
            self.limiter.acquire(user_guid=user_guid, member_guid=member_guid)
            started, clock = datetime.now(UTC), time.perf_counter()
            try:
                response = self._session.request(
                    method,
                    self.base_url + path,
                    params=query,
                    json=json_body,
                    headers=dict(headers or {}),
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                observe(started, clock, attempt, None, None, type(exc).__name__)
                if attempt < self.retry.max_attempts and (_never_connected(exc) or safe_to_repeat):
                    self.back_off(attempt, method, path_template, repr(exc))
                    continue
                raise errors.ConnectionFailed(
                    REDACTOR(f"MX unreachable after {attempt} attempt(s): {type(exc).__name__}"),
                    method=method,
                    path=path,
                ) from None
            request_id = _request_id(response.headers)
            if response.status_code < 400:
                try:
                    body = _parse_body(response, method)
                except _Garbled as garbled:
                    # A body cut short or mangled on the way (a proxy, a dropped stream): a read is repeated like
                    # a 5xx; a write is not (MX acted on it), and only the caller can find out what it did.
                    observe(started, clock, attempt, response.status_code, request_id, f"MalformedResponse: {garbled}")
                    if safe_to_repeat and attempt < self.retry.max_attempts:
                        self.back_off(attempt, method, path_template, str(garbled))
                        continue
                    raise errors.MalformedResponse(
                        f"{garbled}" + (f" after {attempt} attempts" if attempt > 1 else ""),
                        method=method,
                        path=path,
                        status=response.status_code,
                    ) from None
                observe(started, clock, attempt, response.status_code, request_id, None)
                return MxResponse(response.status_code, body, response.headers)
            observe(started, clock, attempt, response.status_code, request_id, None)
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            # 429 means MX refused before doing anything; a 5xx may have half-done a non-idempotent request.
            retryable = response.status_code == 429 or (response.status_code in RETRYABLE_STATUSES and safe_to_repeat)
            too_long = retry_after is not None and retry_after > self.retry.retry_after_max
            if retryable and not too_long and attempt < self.retry.max_attempts:
                self.back_off(attempt, method, path_template, f"HTTP {response.status_code}", retry_after)
                continue
            self._refused_credentials = self._refused_credentials or response.status_code == 401
            raise _error_for(response, method, path, request_id, retry_after, attempt)
        raise AssertionError("unreachable: the retry loop always returns or raises")

    def back_off(self, attempt: int, method: str, template: str, why: str, retry_after: float | None = None):
        """Wait before attempt ``attempt + 1``: Retry-After when MX sent one, else capped exponential jitter."""
        ceiling = min(self.retry.backoff_max, self.retry.backoff_base * 2 ** (attempt - 1))
        delay = retry_after if retry_after is not None else self._jitter() * ceiling
        LOGGER.warning("MX %s %s: %s; retry %d in %.2fs", method, template, why, attempt, delay)
        self._sleep(delay)

    def _observe(self, method, template, user, member, started, clock, attempt, status, request_id, error):
        latency = (time.perf_counter() - clock) * 1000
        call = ApiCall(
            started_at=started,
            method=method,
            path_template=template,
            status=status,
            latency_ms=round(latency, 3),
            attempt=attempt,
            request_id=request_id,
            user_guid=user,
            member_guid=member,
            error=REDACTOR(error) if error else None,
        )
        LOGGER.debug("MX %s %s -> %s in %.1f ms (attempt %d)", method, template, status, latency, attempt)
        for observer in self.observers:
            try:
                observer(call)
            except Exception:  # an observer (e.g. the call log) must never break the call itself
                LOGGER.exception("API call observer failed")


def _pooled_session(pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _never_connected(exc: requests.RequestException) -> bool:
    """Did the request fail before a connection existed? Then MX cannot have acted on it: safe to repeat.

    requests raises ``ConnectionError`` both for a refused connection and for one dropped after the request
    was sent (urllib3's ``ProtocolError``); only the first is harmless to repeat for a create.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    cause = exc.args[0] if exc.args else None
    cause = getattr(cause, "reason", cause)  # urllib3's MaxRetryError wraps the underlying error
    return isinstance(cause, urllib3.exceptions.NewConnectionError)


def _request_id(headers: Mapping[str, str]) -> str | None:
    return next((headers[name] for name in REQUEST_ID_HEADERS if name in headers), None)


def _wire(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return value


class _Garbled(ValueError):
    """A 2xx body that does not parse into a JSON object; the message says how."""


def _parse_body(response: requests.Response, method: str) -> dict[str, Any] | None:
    if response.status_code == 204 or (not response.content and method != "GET"):
        return None
    if not response.content:  # every read MX answers has an envelope: nothing at all is a body lost on the way
        raise _Garbled(f"HTTP {response.status_code} body is empty")
    try:
        # Money stays exact from the parser on: every JSON number with a fraction becomes a Decimal.
        body = simplejson.loads(response.content, use_decimal=True)
    except (ValueError, UnicodeDecodeError):
        raise _Garbled(f"HTTP {response.status_code} body is not valid JSON ({len(response.content)} bytes)") from None
    if not isinstance(body, dict):
        raise _Garbled(f"expected a JSON object, got {type(body).__name__}")
    return body


def _mx_message(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message")) if error.get("message") is not None else None
    return str(error) if error else None


def _error_for(response, method, path, request_id, retry_after, attempts) -> errors.MxError:
    status = response.status_code
    cls = errors.error_class_for(status)
    kwargs = dict(
        method=method,
        path=path,
        status=status,
        mx_message=REDACTOR(_mx_message(response) or "") or None,
        request_id=request_id,
    )
    message = f"MX answered HTTP {status}" + (f" after {attempts} attempts" if attempts > 1 else "")
    if cls is errors.RateLimited:
        return errors.RateLimited(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
