"""A real PostgreSQL server for the tests, from Debian's ``postgresql`` package (``.ci/run`` installs it).

The fixture starts its own server, on its own data directory and loopback port, and stops it afterwards: a server
already running on this machine is never used. Without the package the tests that need it are skipped, except in
CI (``MX_PIPELINE_REQUIRE_POSTGRES``), where a skip would hide a broken production profile.
"""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from mx_pipeline_tests.local_http import free_port

USER = "mx_pipeline"
SERVER_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # a test server: speed, not crashes
STARTS = 3  # a free port taken by another process between the look-up and the start: try another


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int

    def create_database(self) -> str:
        """A new, empty database: each test its own."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with contextlib.closing(self.connect("postgres")) as con:
            con.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            con.cursor().execute(f"create database {name}")
        return name

    def connect(self, database: str):
        return psycopg2.connect(host=self.host, port=self.port, user=USER, dbname=database)

    def query(self, database: str, sql: str, *params) -> list[tuple]:
        with contextlib.closing(self.connect(database)) as con, con.cursor() as cursor:
            cursor.execute(sql, params or None)  # no parameters: a literal % stays one
            return cursor.fetchall()

    def execute(self, database: str, sql: str) -> None:
        with contextlib.closing(self.connect(database)) as con:
            con.autocommit = True
            con.cursor().execute(sql)

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}"

    def environment(self, database: str) -> dict[str, str]:
        """The variables the production instance reads its Postgres from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": USER,
            "DAGSTER_PG_DB": database,
        }


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    bin_dir = _bin_dir()
    # Not pytest's tmp_path: as root the server runs as ``postgres``, who cannot enter root's 0700 temp tree.
    directory = Path(tempfile.mkdtemp(prefix="mx-pg-", dir="/tmp"))
    data, log = directory / "data", directory / "server.log"
    try:
        _as_server_user(directory)
        _run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8", "--no-instructions")
        port = _start(bin_dir, data, log, directory)
        try:
            yield Postgres("127.0.0.1", port)
        finally:
            _run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start(bin_dir: Path, data: Path, log: Path, socket_dir: Path) -> int:
    for attempt in range(1, STARTS + 1):
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} {SERVER_SETTINGS}"
        try:
            _run(bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start")
            return port
        except subprocess.CalledProcessError:
            if attempt == STARTS:
                raise AssertionError(f"PostgreSQL did not start; its log:\n{log.read_text(errors='replace')}") from None
    raise AssertionError("unreachable")


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        reason = "PostgreSQL (Debian's postgresql package) is needed for the production-instance tests"
        if os.environ.get("MX_PIPELINE_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found[-1]).parent


def _server_user() -> list[str]:
    """initdb and postgres refuse to run as root: as root they run as Debian's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _as_server_user(directory: Path) -> None:
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)


def _run(*command) -> None:
    subprocess.run([*_server_user(), *map(str, command)], check=True, capture_output=True, timeout=120)
