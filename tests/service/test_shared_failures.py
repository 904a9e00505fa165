"""Failures of a shared library's servers, seen through ``voicebank serve`` (issue 19): the database going down
(reads answer 503 with ``Retry-After`` at once, and the replica recovers by itself when the database is back)
and an object missing from the bucket (that voice answers 500 ``voice_content_missing``, the others are served)."""

from __future__ import annotations

import time

import pytest

from voicebank.library import Library

from cluster_fixtures import SharedLocation, postgres_cluster, restart_postgres, stop_postgres
from faults import build_library
from replica_helpers import Replica, until

pytestmark = pytest.mark.usefixtures("shared_env")


def test_database_down_is_503_with_retry_after_and_the_replica_recovers_without_a_restart(
        s3_bucket, golden_weights_dir, tmp_path):
    with postgres_cluster() as pg:  # a cluster of this test's own: it is stopped and started again
        pg.execute("CREATE DATABASE voices TEMPLATE template0")
        location = SharedLocation(pg.url("voices"), s3_bucket)
        build_library(location.catalogue, blobs=location.blobs)
        replica = Replica(location.catalogue, location.blobs, golden_weights_dir, tmp_path / "a").wait_ready()
        running = pg.process
        try:
            with replica.client() as c:
                etag = c.get("/v1/audio/voices/carol/conditionals").headers["etag"]
                assert c.get("/v1/audio/voices/carol/conditionals",
                             headers={"If-None-Match": etag}).status_code == 304

                stop_postgres(running)
                t0 = time.monotonic()
                for path in ("/v1/audio/voices", "/v1/audio/voices/alice", "/v1/audio/voices/carol/conditionals",
                             "/v1/audio/count"):
                    r = c.get(path, headers={"If-None-Match": etag})
                    assert r.status_code == 503, (path, r.status_code, r.text)
                    assert r.headers["retry-after"] == "2"
                    error = r.json()["error"]
                    assert error["code"] == "library_unavailable", error
                    assert "postgresql://" not in error["message"]  # the database's URL stays in the log
                assert time.monotonic() - t0 < 5  # answered at once, not after a connection timeout
                ready = c.get("/readyz")
                assert ready.status_code == 503 and ready.json()["library_writable"] is False
                assert c.get("/healthz").status_code == 200

                running = restart_postgres(pg, running)
                t1 = time.monotonic()
                _, back = until(lambda: c.get("/v1/audio/voices").status_code == 200, timeout=15)
                assert back < 5, back
                assert [v["id"] for v in c.get("/v1/audio/voices").json()["data"]] == ["alice", "bob", "carol"]
                assert c.get("/v1/audio/voices/carol/conditionals",
                             headers={"If-None-Match": etag}).status_code == 304
                assert c.get("/readyz").status_code == 200
                assert c.delete("/v1/audio/voices/bob").status_code == 200  # writes work again too
                log = replica.log.read_text()
                assert "cannot be reached" in log and "answers again" in log
                print(f"\n503 within {t1 - t0:.2f} s of the stop; recovered {back:.2f} s after the restart")
        finally:
            replica.stop()
            stop_postgres(running)


def test_an_object_missing_from_the_bucket_fails_that_voice_only(shared_location, s3_server, golden_weights_dir,
                                                                 tmp_path):
    build_library(shared_location.catalogue, blobs=shared_location.blobs)
    with Library(shared_location.catalogue, blobs=shared_location.blobs) as lib:
        store = lib.store
        carol = next(f for f in lib.show("carol").files)
        alice = next(f for f in lib.show("alice").files if f.role == "audio")
        bucket = store.blobs.bucket  # type: ignore[attr-defined]
        for f in (carol, alice):  # deleted behind the library's back
            s3_server.client().delete_object(Bucket=bucket, Key=store.blobs.key(f.sha256, f.path.suffix))  # type: ignore[attr-defined]
    replica = Replica(shared_location.catalogue, shared_location.blobs, golden_weights_dir, tmp_path / "a")
    try:
        with replica.wait_ready().client() as c:
            for path in ("/v1/audio/voices/carol/conditionals", "/v1/audio/voices/alice/audio"):
                r = c.get(path)
                assert r.status_code == 500, (path, r.text)
                error = r.json()["error"]
                assert error["code"] == "voice_content_missing", error
                assert "is missing" in error["message"] and "s3://" in error["message"]
            assert c.get("/v1/audio/voices/bob/audio").status_code == 200
            assert c.get("/v1/audio/voices/carol").status_code == 200  # the catalogue's view is still there
            assert [v["id"] for v in c.get("/v1/audio/voices").json()["data"]] == ["alice", "bob", "carol"]
    finally:
        replica.stop()
