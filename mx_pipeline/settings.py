"""The one place that reads the environment.

Variables (all optional):
- ``MX_BASE_URL``, ``MX_CLIENT_ID``, ``MX_API_KEY``: the MX Platform API. With no client id and key set,
  everything points at the built-in sandbox (``mx-pipeline sandbox``) and its default credentials.
- ``MX_SANDBOX_HOST``, ``MX_SANDBOX_PORT``: where the built-in sandbox listens (127.0.0.1:8765).
- ``MX_PIPELINE_DATA_DIR``: run-time state (warehouse, spool, Dagster home); defaults to ``./data``.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 8765


@dataclass(frozen=True)
class MxSettings:
    """Where the MX API is and how to authenticate. ``repr`` never shows the key."""

    base_url: str
    client_id: str
    api_key: str = field(repr=False)
    is_sandbox: bool

    @classmethod
    def from_env(cls) -> "MxSettings":
        client_id = os.environ.get("MX_CLIENT_ID", "")
        api_key = os.environ.get("MX_API_KEY", "")
        host = os.environ.get("MX_SANDBOX_HOST", SANDBOX_HOST)
        port = int(os.environ.get("MX_SANDBOX_PORT", SANDBOX_PORT))
        if bool(client_id) != bool(api_key):
            raise ValueError("MX_CLIENT_ID and MX_API_KEY must be set together (or both left unset for the sandbox)")
        if client_id:
            base_url = os.environ.get("MX_BASE_URL", "https://int-api.mx.com")
            return cls(base_url=base_url, client_id=client_id, api_key=api_key, is_sandbox=False)
        base_url = os.environ.get("MX_BASE_URL", f"http://{host}:{port}")
        return cls(base_url=base_url, client_id=SANDBOX_CLIENT_ID, api_key=SANDBOX_API_KEY, is_sandbox=True)


def data_dir() -> Path:
    """Run-time state directory (created on demand)."""
    path = Path(os.environ.get("MX_PIPELINE_DATA_DIR", "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path
