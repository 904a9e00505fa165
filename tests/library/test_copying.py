"""``voicebank library copy SRC DST`` (issue 19): a library copied between a directory and a shared library
(a real PostgreSQL + SeaweedFS from cluster_fixtures) both ways, voices of every mode (kept audio with a cached
voice file, stored conditionals, an embedding with a base); interrupted (``--limit``) and resumed; verified
(same voices, same file hashes, ``check`` clean on both); a name taken by another voice is a conflict, never
overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voicebank.library import Library
from voicebank.library.copying import copy_library, signature, verify_copy

from faults import OTHER_VOICE_FILE, VOICE_FILE, FakeEngine, clip, run_cli

NAMES = ["alice", "bob", "carol", "dave", "erin"]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)
    monkeypatch.delenv("VOICEBANK_BLOBS", raising=False)


def every_mode(root) -> None:
    """alice and bob (audio; bob with a cached voice file), carol (stored conditionals), dave (an embedding
    borrowing carol's reference), erin (an embedding without a base)."""
    with Library(root, engine=FakeEngine()) as lib:
        lib.add(clip(1), name="alice", tags=["demo", "a"], consent="signed form 12")
        lib.add(clip(2), name="bob")
        lib.import_file(VOICE_FILE, "carol", tags=["demo"])
        lib.add(clip(3), name="dave", mode="embedding", base="carol")
        rng = np.random.default_rng(5)
        lib.import_embedding("erin", rng.standard_normal(256).astype(np.float32),
                             rng.standard_normal(192).astype(np.float32), source="erin.npy")
        bob = lib.store.voice("bob")
        lib.store.store_cache(bob.id, "bob", "english", OTHER_VOICE_FILE.read_bytes(), "fake-english")


def signatures(root, blobs: str | None = None) -> dict[str, str]:
    with Library(root, blobs=blobs) as lib:
        return {n: signature(lib.store.voice(n), caches=True) for n in lib.names()}


def test_a_directory_copied_to_a_shared_library_and_back(tmp_path, shared_location, capsys):
    every_mode(tmp_path / "src")
    rc, out, err = run_cli(capsys, ["library", "copy", tmp_path / "src", shared_location.catalogue,
                                    "--dest-blobs", shared_location.blobs])
    assert rc == 0, err
    assert "copied 5 voice(s) (1 cached file(s))" in out and "verified" in out
    original = signatures(tmp_path / "src")
    assert signatures(shared_location.catalogue, shared_location.blobs) == original
    with Library(tmp_path / "src") as a, Library(shared_location.catalogue, blobs=shared_location.blobs) as b:
        assert b.names() == NAMES
        assert b.get("carol").to_bytes() == a.get("carol").to_bytes()
        assert b.show("alice").tags == a.show("alice").tags and b.show("alice").consent == "signed form 12"
        assert b.show("dave").base == "carol" and b.show("dave").mode == "embedding"
        for n in NAMES:
            for x, y in zip(a.vectors(n), b.vectors(n), strict=True):
                assert (x is None and y is None) or np.array_equal(x, y)
        assert b.check().problems == ()

    rc, out, err = run_cli(capsys, ["--blobs", shared_location.blobs, "library", "copy", shared_location.catalogue,
                                    tmp_path / "back", "--json"])
    assert rc == 0, err
    report = json.loads(out)
    assert report["ok"] and report["copied"] == ["alice", "bob", "carol", "erin", "dave"]  # bases first
    assert report["check"] == {"source": [], "destination": []}
    assert signatures(tmp_path / "back") == original


def test_an_interrupted_copy_goes_on_where_it_stopped(tmp_path, shared_location, capsys):
    every_mode(tmp_path / "src")
    args = ["library", "copy", tmp_path / "src", shared_location.catalogue, "--dest-blobs", shared_location.blobs]
    rc, out, _ = run_cli(capsys, [*args, "--limit", "2"])
    assert rc == 0 and "copied 2 voice(s)" in out and "3 left" in out
    with Library(shared_location.catalogue, blobs=shared_location.blobs) as lib:
        assert lib.names() == ["alice", "bob"]  # whole voices only
    rc, out, _ = run_cli(capsys, [*args, "--limit", "1"])
    assert rc == 0 and "copied 1 voice(s)" in out and "skipped 2" in out and "2 left" in out
    rc, out, _ = run_cli(capsys, args)
    assert rc == 0 and "copied 2 voice(s)" in out and "skipped 3" in out and "verified" in out
    assert signatures(shared_location.catalogue, shared_location.blobs) == signatures(tmp_path / "src")
    rc, out, _ = run_cli(capsys, args)  # once more: nothing left to do
    assert rc == 0 and "copied 0 voice(s)" in out and "skipped 5" in out


def test_a_copy_killed_between_a_voice_and_its_cache_copies_the_cache_when_run_again(tmp_path, shared_location):
    every_mode(tmp_path / "src")
    with Library(tmp_path / "src") as src, Library(shared_location.catalogue, blobs=shared_location.blobs) as dst:
        bob = src.store.voice("bob")
        from voicebank.library.copying import _new_voice

        dst.store.insert(_new_voice(src.store, bob), label="bob")  # the voice landed, its cache did not
        assert verify_copy(src.store, dst.store)["bob"].startswith("different files: cache")
        report = copy_library(src.store, dst.store)
        assert report.ok and report.skipped == ["bob"] and report.caches == 1
        assert verify_copy(src.store, dst.store) == {}


def test_a_name_taken_by_another_voice_is_a_conflict_and_never_overwritten(tmp_path, capsys):
    every_mode(tmp_path / "src")
    with Library(tmp_path / "dst", engine=FakeEngine()) as lib:
        lib.add(clip(9), name="alice")
        theirs = signature(lib.store.voice("alice"), caches=True)
    rc, out, err = run_cli(capsys, ["library", "copy", tmp_path / "src", tmp_path / "dst"])
    assert rc == 1 and "conflict: alice" in out and "incomplete" in err
    after = signatures(tmp_path / "dst")
    assert after["alice"] == theirs and sorted(after) == NAMES


def test_a_missing_source_is_refused(tmp_path, capsys):
    rc, _, err = run_cli(capsys, ["library", "copy", tmp_path / "nothing", tmp_path / "dst"])
    assert rc == 1 and "no library there" in err
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "dst").exists()
