"""``mx-pipeline``: the project's command line.

mx-pipeline sandbox [--host H] [--port P] [--seed N] [--latency-ms N] [--fault-rate R] [--webhook-url U]
                    [--server-error-rate R] [--rate-limited-rate R] [--truncated-json-rate R] [--invalid-json-rate R]
                    [--server-error-after-write-rate R] [--fault-retry-after S]
mx-pipeline serve [--host H] [--port P]
mx-pipeline dev
mx-pipeline demo
mx-pipeline offboard-user USER_ID
mx-pipeline report [--analytics FILE] [--output FILE]
mx-pipeline instance {local,production} [--home DIR]
"""

import argparse
import logging
import sys
from pathlib import Path

from mx_pipeline import settings

MISCONFIGURED = 2  # the exit code when the environment is wrong (a variable, or credentials MX refuses)


def _sandbox(args: argparse.Namespace) -> int:
    from mx_pipeline.sandbox.faults import FAULT_KINDS
    from mx_pipeline.sandbox.server import serve

    configured = settings.SandboxSettings.from_env()
    serve(
        args.host or configured.host,
        args.port or configured.port,
        seed=args.seed,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_retry_after_seconds=args.fault_retry_after,
        **{f"{kind}_rate": getattr(args, f"{kind}_rate") for kind in FAULT_KINDS},
        client_id=configured.client_id,
        api_key=configured.api_key,
        webhook_url=args.webhook_url or configured.webhook_url,
        webhook_username=configured.webhook_username,
        webhook_password=configured.webhook_password,
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from mx_pipeline import sandbox_session
    from mx_pipeline.connect.server import serve

    sandbox_session.refuse_on_mx()  # MX's links and events must never land where a sandbox session starts afresh
    serve(args.host, args.port)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from mx_pipeline.dev import run_dev

    return run_dev()


def _demo(args: argparse.Namespace) -> int:
    from mx_pipeline.demo import run_demo

    return run_demo()


def _offboard_user(args: argparse.Namespace) -> int:
    import datetime as dt

    from mx_pipeline.mx import MxClient
    from mx_pipeline.warehouse import Warehouse
    from mx_pipeline.warehouse.retire import offboard_user

    warehouse = Warehouse(args.warehouse or settings.warehouse_path())
    with MxClient.from_settings(settings.MxSettings.from_env()) as mx:
        try:
            guids = offboard_user(
                warehouse, args.user_id, mx.delete_user, run_id="cli:offboard-user", now=dt.datetime.now(dt.UTC)
            )
        except LookupError as exc:
            print(f"offboard-user: {exc}", file=sys.stderr)
            return 1
    print(f"{args.user_id}: deleted at MX and retired here ({', '.join(guids) or 'never registered with MX'})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mx_pipeline.report import write_report

    analytics = args.analytics or settings.warehouse_path().with_name("analytics.duckdb")  # as the models publish
    output = args.output or settings.data_dir() / "report.html"
    marts = write_report(analytics, output)
    print(f"report: wrote {output}" + (f" (no data yet in {analytics})" if marts.is_empty else f" from {analytics}"))
    return 0


def _instance(args: argparse.Namespace) -> int:
    from dagster import DagsterInvalidConfigError

    from mx_pipeline import instance

    home = args.home or settings.dagster_home()
    if args.profile == "production":
        text = instance.rendered(instance.production_config(settings.ProductionInstanceSettings.from_env()))
    else:
        text = instance.LOCAL_CONFIG.read_text()  # as checked in, its comments with it
    try:
        written = instance.write_instance(home, text)
    except DagsterInvalidConfigError as exc:
        raise settings.ConfigError(f"Dagster refuses the {args.profile} instance: {exc}") from exc
    print(f"instance: wrote the {args.profile} instance to {written} (DAGSTER_HOME={home})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mx-pipeline", description="MX Platform API -> Dagster -> DuckDB.")
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="serve the built-in MX sandbox (a local MX Platform API)")
    sandbox.add_argument("--host", default=None, help="default: MX_SANDBOX_HOST or 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=None, help="default: MX_SANDBOX_PORT or 8765")
    sandbox.add_argument("--webhook-url", default=None, help="default: MX_SANDBOX_WEBHOOK_URL (unset: no webhooks)")
    sandbox.add_argument("--seed", type=int, default=0, help="deterministic data and behaviour")
    sandbox.add_argument("--latency-ms", type=int, default=0, help="added to every response")
    sandbox.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail (0..1)")
    from mx_pipeline.sandbox.faults import FAULT_KINDS  # each kind at its own rate, on top of --fault-rate

    for kind in FAULT_KINDS:
        flag = kind.replace("_", "-")
        sandbox.add_argument(f"--{flag}-rate", type=float, default=0.0, help=f"share of requests given {flag} (0..1)")
    sandbox.add_argument("--fault-retry-after", type=float, default=1.0, help="Retry-After of an injected 429 (s)")
    sandbox.set_defaults(run=_sandbox)

    serve = commands.add_parser("serve", help="serve the connect service (widget URLs, Connect callback, MX webhooks)")
    serve.add_argument("--host", default=None, help="default: MX_PIPELINE_CONNECT_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: MX_PIPELINE_CONNECT_PORT or 8780")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="run the pipeline end to end (on the sandbox without MX credentials)")
    demo.set_defaults(run=_demo)

    offboard = commands.add_parser(
        "offboard-user", help="delete one of our end users at MX and retire it here (never registered again)"
    )
    offboard.add_argument("user_id", help="our end user's id (ops.end_users.id, MX's user `id`)")
    offboard.add_argument("--warehouse", default=None, help="default: warehouse.duckdb under MX_PIPELINE_DATA_DIR")
    offboard.set_defaults(run=_offboard_user)

    report = commands.add_parser("report", help="write an HTML report (charts) of the analysts' marts, offline")
    report.add_argument("--analytics", default=None, help="default: analytics.duckdb under MX_PIPELINE_DATA_DIR")
    report.add_argument("--output", default=None, help="default: report.html under MX_PIPELINE_DATA_DIR")
    report.set_defaults(run=_report)

    instance = commands.add_parser("instance", help="write a Dagster instance (dagster.yaml) into a Dagster home")
    instance.add_argument("profile", choices=("local", "production"), help="production: Postgres, run limits")
    instance.add_argument("--home", type=Path, default=None, help="default: dagster_home under MX_PIPELINE_DATA_DIR")
    instance.set_defaults(run=_instance)

    dev = commands.add_parser("dev", help="sandbox (unless MX is configured) + connect service + dg dev, on data")
    dev.set_defaults(run=_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings.keep_files_private()
    # Our own loggers speak at INFO; libraries (alembic migrating Dagster's ephemeral instances, ...) only warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mx_pipeline").setLevel(logging.INFO)
    from mx_pipeline.mx import AuthError

    try:
        return args.run(args)
    except settings.ConfigError as exc:
        return _misconfigured(exc)
    except AuthError as exc:  # MX refused the credentials: also the environment's to fix, not a crash
        return _misconfigured(exc)


def _misconfigured(exc: Exception) -> int:
    """One line saying what to set (no traceback); exit 2, argparse's code for being called wrongly."""
    print(f"mx-pipeline: {exc}", file=sys.stderr)
    return MISCONFIGURED


if __name__ == "__main__":
    sys.exit(main())
