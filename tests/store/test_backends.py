"""The store's guarantees on both backends: a library directory (SQLite and files) and a shared library (a real
PostgreSQL and a real S3 server, see cluster_fixtures): round trips, unique names under concurrent writers in
separate processes, atomic rename/update/remove, versioned schema, orphans listed and deleted only when asked,
a failed write leaving nothing behind, and ``kill -9`` during writes leaving a consistent library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from store_backends import assert_consistent, new_voice, objects
from voicebank import errors
from voicebank.store import vectors
from voicebank.store.shared import SharedVoiceStore


def test_the_location_picks_the_backend(where):
    store = where.open()
    assert isinstance(store, SharedVoiceStore) == (where.blobs is not None)
    store.close()


def test_a_voice_round_trips_and_lists_in_code_point_order(where):
    store = where.open()
    for i, name in enumerate(["bob", "Émile", "Alice", "carol"]):
        store.insert(new_voice(name, i, tags=("t",) if i % 2 else ()))
    assert store.names() == ["Alice", "bob", "carol", "Émile"]  # by code point, whatever the database's locale
    assert [v.name for v in store.list(limit=2)] == ["Alice", "bob"]
    assert [v.name for v in store.list(after="bob", limit=10)] == ["carol", "Émile"]
    assert [v.name for v in store.list(tag="t")] == ["carol", "Émile"]
    v = store.voice("bob")
    assert v.speaker_emb is not None and v.speaker_emb.dtype == np.float32 and v.xvector is not None
    expected = new_voice("bob", 0)
    assert np.allclose(v.speaker_emb, expected.speaker_emb)
    (f,) = v.info.files
    assert store.read_file(f, voice="bob") == expected.audio
    assert store.count() == 4 and store.contains("carol") and not store.contains("dave")
    assert store.common_fingerprint() == "fake"
    with pytest.raises(errors.VoiceNotFoundError, match="did you mean 'carol'"):
        store.voice("carrol")
    store.close()


def test_names_and_audio_are_unique_and_lookalikes_refused(where):
    store = where.open()
    store.insert(new_voice("alice", 1))
    with pytest.raises(errors.VoiceExistsError, match="already in the library"):
        store.insert(new_voice("alice", 2))
    with pytest.raises(errors.DuplicateAudioError):
        store.insert(new_voice("other", 1))
    with pytest.raises(errors.VoiceExistsError, match="looks the same"):
        store.insert(new_voice("\u0430lice", 3))  # a Cyrillic a
    assert store.names() == ["alice"] and len(objects(store)) == 1
    store.close()


def test_rename_update_and_remove_are_atomic(where):
    store = where.open()
    store.insert(new_voice("alice", 1, tags=("a",)))
    store.insert(new_voice("bob", 2))
    with pytest.raises(errors.VoiceExistsError):
        store.rename("alice", "bob")
    assert store.names() == ["alice", "bob"]
    assert store.rename("alice", "alicia").name == "alicia"
    assert store.update("alicia", tags=["x", "y"], consent="ok").tags == ("x", "y")
    assert store.info("alicia").consent == "ok"
    before = objects(store)
    assert store.remove("alicia") == []
    assert store.names() == ["bob"] and len(objects(store)) == len(before) - 1
    assert_consistent(store)
    store.close()


def test_a_failed_write_leaves_no_row_and_no_object(where):
    store = where.open()
    with pytest.raises(errors.LibraryError):  # the second tag row breaks the primary key after the audio is stored
        store.insert(new_voice("alice", 1, tags=("same", "same")))
    assert store.names() == [] and objects(store) == set()
    store.insert(new_voice("alice", 1))  # and the library still works
    assert_consistent(store)
    store.close()


def test_every_change_is_logged_for_the_search_index(where):
    store = where.open()
    with store.catalogue.read() as conn:
        start = vectors.last_change(conn)
    store.insert(new_voice("alice", 1))
    store.insert(new_voice("bob", 2))
    store.rename("bob", "robert")
    with store.catalogue.read() as conn:
        newest, ids = vectors.changed_since(conn, start, limit=100)
        (rows,) = list(vectors.all_rows(conn))  # one chunk
    assert newest > start and ids is not None and len(set(ids)) == 2
    assert sorted(rows.names) == ["alice", "robert"] and rows.vectors.shape == (2, 256)
    store.close()


def test_a_commit_from_another_process_changes_the_generation(where):
    store = where.open()
    g0 = store.generation()
    assert store.generation() == g0
    child = f"""
        from voicebank.store.shared import open_store
        from store_backends import new_voice
        open_store({where.catalogue!r}, blobs={where.blobs!r}).insert(new_voice("elsewhere", 9))
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(child)], check=True, env=_child_env())
    assert store.generation() != g0
    assert store.names() == ["elsewhere"]
    store.close()


