"""``mx-pipeline serve``: the connect service, configured from the environment."""

import dataclasses

import uvicorn

from mx_pipeline import settings
from mx_pipeline.connect.access_log import logging_config
from mx_pipeline.connect.app import MAX_REQUEST_HEAD_BYTES, ConnectService, create_app
from mx_pipeline.connect.links import Links
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.mx import MxClient, RateLimiter, RateLimits


def _limiter() -> RateLimiter:
    """The service's pacing: it spends the MX budget every worker shares, when one is configured."""
    return RateLimiter.spending(RateLimits(), settings.rate_budget_url())


def build_app(mx: MxClient | None = None, connect: settings.ConnectSettings | None = None):
    """The ASGI app wired to MX (or the sandbox) and to the spool under the data directory."""
    connect = connect or settings.ConnectSettings.from_env()
    mx = mx or MxClient.from_settings(settings.MxSettings.from_env(), limiter=_limiter())
    spool = Spool(settings.spool_dir())
    links = Links.at(connect.link_secret, settings.link_store_path())
    service = ConnectService(mx, spool, links, connect.public_url, connect.api_token)
    webhooks = WebhookReceiver(spool, connect.webhook_username, connect.webhook_password)
    return create_app(service, webhooks, redirect_origins=connect.redirect_origins)


def serve(host: str | None = None, port: int | None = None) -> None:
    """Listen until stopped; refuses (``ExposedWithoutToken``) to open an unguarded /v1 API beyond loopback."""
    connect = settings.ConnectSettings.from_env()
    connect = dataclasses.replace(connect, host=host or connect.host, port=port or connect.port)
    problem = connect.exposure_problem()
    if problem:
        raise ExposedWithoutToken(problem)
    uvicorn.run(
        build_app(connect=connect),
        host=connect.host,
        port=connect.port,
        log_config=logging_config(),
        http="h11",  # not httptools, which buffers a request line and headers of any size; h11 refuses a huge one
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )


class ExposedWithoutToken(SystemExit):
    """The service would be reachable by others with an open or guessable /v1 API: it does not start."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"mx-pipeline serve: {problem}")
