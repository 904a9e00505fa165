"""API keys of a shared library (issue 19): kept in its PostgreSQL catalogue, so that every replica checks the
same keys without a file to share; a key created or revoked from any host is accepted or refused by every
replica within a second.  Real PostgreSQL and SeaweedFS from cluster_fixtures, replicas as subprocesses."""

from __future__ import annotations

import json

import psycopg
import pytest

from faults import assert_one_line_error, build_library, run_cli
from replica_helpers import Replica, until

pytestmark = pytest.mark.usefixtures("shared_env")


def keys(capsys, catalogue: str, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, ["keys", *args, "--library", catalogue])


def create(capsys, catalogue: str, name: str, scope: str = "read-write") -> str:
    rc, out, err = keys(capsys, catalogue, "create", name, "--scope", scope)
    assert rc == 0, err
    (key,) = [w for w in out.split() if w.startswith("vbk_")]
    return key


def status(replica: Replica, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with replica.client() as c:
        return c.get("/v1/audio/voices", headers=headers).status_code


def test_every_replica_checks_the_keys_kept_in_the_catalogue(shared_location, golden_weights_dir, tmp_path, capsys):
    catalogue = shared_location.catalogue
    build_library(catalogue, blobs=shared_location.blobs)
    first = create(capsys, catalogue, "ops")
    rc, out, _err = keys(capsys, catalogue, "list", "--json")
    listed = json.loads(out)
    assert rc == 0 and [k["name"] for k in listed] == ["ops"] and listed[0]["active"]
    with psycopg.connect(catalogue) as conn:  # only the hash is stored, never the secret
        (stored,) = conn.execute("SELECT sha256 FROM voicebank_service_keys").fetchone()
    assert len(stored) == 64 and stored not in first

    pair = [Replica(catalogue, shared_location.blobs, golden_weights_dir, tmp_path / name, keys_file=False)
            for name in ("a", "b")]
    try:
        a, b = (r.wait_ready() for r in pair)
        for r in (a, b):
            assert status(r, None) == 401 and status(r, first) == 200
            assert status(r, first[:-1] + ("A" if first[-1] != "A" else "B")) == 401
        # a key made while they run, from another process: both take it; revoked: both refuse it
        second = create(capsys, catalogue, "tts", "read")
        for r in (a, b):
            _, seconds = until(lambda r=r: status(r, second) == 200, timeout=5)
            assert seconds < 1.0, seconds
        second_id = second.split("_")[1]
        rc, _out, err = keys(capsys, catalogue, "revoke", second_id)
        assert rc == 0, err
        for r in (a, b):
            _, seconds = until(lambda r=r: status(r, second) == 401, timeout=5)
            assert seconds < 1.0, seconds
            assert status(r, first) == 200
    finally:
        for r in pair:
            r.stop()
    assert not list(tmp_path.rglob("service-keys.json"))  # no file anywhere: the keys are the catalogue's
    with shared_location_library(shared_location) as lib:  # the keys' table is not the library's problem
        assert lib.check().ok


def shared_location_library(loc):
    from voicebank.library import Library

    return Library(loc.catalogue, blobs=loc.blobs)


def test_keys_of_an_unreachable_catalogue_are_one_line(shared_location, capsys):
    host_port = shared_location.catalogue.split("@")[1].split("/")[0]
    import cluster_fixtures

    (closed,) = cluster_fixtures.free_ports(1)
    down = shared_location.catalogue.replace(host_port, f"127.0.0.1:{closed}")
    for args in (["list"], ["create", "ops"], ["revoke", "0123abcd"]):
        rc, _out, err = keys(capsys, down, *args)
        assert_one_line_error(rc, err, "cannot reach the library catalogue", "database server")


def test_a_key_id_unknown_to_the_catalogue_is_refused(shared_location, capsys):
    create(capsys, shared_location.catalogue, "ops")
    rc, _out, err = keys(capsys, shared_location.catalogue, "revoke", "ffffffff")
    assert_one_line_error(rc, err, "no API key with id 'ffffffff'", "voicebank keys list")
