"""The connect service's logging: uvicorn's, with every URL that could carry a credential scrubbed.

A reconnect link's token is in its path (``/reconnect/<token>``) and Connect's callback carries its ``state`` in the
query string; both are bearer credentials for one end user. Access lines keep method, path and status, but a
path's query string is dropped and a reconnect token is replaced by ``<token>``: enough to see traffic and errors,
nothing to replay. The service's own loggers (``mx_pipeline``) go to the same stream.
"""

import copy
import logging
import re

from uvicorn.config import LOGGING_CONFIG

_TOKEN_IN_PATH = re.compile(r"^(/reconnect/)[^/?#]*")


def scrub(path: str) -> str:
    """A request path fit for a log: no query string, no reconnect token."""
    return _TOKEN_IN_PATH.sub(r"\1<token>", path.split("?", 1)[0])


class ScrubCredentials(logging.Filter):
    """Rewrites every path-like argument of a log record (uvicorn formats access lines from ``record.args``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) and a.startswith("/") else a for a in record.args)
        return True


def logging_config(level: str = "info") -> dict:
    """uvicorn's own logging config, with the scrubbing filter on every handler and our loggers beside its."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"scrub_credentials": {"()": ScrubCredentials}}
    for handler in config["handlers"].values():
        handler["filters"] = ["scrub_credentials"]
    config["loggers"]["mx_pipeline"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config
