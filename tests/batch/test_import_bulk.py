"""Bulk import of ``voicebank batch`` datasets: chunked transactions, resumable after ``kill -9``, exactly once,
bad rows and bad files reported without half-imports, and ``commit_many`` equal to one-at-a-time commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from voicebank.batch.dataset import BatchError, rows_to_table, write_part
from voicebank.batch.into_library import import_dataset
from voicebank.errors import InvalidOptionError
from voicebank.library import Library
from voicebank.library.bulk import commit_many, commit_one
from voicebank.library.imports import embedding_record

pytest.importorskip("pyarrow")


def _rows(n: int, *, start: int = 0, fingerprint: str = "fp-a", seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [{"path": f"/corpus/clip-{start + i:07d}.wav", "source_sha256": f"{start + i:064x}", "duration": 4.0,
             "sample_rate": 16000, "speaker_emb": rng.standard_normal(256).astype(np.float32),
             "xvector": rng.standard_normal(192).astype(np.float32), "mode": "embedding", "variant": "english",
             "weights_fingerprint": fingerprint} for i in range(n)]


def _dataset(path: Path, rows: list[dict[str, object]], *, per_part: int = 5000) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(rows), per_part):
        write_part(path, rows_to_table(rows[i: i + per_part]))
    return path


def _check_clean(lib: Path) -> None:
    from voicebank.cli import main

    assert main(["library", "check", "--library", str(lib)]) == 0


def test_error_rows_repeated_paths_and_a_second_run(tmp_path: Path) -> None:
    rows = _rows(30)
    rows[3] = {**rows[3], "speaker_emb": None, "xvector": None, "error_type": "AudioDecodeError",
               "error": "not audio"}
    rows.append({**rows[5], "source_sha256": "f" * 64})  # the same path (so the same name) again, other audio
    rows.append({**rows[6]})  # a repeated row: the same audio again
    rows[7] = {**rows[7], "speaker_emb": np.full(256, np.nan, dtype=np.float32)}  # a row no voice can hold
    ds = _dataset(tmp_path / "ds", rows, per_part=11)
    library = Library(tmp_path / "lib")
    first = import_dataset(library, ds)
    status = [r.status for r in first]
    assert len(first) == len(rows) and status.count("added") == 28
    by_clip: dict[str, list[tuple[str, str]]] = {}
    for r in first:  # parts are read in the order they were written, not necessarily the rows' order
        by_clip.setdefault(r.name, []).append((r.status, r.reason))
    assert by_clip["clip-0000003"] == [("skipped", "the batch could not compute it: AudioDecodeError: not audio")]
    assert [s for s, _ in by_clip["clip-0000007"]] == ["failed"] and "finite" in by_clip["clip-0000007"][0][1]
    for repeated in ("clip-0000005", "clip-0000006"):
        assert sorted(s for s, _ in by_clip[repeated]) == ["added", "skipped"]
    assert library.store.count() == 28
    again = import_dataset(library, ds)
    assert [r.status for r in again].count("added") == 0 and library.store.count() == 28
    _check_clean(tmp_path / "lib")


def test_a_truncated_part_or_other_weights_import_nothing(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds", _rows(40), per_part=20)
    part = sorted(ds.glob("*.parquet"))[-1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    library = Library(tmp_path / "lib")
    with pytest.raises(BatchError, match="not a readable Parquet part file"):
        import_dataset(library, ds)
    assert library.store.count() == 0

    import_dataset(library, _dataset(tmp_path / "a", _rows(5)))
    other = _dataset(tmp_path / "b", _rows(5, start=100, fingerprint="fp-b"))
    with pytest.raises(InvalidOptionError, match="different weights cannot be compared"):
        import_dataset(library, other)
    assert library.store.count() == 5


def test_commit_many_equals_one_at_a_time(tmp_path: Path) -> None:
    """The same voices, warnings and statistics whether a chunk is committed at once or voice by voice: the chunk
    also finds look-alikes among its own earlier voices."""
    rng = np.random.default_rng(7)
    speakers = rng.standard_normal((12, 256)).astype(np.float32)
    vectors = np.concatenate([speakers, speakers[:4] + 0.05 * rng.standard_normal((4, 256)).astype(np.float32)])
    pending = [embedding_record(f"v{i:02d}", v, np.ones(192, np.float32), label=f"v{i:02d}")
               for i, v in enumerate(vectors)]
    one = Library(tmp_path / "one")
    many = Library(tmp_path / "many")
    commit_one(one.store, one.scoring, None, pending[0], threshold=one.duplicate_threshold)
    commit_many(many.store, many.scoring, None, pending[:1], threshold=many.duplicate_threshold)
    singles = [commit_one(one.store, one.scoring, None, p, threshold=one.duplicate_threshold) for p in pending[1:]]
    chunk = commit_many(many.store, many.scoring, None, pending[1:], threshold=many.duplicate_threshold)
    assert [r.status for r in chunk] == ["added"] * len(singles)
    for a, b in zip(singles, chunk, strict=True):
        assert [n for n, _, _ in a.similar] == [n for n, _, _ in b.similar]
        assert np.allclose([s for _, s, _ in a.similar], [s for _, s, _ in b.similar])
    assert sum(bool(r.similar) for r in chunk) == 4  # the four re-added speakers, each found
    assert one.store.names() == many.store.names()


_IMPORTER = textwrap.dedent("""
    import sys
    from voicebank.batch.into_library import import_dataset
    from voicebank.library import Library
    import_dataset(Library(sys.argv[1]), sys.argv[2], check_duplicates=False)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_mid_import_then_rerun_adds_every_row_exactly_once(tmp_path: Path) -> None:
    n = 30_000
    ds = _dataset(tmp_path / "ds", _rows(n), per_part=10_000)
    lib = tmp_path / "lib"
    Library(lib).store.close()
    proc = subprocess.Popen([sys.executable, "-c", _IMPORTER, str(lib), str(ds)], env={**os.environ})
    store = Library(lib).store
    deadline = time.monotonic() + 120
    while store.count() < 3_000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the import finished before it could be killed: make the dataset larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = store.count()
    assert 0 < partial < n and partial % 1000 == 0  # whole chunks only: a chunk is one transaction
    results = import_dataset(Library(lib), ds, check_duplicates=False)
    assert [r.status for r in results].count("added") == n - partial
    assert [r.status for r in results].count("skipped") == partial
    assert store.count() == n
    names = store.names()
    assert len(set(names)) == n and names[0] == "clip-0000000" and names[-1] == f"clip-{n - 1:07d}"
    _check_clean(lib)
