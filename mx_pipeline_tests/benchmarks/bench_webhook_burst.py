"""Benchmark: a burst of webhooks -> model builds triggered and writer time, before vs after, in one run.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python mx_pipeline_tests/benchmarks/bench_webhook_burst.py --webhooks 100 --ticks 10 --users 20

Against the in-process sandbox, ``--users`` users with one connected member each are ingested in full (users
registered, marts built). Then ``--webhooks`` MX webhooks about their members arrive spread over ``--ticks`` ticks
of ``connect_events``, each tick launching its ``sync_members`` run, executed as the sensor asked. Two shapes, each
on a fresh warehouse:

- before: ``sync_members`` as it was, the SQL models in every run (every run rebuilds and republishes the marts);
- after: ``sync_members`` without the models; ``models_after_sync`` ticks after every sync run on a simulated
  clock (10 s apart), then once its delay has passed, and each build it asks for is run.

Printed per shape: sync runs, model builds, and the writer time: the seconds steps held the ``duckdb_warehouse``
pool (every step that writes the warehouse; only one holds it at a time), summed over every run of the burst.
"""

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import dagster as dg
import requests

from mx_pipeline import definitions, settings
from mx_pipeline.connect.spool import Spool
from mx_pipeline.defs.ingest.group import POOL
from mx_pipeline.defs.jobs import AFTER_REGISTRATION, MODELS
from mx_pipeline.defs.lifecycle import sensors as event_sensors
from mx_pipeline.defs.models import sensors as model_sensors
from mx_pipeline.defs.resources import ConnectLinksResource, MxResource, WarehouseResource
from mx_pipeline.mx import MxClient
from mx_pipeline.sandbox.server import running_sandbox

LOCATION = definitions.defs()
EVERYTHING = [*LOCATION.assets, *LOCATION.asset_checks]
OLD_SYNC = AFTER_REGISTRATION | MODELS  # sync_members before: the models group in every run
TICK = dt.timedelta(seconds=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=10, help="connect_events ticks the burst is spread over")
    parser.add_argument("--users", type=int, default=20, help="users, one connected member each")
    args = parser.parse_args()
    with running_sandbox(seed=7) as sandbox, tempfile.TemporaryDirectory() as tmp:
        members = _connect(sandbox.base_url, args.users)
        print(f"{args.webhooks} webhooks over {args.ticks} event ticks {TICK.seconds} s apart, {args.users} users x 1"
              f" member; models delay {settings.models_delay_seconds()} s")  # fmt: skip
        figures = {
            shape: _burst(sandbox.base_url, Path(tmp) / shape, members, args, shape) for shape in ("before", "after")
        }
    before, after = figures["before"], figures["after"]
    for shape, f in figures.items():
        print(f"{shape:>6}: {f['sync_runs']} sync runs, {f['builds']} model builds, writer time {f['writer']:.1f} s"
              f" (of which model builds {f['models']:.1f} s), wall {f['wall']:.1f} s")  # fmt: skip
    print(f"model builds: {before['builds']} -> {after['builds']};"
          f" writer time after/before: {after['writer'] / before['writer']:.2f}x")  # fmt: skip


def _connect(base_url: str, users: int) -> list[tuple[str, str, str]]:
    """(our user id, user guid, member guid) for each user, connected like an end user would."""
    client = MxClient(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY)
    fields = {c.field_name: c.guid for c in client.list_institution_credentials("mxbank")}
    connected = []
    for n in range(users):
        user = client.ensure_user(id=f"burst-user-{n}")
        credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "password"}
        member = client.create_member(user.guid, institution_code="mxbank", credentials=credentials)
        connected.append((f"burst-user-{n}", user.guid, member.guid))
    requests.post(f"{base_url}/_sandbox/aggregations/finish", timeout=10).raise_for_status()
    client.close()
    return connected


