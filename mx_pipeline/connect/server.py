"""``mx-pipeline serve``: the connect service, configured from the environment."""

import uvicorn

from mx_pipeline import settings
from mx_pipeline.connect.app import ConnectService, create_app
from mx_pipeline.connect.links import LinkSigner
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.mx import MxClient


def build_app(mx: MxClient | None = None, connect: settings.ConnectSettings | None = None):
    """The ASGI app wired to MX (or the sandbox) and to the spool under the data directory."""
    connect = connect or settings.ConnectSettings.from_env()
    mx = mx or MxClient.from_settings(settings.MxSettings.from_env())
    spool = Spool(settings.spool_dir())
    service = ConnectService(mx, spool, LinkSigner(connect.link_secret), connect.public_url, connect.api_token)
    return create_app(service, WebhookReceiver(spool, connect.webhook_username, connect.webhook_password))


def serve(host: str | None = None, port: int | None = None) -> None:
    connect = settings.ConnectSettings.from_env()
    uvicorn.run(build_app(connect=connect), host=host or connect.host, port=port or connect.port, log_level="info")
