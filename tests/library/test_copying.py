"""``voicebank library copy SRC DST`` (issue 19): a library copied between a directory and a shared library
(a real PostgreSQL + SeaweedFS from cluster_fixtures) both ways, voices of every mode (kept audio with a cached
voice file, stored conditionals, an embedding with a base); interrupted (``--limit``; SIGKILL of a copy of a few
hundred voices in a process of its own, each way) and resumed; verified (same voices, same file hashes, ``check``
clean on both); a name taken by another voice is a conflict, never overwritten."""

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


# --- killed (SIGKILL) mid-way in a process of its own, then run again ---------------------------------------


def many_voices(root, n: int) -> list[str]:
    """``n`` voices, a third of each mode: audio (every fourth with a cached voice file), conditionals (a voice
    file each) and embeddings (every other one borrowing an audio voice's reference); their names, sorted."""
    from dataclasses import replace

    from store_backends import new_voice

    rng = np.random.default_rng(19)
    items = []
    for i in range(n):
        v = new_voice(f"v{i:04d}", 1000 + i, audio_bytes=6000, tags=(f"t{i % 5}",))
        if i % 3 == 1:
            v = replace(v, mode="conditionals", audio=None, source_sha256=None,
                        voice_files={"english": (rng.bytes(5000), "fake-english")})
        elif i % 3 == 2:
            v = replace(v, mode="embedding", audio=None, base=f"v{i - 2:04d}" if i % 2 else None)
        items.append((v, v.name, None))
    with Library(root, engine=FakeEngine()) as lib:
        ids = lib.store.insert_many(items, details=False)
        for i, voice_id in enumerate(ids):
            if i % 12 == 0:
                lib.store.store_cache(voice_id, f"v{i:04d}", "english", rng.bytes(5000), "fake-english")
        return lib.names()


def visible(catalogue: str) -> int:
    """How many voices another process sees committed in a catalogue (0 while there is none yet), read without
    opening a library there (which would create one)."""
    import sqlite3

    if catalogue.startswith("postgresql://"):
        import psycopg

        try:
            with psycopg.connect(catalogue) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM voices").fetchone()[0])
        except psycopg.Error:
            return 0
    try:
        conn = sqlite3.connect(f"file:{catalogue}/catalogue.sqlite3?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM voices").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def kill_mid_copy(args: list[str], destination: str, total: int, at: int) -> int:
    """Run ``voicebank ARGS`` (a copy of ``total`` voices to ``destination``) in a process of its own and SIGKILL
    it once ``at`` voices are there; how many are there after."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "voicebank.cli", *map(str, args)], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while visible(destination) < at and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the copy ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.stderr.close()
    partial = visible(destination)
    assert at <= partial < total, partial
    return partial


def assert_same_content(a: str, a_blobs: str | None, b: str, b_blobs: str | None) -> None:
    """The same voices with the same signatures (files' sha256 included) and the same content objects, every
    one's bytes hashing to its name; both libraries check clean, with no unreferenced file."""
    from store_backends import Location

    assert signatures(a, a_blobs) == signatures(b, b_blobs)
    digests = []
    for where in (Location(a, a_blobs), Location(b, b_blobs)):
        listed = where.list_objects()
        assert all(sha in name for name, sha in listed.items()), listed  # content-addressed: name = its hash
        digests.append(sorted(listed.values()))
        assert not where.temp_files()
        with where.library() as lib:
            report = lib.check()
            assert report.problems == () and not report.unreferenced, report
    assert digests[0] == digests[1]


def resume(capsys, args: list[str], names: list[str], partial: int) -> None:
    """Run the copy again to the end: each voice copied or skipped, exactly once; those there before skipped."""
    rc, out, err = run_cli(capsys, [*args, "--json"])
    report = json.loads(out)
    assert rc == 0 and report["ok"], (err, report)
    assert report["check"] == {"source": [], "destination": []}
    assert sorted(report["copied"] + report["skipped"]) == names and len(report["skipped"]) == partial


def test_a_copy_killed_mid_way_both_ways_is_resumed_exactly_once(tmp_path, shared_location, capsys):
    src, pg, s3 = str(tmp_path / "src"), shared_location.catalogue, shared_location.blobs
    names = many_voices(src, 300)  # a few hundred, a third of each mode
    assert len(names) == 300
    to_shared = ["library", "copy", src, pg, "--dest-blobs", s3]
    partial = 0
    for at in (len(names) // 6, len(names) // 2):  # killed, then killed again while resuming
        partial = kill_mid_copy(to_shared, pg, len(names), max(at, partial + 1))
    resume(capsys, to_shared, names, partial)
    assert_same_content(src, None, pg, s3)
    with Library(pg, blobs=s3) as lib:
        assert lib.names() == names and len(lib) == len(names)

    back = str(tmp_path / "back")
    to_directory = ["library", "copy", pg, back, "--source-blobs", s3]
    partial = 0
    for at in (len(names) // 6, len(names) // 2):
        partial = kill_mid_copy(to_directory, back, len(names), max(at, partial + 1))
    resume(capsys, to_directory, names, partial)
    assert_same_content(pg, s3, back, None)
    assert signatures(back) == signatures(src)