def _burst(base_url: str, home: Path, members: list, args, shape: str) -> dict:
    home.mkdir(parents=True)
    os.environ["MX_PIPELINE_DATA_DIR"] = str(home)  # the spool the sensor drains
    users_csv = home / "users.csv"
    users_csv.write_text("id\n" + "\n".join(user_id for user_id, _, _ in members) + "\n")
    resources = {
        **LOCATION.resources,
        "mx": MxResource(base_url=base_url, client_id=settings.SANDBOX_CLIENT_ID, api_key=settings.SANDBOX_API_KEY,
                         per_member_interval=0.0),
        "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
        "connect_links": ConnectLinksResource(public_url="https://connect.example.com",
                                              store_path=str(home / "links.sqlite")),
    }  # fmt: skip
    clock = _Clock()
    model_sensors._now = clock  # the models sensor judges its delay on this clock, never the wall's
    spool = Spool(settings.spool_dir())
    with dg.instance_for_test() as instance:
        dg.materialize(EVERYTHING, resources=resources, instance=instance,
                       run_config={"ops": {"raw__mx_users": {"config": {"users_csv": str(users_csv)}}}})  # fmt: skip
        started, cursor, models_cursor, runs = time.perf_counter(), None, None, []
        per_tick = -(-args.webhooks // args.ticks)
        for n in range(args.webhooks):
            _, user_guid, member_guid = members[n % len(members)]
            body = {"type": "AGGREGATION", "action": "member_data_updated", "user_guid": user_guid,
                    "member_guid": member_guid, "completed_at": 1764072000 + n}  # fmt: skip
            spool.append("mx_webhook", f"burst-{n}", json.dumps(body))
            if (n + 1) % per_tick and n + 1 < args.webhooks:
                continue
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            result = event_sensors.connect_events(context)
            if isinstance(result, dg.SkipReason):
                continue
            cursor = result.cursor
            for run in result.run_requests:
                selection = OLD_SYNC if shape == "before" else AFTER_REGISTRATION
                runs.append(dg.materialize(EVERYTHING, selection=selection, resources=resources, instance=instance,
                                           run_config=run.run_config, raise_on_error=False,
                                           tags={**run.tags, "dagster/run_key": run.run_key}))  # fmt: skip
            if shape == "after":
                models_cursor = _models_tick(instance, models_cursor, resources, runs)
            clock.now += TICK
        sync_runs = len(runs)
        if shape == "after":
            clock.now += dt.timedelta(seconds=settings.models_delay_seconds())
            _models_tick(instance, models_cursor, resources, runs)
        wall = time.perf_counter() - started
        writer, models = _writer_seconds(instance, runs)
    builds = sum(1 for r in runs if "sql_models" in {n.name for n in r.job_def.graph.node_defs})
    return {"sync_runs": sync_runs, "builds": builds, "writer": writer, "models": models, "wall": wall}


def _models_tick(instance, cursor, resources, runs) -> str | None:
    """One tick of ``models_after_sync``; each build it asks for is run (a burst longer than the delay gets one
    build per delay: builds are never closer together than that)."""
    result = model_sensors.models_after_sync(dg.build_sensor_context(instance=instance, cursor=cursor))
    if isinstance(result, dg.SkipReason):
        return cursor
    for run in result.run_requests or []:
        runs.append(dg.materialize(EVERYTHING, selection=MODELS, resources=resources, instance=instance,
                                   tags={**run.tags, "dagster/run_key": run.run_key}))  # fmt: skip
    return result.cursor or cursor


def _writer_seconds(instance: dg.DagsterInstance, runs: list) -> tuple[float, float]:
    """Seconds steps held the warehouse pool over these runs, and of those the model builds' (sql_models)."""
    writer = models = 0.0
    for run in runs:
        pooled = {op.name for op in run.job_def.graph.iterate_op_defs() if op.pool == POOL}
        for stats in instance.get_run_step_stats(run.run_id):
            if stats.step_key.rsplit(".", 1)[-1] in pooled and stats.end_time and stats.start_time:
                seconds = stats.end_time - stats.start_time
                writer += seconds
                models += seconds if stats.step_key == "sql_models" else 0.0
    return writer, models


class _Clock:
    def __init__(self):
        self.now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


if __name__ == "__main__":
    main()
