"""Crash safety and concurrent writers, with real processes.

A writer is SIGKILLed at the worst moments (inside the add transaction right after a file landed, half-way
through writing a temp file, between a removal's commit and its file deletion, and at a random point of a
batch add); afterwards ``check`` must find the library consistent, with the leftovers cleaned.  Four
processes then add voices into one fresh library at the same moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from voicebank.engine import Extractor
from voicebank.library import Library

from audio_fixtures import REALSPEECH

pytestmark = [pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pid checks are POSIX"),
              pytest.mark.usefixtures("one_torch_thread")]

LIBRI = REALSPEECH / "librispeech"
CLIPS = [LIBRI / "367" / f"367-130732-000{i}.flac" for i in (0, 1, 4, 6, 8, 9)] + [
    LIBRI / "1688" / f"1688-142285-000{i}.flac" for i in (2, 4)]

CHILD = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path

    import torch

    torch.set_num_threads(1)
    from voicebank.library import Library
    from voicebank.store import blobs as blobs_mod
    from voicebank.library import library as library_mod

    root, weights, scenario, marker, mode, *items = sys.argv[1:]
    lib = Library(root, weights=weights)
    lib.extractor("english").load()  # models loaded before the interesting part starts


    def hang():
        Path(marker).write_text(str(os.getpid()))
        time.sleep(600)


    if scenario == "after-blob":  # inside the add transaction, right after a file was renamed into place
        original = blobs_mod.BlobStore.write

        def write(self, data, suffix):
            out = original(self, data, suffix)
            hang()
            return out

        blobs_mod.BlobStore.write = write
    elif scenario == "mid-temp":  # half-way through writing a temp file
        import tempfile

        def write(self, data, suffix):
            fd, _ = tempfile.mkstemp(prefix=f"{os.getpid()}.", suffix=".tmp", dir=self.tmp_dir)
            os.write(fd, data[: len(data) // 2])
            hang()

        blobs_mod.BlobStore.write = write
    elif scenario == "before-unlink":  # a removal committed, its files not yet deleted
        from voicebank.store import store as store_mod

        store_mod.VoiceStore._unlink_dropped = lambda self, dropped: hang()
        lib.remove(items[0])
        sys.exit(3)
    elif scenario == "slow-batch":  # a batch add, slowed so that the kill lands in the middle of it
        original_commit = library_mod.Library.commit

        def commit(self, *args, **kwargs):
            out = original_commit(self, *args, **kwargs)
            time.sleep(0.4)
            return out

        library_mod.Library.commit = commit
    elif scenario == "together":  # concurrent writers: wait until every process is ready
        Path(marker).write_text("ready")
        while not Path(marker + ".go").exists():
            time.sleep(0.005)
    results = lib.add_many(items, mode=mode, workers=1)
    print(json.dumps([[r.name, r.status, r.reason] for r in results]))
''')




@pytest.fixture(scope="module")
def child_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("child") / "writer.py"
    path.write_text(CHILD)
    return path


@pytest.fixture(scope="module")
def extractor(golden_weights_dir):
    return Extractor.from_local(golden_weights_dir).load()


def spawn(script, root, weights, scenario, marker, mode, *items) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VOICEBANK_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(root), str(weights), scenario, str(marker), mode,
                             *map(str, items)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the writer exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the writer never reached the point to kill it at")
        time.sleep(0.02)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def files_under(root: Path, sub: str) -> list[Path]:
    return sorted(p for p in (root / sub).rglob("*") if p.is_file())


def assert_consistent(lib: Library) -> None:
    """Every row has its files, every file has its row, nothing temporary is left."""
    report = lib.check()
    assert report.ok, report.problems
    assert files_under(lib.path, "tmp") == []
    conn = lib.catalogue.connection()
    registered = {lib.blobs.path(sha, suffix) for sha, suffix in conn.execute("SELECT sha256, suffix FROM blobs")}
    assert set(files_under(lib.path, "blobs")) == registered
    for name, mode in conn.execute("SELECT name, mode FROM voices"):
        info = lib.show(name)
        assert all(f.path.is_file() for f in info.files)
        assert info.has_audio == (mode != "embedding")
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


@pytest.mark.parametrize("scenario", ["after-blob", "mid-temp"])
def test_kill_during_an_add_leaves_no_trace(tmp_path, child_script, golden_weights_dir, extractor, scenario):
    root = tmp_path / "lib"
    lib = Library(root, engine=extractor.engine)
    lib.add(CLIPS[0], name="before")
    marker = tmp_path / "marker"
    proc = spawn(child_script, root, golden_weights_dir, scenario, marker, "audio", CLIPS[1])
    wait_for(marker.exists, proc)
    kill(proc)
    # what the crash left: an unreferenced file, or a dead writer's temp file; never a row
    assert lib.names() == ["before"]
    if scenario == "after-blob":
        assert len(files_under(root, "blobs")) == 2
    else:
        assert [p.name.split(".")[0] for p in files_under(root, "tmp")] == [str(proc.pid)]
    report = lib.check(delete_orphans=True)
    assert report.ok and len(report.removed_orphans if scenario == "after-blob" else report.removed_temp_files) == 1
    assert_consistent(lib)
    # the interrupted clip can simply be added again
    assert lib.add(CLIPS[1]).status == "added"
    assert_consistent(lib)


def test_kill_between_a_removal_and_its_file_deletion(tmp_path, child_script, golden_weights_dir, extractor):
    root = tmp_path / "lib"
    lib = Library(root, engine=extractor.engine)
    lib.add(CLIPS[0], name="victim")
    lib.add(CLIPS[1], name="keeper")
    marker = tmp_path / "marker"
    proc = spawn(child_script, root, golden_weights_dir, "before-unlink", marker, "audio", "victim")
    wait_for(marker.exists, proc)
    kill(proc)
    assert lib.names() == ["keeper"] and len(files_under(root, "blobs")) == 2  # the removal committed
    report = lib.check(delete_orphans=True)
    assert report.ok and len(report.removed_orphans) == 1
    assert_consistent(lib)


def test_kill_mid_batch_then_resume(tmp_path, child_script, golden_weights_dir, extractor):
    root = tmp_path / "lib"
    Library(root).close()
    marker = tmp_path / "never"
    proc = spawn(child_script, root, golden_weights_dir, "slow-batch", marker, "audio", *CLIPS[:6])
    lib = Library(root, engine=extractor.engine)
    wait_for(lambda: len(lib) >= 2, proc)
    kill(proc)
    stored = len(lib)
    assert 2 <= stored < 6
    assert_consistent(lib)
    results = lib.add_many([str(c) for c in CLIPS[:6]])
    assert [r.status for r in results] == ["skipped"] * stored + ["added"] * (6 - stored)
    assert len(lib) == 6
    assert_consistent(lib)


def test_four_processes_add_at_once(tmp_path, child_script, golden_weights_dir):
    root = tmp_path / "fresh" / "lib"  # does not exist yet: the four race to create the schema too
    shared = CLIPS[0]  # every process also tries to add this one: exactly one may win
    jobs = [("embedding", CLIPS[1:3]), ("embedding", CLIPS[3:5]), ("audio", CLIPS[5:7]), ("audio", CLIPS[7:8])]
    procs = []
    for i, (mode, clips) in enumerate(jobs):
        marker = tmp_path / f"ready{i}"
        procs.append((marker, spawn(child_script, root, golden_weights_dir, "together", marker, mode, shared,
                                    *clips)))
    for marker, proc in procs:
        wait_for(marker.exists, proc)
    for marker, _ in procs:
        Path(str(marker) + ".go").touch()
    outcomes = []
    for _, proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    firsts = [o[0] for o in outcomes]
    assert sorted(s for _, s, _ in firsts) == ["added", "skipped", "skipped", "skipped"]
    assert all("already in the library" in reason for _, s, reason in firsts if s == "skipped")
    assert all(s == "added" for o in outcomes for _, s, _ in o[1:])
    lib = Library(root)
    assert lib.names() == sorted(c.stem for c in CLIPS)
    assert {v.name: v.mode for v in lib.list()} == {
        **{c.stem: "embedding" for c in CLIPS[1:5]}, **{c.stem: "audio" for c in CLIPS[5:8]},
        shared.stem: next(jobs[i][0] for i, o in enumerate(outcomes) if o[0][1] == "added")}
    assert_consistent(lib)