def test_orphans_are_listed_and_deleted_only_when_asked(where):
    store = where.open()
    store.insert(new_voice("alice", 1))
    stray, _ = store.blobs.write(b"a stray object no row references", ".wav")  # a crash between object and row
    listed = store.remove_orphans(delete=False)
    assert len(listed) == 1 and stray in listed[0]
    assert stray in objects(store)  # listed, not deleted
    assert store.remove_orphans(delete=True) == listed
    assert stray not in objects(store) and store.remove_orphans(delete=False) == []
    assert_consistent(store)
    store.close()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), os.path.dirname(os.path.dirname(__file__)),
                                         env.get("PYTHONPATH", "")])
    return env


WRITER = """
import sys
from voicebank.errors import VoiceExistsError
from voicebank.store.shared import open_store
from store_backends import new_voice

catalogue, blobs, worker, n = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), int(sys.argv[4])
store = open_store(catalogue, blobs=blobs)
added = refused = 0
for i in range(n):
    try:  # every writer tries every name, each with audio of its own
        store.insert(new_voice(f"voice-{i:03d}", 1000 * worker + i))
        added += 1
    except VoiceExistsError:
        refused += 1
print(added, refused)
"""


def test_concurrent_writers_in_separate_processes_never_share_a_name(where):
    where.open().close()  # the schema exists before the race (the race to create it is the migration's)
    workers, n = 3, 12
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, where.catalogue, where.blobs or "", str(w), str(n)],
                              stdout=subprocess.PIPE, text=True, env=_child_env()) for w in range(workers)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    added = [tuple(map(int, out.split())) for out in outs]
    assert sum(a for a, _ in added) == n and sum(r for _, r in added) == (workers - 1) * n
    store = where.open()
    assert store.names() == [f"voice-{i:03d}" for i in range(n)]
    assert store.remove_orphans(delete=False) == []  # a refused writer wrote no object
    assert_consistent(store)
    store.close()


CHURNER = """
import sys
from voicebank.store.shared import open_store
from store_backends import new_voice

store = open_store(sys.argv[1], blobs=sys.argv[2] or None)
i = 0
while True:
    store.insert(new_voice(f"v{i}", i, audio_bytes=200_000))
    if i % 3 == 2:
        store.remove(f"v{i - 1}")
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("delay", [0.15, 0.4])
def test_kill_9_during_writes_leaves_a_consistent_library(where, delay):
    where.open().close()
    child = subprocess.Popen([sys.executable, "-c", CHURNER, where.catalogue, where.blobs or ""],
                             stdout=subprocess.PIPE, text=True, env=_child_env())
    assert child.stdout is not None
    for _ in range(4):  # a few writes committed, then kill it somewhere inside the next ones
        assert child.stdout.readline(), "the writer died on its own"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    store = where.open()
    names = store.names()
    assert len(names) >= 3
    assert_consistent(store)  # every committed voice has all its objects
    store.remove_stale_temp()
    store.remove_orphans(delete=True)  # at most objects of the write that was cut short
    assert store.remove_orphans(delete=False) == []
    store.insert(new_voice("after", 10**6))  # the lock died with the writer
    assert_consistent(store)
    store.close()


def test_a_bfloat16_index_scores_from_the_catalogues_float32_rows(where):
    """From the approximate index's size on, the index keeps bfloat16 rows and reads the float32 rows a search
    keeps back from the catalogue (SQLite or PostgreSQL): the results equal a float32 index's."""
    pytest.importorskip("usearch")
    from voicebank.library.index import VoiceIndex

    store = where.open()
    for i in range(80):
        store.insert(new_voice(f"v{i:03d}", 100 + i, audio_bytes=64, tags=("even",) if i % 2 == 0 else ()))
    half, exact = VoiceIndex(store, ann_from=60), VoiceIndex(store, ann_from=0)
    half.refresh()
    exact.refresh()
    half.neighbours.ann_from = 10**9  # stays bfloat16; every search takes the exact path
    assert half.bf16 and not exact.bf16
    for seed in range(5):
        q = np.random.default_rng(seed).standard_normal(256).astype(np.float32)
        for kwargs in ({"k": 7}, {"k": 3, "tag": "even"}, {"k": 80, "at_least": 0.05}):
            want, got = exact.rank(q, **kwargs), half.rank(q, **kwargs)
            assert got.names == want.names and np.array_equal(got.scores, want.scores)
    assert half.rows_rescored > 0
    store.close()
