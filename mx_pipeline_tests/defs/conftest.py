"""Fixtures for the code location: an in-process sandbox with connected members, and resources bound to it."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests

from mx_pipeline import definitions, settings
from mx_pipeline.defs.jobs import AFTER_REGISTRATION
from mx_pipeline.defs.resources import ConnectLinksResource, MxResource, WarehouseResource
from mx_pipeline.mx import MxClient
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse import Warehouse, tables

LOCATION = definitions.defs()
INGEST = [*LOCATION.assets, *LOCATION.asset_checks]
# A run that lists no member lists: the one kind that reads every status from MX (test_status_from_lists.py).
WITHOUT_THE_MEMBER_LISTS = AFTER_REGISTRATION - dg.AssetSelection.assets(tables.MEMBERS.key_path)

CONNECT_URL = "https://connect.example.com"  # where reconnect links point (the connect service, as users see it)

# MX Bank test passwords: what each connection ends in.
CONNECTIONS = {"user-ok-1": "password", "user-ok-2": "password", "user-mfa": "challenge", "user-denied": "UNAUTHORIZED"}


@dataclass
class Pipeline:
    """The sandbox, a client to drive it like an end user would, and a way to run the ingest assets."""

    sandbox: object
    client: MxClient
    warehouse: Warehouse
    users_csv: Path
    member_of: dict[str, str]  # our user id -> member guid

    def resources(self, **overrides) -> dict:
        """The code location's resources, bound to this sandbox and warehouse; ``overrides`` replace any."""
        return {
            **LOCATION.resources,
            "mx": MxResource(
                base_url=self.sandbox.base_url,
                client_id=settings.SANDBOX_CLIENT_ID,
                api_key=settings.SANDBOX_API_KEY,
                per_member_interval=0.0,
            ),
            "warehouse": self.warehouse_resource,
            "connect_links": ConnectLinksResource(public_url=CONNECT_URL, store_path=str(self.link_store_path)),
            **overrides,
        }

    def materialize(
        self, *, ops: dict | None = None, tags: dict | None = None, raise_on_error: bool = True, **resources
    ) -> dg.ExecuteInProcessResult:
        """Every asset of the code location; ``ops`` adds op config, ``resources`` replaces resources."""
        run_config = {"ops": {"raw__mx_users": {"config": {"users_csv": str(self.users_csv)}}, **(ops or {})}}
        return dg.materialize(
            INGEST, resources=self.resources(**resources), run_config=run_config, tags=tags,
            raise_on_error=raise_on_error,
        )  # fmt: skip

    @property
    def link_store_path(self) -> Path:
        return self.warehouse.path.parent / "links.sqlite"

    @property
    def warehouse_resource(self) -> WarehouseResource:
        return WarehouseResource(path=str(self.warehouse.path))

    def member(self, user_id: str) -> tuple[str, str]:
        """(user guid, member guid) of one of the fixture's connections."""
        with self.sandbox.world.lock:
            member = self.sandbox.world.members[self.member_of[user_id]]
            return member.user_guid, member.guid

    def admin(self, path: str, **body) -> dict:
        response = requests.post(f"{self.sandbox.base_url}/_sandbox/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def query(self, sql: str, *params):
        with self.warehouse.connect() as con:
            return con.execute(sql, list(params)).fetchall()


def metadata_of(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Materialization metadata by table name (``raw.mx_transactions``), as plain values."""
    return {
        ".".join(e.asset_key.path): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture
def pipeline(tmp_path) -> Pipeline:
    """Users registered through the ingest itself (CSV), then members connected like an end user would."""
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id\n" + "\n".join(CONNECTIONS) + "\n")
    with running_sandbox(seed=7) as sandbox:
        client = MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY)
        fields = {c.field_name: c.guid for c in client.list_institution_credentials("mxbank")}
        member_of = {}
        for user_id, password in CONNECTIONS.items():
            user = client.ensure_user(id=user_id)
            credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}
            member_of[user_id] = client.create_member(
                user.guid, institution_code="mxbank", credentials=credentials
            ).guid
        requests.post(f"{sandbox.base_url}/_sandbox/aggregations/finish", timeout=10).raise_for_status()
        yield Pipeline(sandbox, client, Warehouse(tmp_path / "warehouse.duckdb"), users_csv, member_of)
        client.close()
