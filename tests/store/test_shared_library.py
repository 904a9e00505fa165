"""A shared library through the public API and the command line: ``Library("postgresql://...", blobs="s3://...")``
and ``voicebank --blobs s3://... COMMAND --library postgresql://...`` (also $VOICEBANK_LIBRARY / $VOICEBANK_BLOBS),
two hosts' worth of libraries on one catalogue, and ``library check`` listing unreferenced objects and deleting them
only when asked (a real PostgreSQL and S3 server from cluster_fixtures)."""

from __future__ import annotations

import pytest

from voicebank.library import Library
from voicebank.store.shared import SharedVoiceStore

from faults import VOICE_FILE, FakeEngine, build_library, clip, run_cli


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)
    monkeypatch.delenv("VOICEBANK_BLOBS", raising=False)


def test_two_hosts_share_one_library(shared_location):
    one = Library(shared_location.catalogue, blobs=shared_location.blobs, engine=FakeEngine())
    two = Library(shared_location.catalogue, blobs=shared_location.blobs, engine=FakeEngine())
    assert isinstance(one.store, SharedVoiceStore) and "postgresql://" in str(one.path)
    one.add(clip(1), name="alice")
    two.import_file(VOICE_FILE, "carol")
    assert one.names() == two.names() == ["alice", "carol"]
    assert two.get("carol").to_bytes() == one.get("carol").to_bytes()
    two.rename("alice", "alicia")
    assert one.names() == ["alicia", "carol"]
    report = one.check()
    assert report.problems == () and report.voices == 2
    one.close()
    two.close()


def test_the_cli_reaches_a_shared_library_by_options_and_by_environment(shared_location, capsys, monkeypatch):
    build_library(shared_location.catalogue, blobs=shared_location.blobs)
    rc, out, _ = run_cli(capsys, ["--blobs", shared_location.blobs, "list", "--library", shared_location.catalogue])
    assert rc == 0 and all(n in out for n in ("alice", "bob", "carol"))
    monkeypatch.setenv("VOICEBANK_LIBRARY", shared_location.catalogue)
    monkeypatch.setenv("VOICEBANK_BLOBS", shared_location.blobs)
    rc, out, _ = run_cli(capsys, ["rm", "bob"])
    assert rc == 0
    rc, out, _ = run_cli(capsys, ["list"])
    assert rc == 0 and "bob" not in out and "alice" in out


def test_check_lists_unreferenced_objects_and_deletes_them_only_when_asked(shared_location, capsys, monkeypatch):
    build_library(shared_location.catalogue, blobs=shared_location.blobs)
    lib = Library(shared_location.catalogue, blobs=shared_location.blobs)
    stray, _ = lib.store.blobs.write(b"written by a writer that died before its row", ".wav")
    lib.close()
    monkeypatch.setenv("VOICEBANK_LIBRARY", shared_location.catalogue)
    monkeypatch.setenv("VOICEBANK_BLOBS", shared_location.blobs)
    rc, out, _ = run_cli(capsys, ["library", "check", "--json"])
    assert stray in out and rc in (0, 1)
    rc, out, _ = run_cli(capsys, ["library", "check", "--repair", "--json"])
    assert stray in out  # --repair alone still only lists it
    rc, out, _ = run_cli(capsys, ["library", "check", "--delete-orphans", "--json"])
    assert stray in out
    rc, out, _ = run_cli(capsys, ["library", "check", "--json"])
    assert stray not in out and rc == 0


def test_blobs_without_a_shared_catalogue_is_refused(tmp_path, capsys):
    rc, _, err = run_cli(capsys, ["--blobs", "s3://bucket/x", "list", "--library", str(tmp_path / "lib")])
    assert rc == 1 and "applies to a library in PostgreSQL" in err
