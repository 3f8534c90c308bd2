"""The MX Platform API client (classic v20111101). No Dagster or DuckDB imports: usable from any process."""

from mx_pipeline.mx.client import MxClient
from mx_pipeline.mx.errors import (
    READ_FAILURES,
    AuthError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    ListShifted,
    MalformedRecord,
    MalformedResponse,
    MxError,
    NotFound,
    RateLimited,
    ServerError,
    Throttled,
)
from mx_pipeline.mx.rate_limit import RateLimiter, RateLimits
from mx_pipeline.mx.statuses import ConnectionStatus
from mx_pipeline.mx.transport import ApiCall, RetryPolicy

__all__ = [
    "READ_FAILURES",
    "ApiCall",
    "AuthError",
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "ConnectionStatus",
    "ListShifted",
    "MalformedRecord",
    "MalformedResponse",
    "MxClient",
    "MxError",
    "NotFound",
    "RateLimited",
    "RateLimiter",
    "RateLimits",
    "RetryPolicy",
    "ServerError",
    "Throttled",
]
