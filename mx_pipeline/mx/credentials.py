"""Whether MX accepts our credentials, asked once before a command changes anything."""

from mx_pipeline.mx.client import MxClient


def check_credentials(client: MxClient) -> None:
    """One cheap authenticated read (a user id nobody has): raises ``AuthError`` if MX refuses the credentials."""
    next(client.list_users(id="mx-pipeline-credentials-check"), None)
