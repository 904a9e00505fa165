"""``voicebank serve`` on a shared library (issue 19): the start-up checks of the database and the bucket (one line,
exit 1), and two replicas on different loopback ports over one real PostgreSQL + SeaweedFS library: what one
changes, the other lists, serves and stops revalidating within a second."""

from __future__ import annotations

import io
import time
from urllib.parse import quote

import pytest

import cluster_fixtures
from faults import build_library, clip
from replica_helpers import Replica, until
from service_helpers import wav_bytes

pytestmark = pytest.mark.usefixtures("shared_env")


def serve(capsys, blobs: str, catalogue: str, *args: object) -> tuple[int, str]:
    from voicebank.cli import main

    capsys.readouterr()
    try:
        rc = main(["--blobs", blobs, "serve", "--port", "0", "--library", catalogue, *map(str, args)])
    except SystemExit as e:
        pytest.fail(f"serve raised SystemExit({e.code}) instead of one error line: {capsys.readouterr().err}")
    return rc, capsys.readouterr().err


def one_line(rc: int, err: str, *needles: str) -> str:
    assert rc == 1, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voicebank: error: "), err
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])
    return lines[0]


# --- start-up -------------------------------------------------------------------------------------------


def test_a_shared_library_without_keys_is_served_on_loopback_only(shared_location, capsys, golden_weights_dir):
    rc, err = serve(capsys, shared_location.blobs, shared_location.catalogue, "--weights", golden_weights_dir,
                    "--host", "0.0.0.0")
    one_line(rc, err, "refusing to bind 0.0.0.0", "no API keys exist", "voicebank keys create")


PREFLIGHT = {
    "database down": ["cannot reach the library catalogue", "database server"],
    "unknown database user": ["nobody", "check the user, the password"],
    "missing bucket": ["does not exist"],
    "wrong S3 secret": ["access denied", "AWS_SECRET_ACCESS_KEY"],
    "object store down": ["cannot be reached"],
}
"""Each way a shared library's servers can be wrong, and what its one line says."""


def broken(case: str, loc, monkeypatch) -> tuple[str, str]:
    """``(catalogue, blobs)`` of ``loc`` broken as ``case`` says (the environment too)."""
    (closed,) = cluster_fixtures.free_ports(1)
    host_port = loc.catalogue.split("@")[1].split("/")[0]
    if case == "database down":
        return loc.catalogue.replace(host_port, f"127.0.0.1:{closed}").replace("postgres@", "postgres:sekrit@"), \
            loc.blobs
    if case == "unknown database user":
        return loc.catalogue.replace("postgres@", "nobody:sekrit@"), loc.blobs
    if case == "missing bucket":
        return loc.catalogue, "s3://no-such-bucket/library"
    if case == "wrong S3 secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    if case == "object store down":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    return loc.catalogue, loc.blobs


@pytest.mark.parametrize("case", list(PREFLIGHT))
def test_serve_checks_the_database_and_the_bucket_before_it_starts(case, shared_location, capsys, tmp_path,
                                                                   golden_weights_dir, monkeypatch):
    catalogue, blobs = broken(case, shared_location, monkeypatch)
    t0 = time.monotonic()
    rc, err = serve(capsys, blobs, catalogue, "--weights", golden_weights_dir, "--keys-file", tmp_path / "k.json")
    line = one_line(rc, err, *PREFLIGHT[case])
    assert "sekrit" not in line  # a password in the URL is never shown
    assert time.monotonic() - t0 < 30


# --- two replicas -----------------------------------------------------------------------------------------


@pytest.fixture
def replicas(shared_location, golden_weights_dir, tmp_path):
    """Two replicas over one shared library holding alice and bob (audio mode) and carol (conditionals)."""
    build_library(shared_location.catalogue, blobs=shared_location.blobs)
    pair = [Replica(shared_location.catalogue, shared_location.blobs, golden_weights_dir, tmp_path / name,
                    keys_file=tmp_path / "keys.json") for name in ("a", "b")]
    try:
        yield [r.wait_ready() for r in pair]
    finally:
        for r in pair:
            r.stop()


def test_two_replicas_see_each_others_changes_within_a_second(replicas):
    a, b = replicas
    with a.client() as ca, b.client() as cb:
        # b serves carol and remembers her ETag: the second and third revalidations are answered 304
        first = cb.get("/v1/audio/voices/carol/conditionals")
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert ca.get("/v1/audio/voices/carol/conditionals").headers["etag"] == etag  # same bytes on both
        for _ in range(3):
            assert cb.get("/v1/audio/voices/carol/conditionals", headers={"If-None-Match": etag}).status_code == 304

        # an upload through a: listed and served by b within a second
        payload = wav_bytes(clip(7, seconds=3.0).samples, 16000)
        r = ca.post("/v1/audio/voices", files={"audio_sample": ("dave.wav", payload)},
                    data={"name": "dave", "consent": "test", "force": "true"})
        assert r.status_code == 201, r.text
        _, seen = until(lambda: cb.get("/v1/audio/voices/dave").status_code == 200)
        assert seen < 1.0, seen
        listed = cb.get("/v1/audio/voices")
        assert listed.status_code == 200, listed.text
        assert "dave" in [v["id"] for v in listed.json()["data"]]
        assert cb.get("/v1/audio/voices/dave/audio").content == ca.get("/v1/audio/voices/dave/audio").content

        # a rename through a: b's 304 for the old name stops within a second (then 404), the new name serves
        assert ca.patch("/v1/audio/voices/carol", json={"name": "carla"}).status_code == 200
        _, gone = until(lambda: cb.get("/v1/audio/voices/carol/conditionals",
                                       headers={"If-None-Match": etag}).status_code == 404)
        assert gone < 1.0, gone
        renamed = cb.get("/v1/audio/voices/carla/conditionals", headers={"If-None-Match": etag})
        assert renamed.status_code == 304
        assert cb.get("/v1/audio/voices/carla/conditionals").content == first.content

        # a delete through a: b stops answering for the voice within a second
        for _ in range(3):
            assert cb.get("/v1/audio/voices/carla/conditionals", headers={"If-None-Match": etag}).status_code == 304
        assert ca.delete("/v1/audio/voices/carla").status_code == 200
        _, gone = until(lambda: cb.get("/v1/audio/voices/carla/conditionals",
                                       headers={"If-None-Match": etag}).status_code == 404)
        assert gone < 1.0, gone
        print(f"\nupload seen by the other replica in {seen:.3f} s; its 304 stopped {gone:.3f} s after a delete")
        names = [v["id"] for v in cb.get("/v1/audio/voices").json()["data"]]
        assert names == ["alice", "bob", "dave"]
        assert cb.get(f"/v1/audio/voices/{quote('alice')}/audio").status_code == 200
        assert ca.get("/readyz").json()["library_writable"] is True
        assert io.BytesIO(cb.get("/v1/audio/voices/alice/audio").content).read(4) == b"RIFF"
