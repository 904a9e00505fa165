"""The library's own cost at 10^3 to 10^6 voices: add, search, compare, get, list, count and open.

The models are taken out (an engine that returns embeddings at once, derived from the clip's hash), so only the
library's work is timed: reading the clip, the checks, the duplicate check, the commit; the search itself.  Each
library is filled straight through the catalogue with random unit vectors (the store's own schema), then opened
as a user would open it.  For each size the table gives the median and p99 of each operation and the resident
memory after the index is loaded; the last column is the growth from the smallest to the largest size.

    python benchmarks/scale.py [--sizes 1000,10000,100000] [--with-million] [--repeat 50] [--ann]

``--ann``: with the approximate index (``voicebank[ann]``) from 50,000 voices, loaded from the library's cache or
built (then saved there) before the timed calls; without it every search and duplicate check is exact.  The
vectors are random, so these are its costs, not its recall (``benchmarks/ann_compare.py`` measures that).

10^6 voices take about 2 GB of disk and a few minutes to build; they are measured with ``--with-million``.
With ``--keep DIR`` the libraries are kept and reused, and each run adds about 25,000 voices to each (its adds
and imports): the table's columns give the number of voices each library had when the run opened it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import _common as C  # noqa: E402


class InstantEngine:
    """The library's view of an engine, with no model: embeddings from the clip's hash (unit vectors)."""

    def weights_fingerprint(self, variant: str = "english") -> str:
        return "instant-" + variant

    def embeddings(self, source: Any, variant: str = "english") -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(int(source.sha256[:8], 16))
        s = rng.standard_normal(256).astype(np.float32)
        return s / np.linalg.norm(s), rng.standard_normal(192).astype(np.float32)

    def embed(self, sources: Any, *, variant: str = "english") -> np.ndarray:
        out = []
        for src in sources:
            rng = np.random.default_rng(int(hashlib.sha256(bytes(src)).hexdigest()[:8], 16))
            s = rng.standard_normal(256).astype(np.float32)
            out.append(s / np.linalg.norm(s))
        return np.stack(out)

    def extract(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the scale benchmark extracts nothing")


def fill(root: Path, n: int) -> None:
    """``n`` embedding-mode voices written straight into a new library's catalogue, in batches."""
    from voicebank.store.store import VoiceStore

    store = VoiceStore(root)
    fill_store(store, n)
    store.close()


def fill_store(store: Any, n: int, *, batch: int = 50_000) -> None:
    """``n`` embedding-mode voices (random unit vectors) written straight into ``store``'s catalogue, ``batch`` per
    transaction (any backend: the statements are the store's own SQL)."""
    from voicebank.store.guard import name_skeleton
    from voicebank.store.store import now

    rng = np.random.default_rng(n)
    stamp = now()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        s = rng.standard_normal((m, 256)).astype(np.float32)
        s /= np.linalg.norm(s, axis=1, keepdims=True)
        x = rng.standard_normal((m, 192)).astype(np.float32)
        with store.catalogue.write() as conn:
            conn.executemany(
                "INSERT INTO voices (name, mode, variant, exaggeration, source_sha256, duration, sample_rate, "
                "channels, speaker_emb, xvector, weights_fingerprint, added_at, skeleton) "
                "VALUES (?, 'embedding', 'english', 0.5, ?, 5.0, 16000, 1, ?, ?, 'instant-english', ?, ?)",
                ((f"voice-{start + i:07d}", f"{start + i:064x}", s[i].tobytes(), x[i].tobytes(), stamp,
                  name_skeleton(f"voice-{start + i:07d}")) for i in range(m)))


@contextlib.contextmanager
def workspace(keep: Path | None, prefix: str) -> Iterator[Path]:
    """Where the libraries are built: ``keep`` (``--keep``), else a temporary directory removed afterwards."""
    work = keep or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def library(work: Path, n: int, build: Callable[[Path, int], None] = fill) -> Path:
    """``work/lib-<n>``, built by ``build(root, n)`` unless it is there already (kept by ``--keep``)."""
    root = work / f"lib-{n}"
    if not (root / "catalogue.sqlite3").exists():
        t = time.perf_counter()
        build(root, n)
        print(f"built {n:,} voices in {time.perf_counter() - t:.1f} s", flush=True)
    return root


def clip(i: int) -> Any:
    from voicebank.audio import Waveform

    rng = np.random.default_rng(10_000_000 + i)
    t = np.arange(32_000) / 16_000
    wav = 0.3 * np.sin(2 * np.pi * (120 + 80 * rng.random()) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    wav += 0.01 * rng.standard_normal(t.size)
    return Waveform(wav.astype(np.float32), 16_000)


def measure(root: Path, n: int, repeat: int) -> dict[str, Any]:
    from voicebank.batch.into_library import import_dataset
    from voicebank.library import Library

    before = C.rss_mb()  # this process's memory before the library (interpreter, numpy, an earlier size's heap)
    t = time.perf_counter()
    lib = Library(root, engine=InstantEngine())
    opened = time.perf_counter() - t
    voices = len(lib)  # n, or more in a --keep library: each run adds its own voices (about 25,000)
    run = time.time_ns() // 1_000_000 % 10**9 * 1_000  # this run's own clips and names (a --keep library has
    # the voices of earlier runs)
    t = time.perf_counter()
    lib.add(clip(run), name=f"first-{run}", mode="embedding", force=True)  # loads the index, stores the cohort
    first = time.perf_counter() - t
    rss = C.rss_mb()
    out: dict[str, Any] = {"voices": voices, "nominal": n, "open_ms": opened * 1e3, "first_add_s": first, "rss_mb": rss,
                           "rss_before_mb": before, "raw_mb": len(lib) * 256 * 4 / 2**20}
    neighbours = lib.scoring.index.neighbours
    if neighbours is not None and n >= neighbours.ann_from:  # --ann: wait for the graph (loaded, or built)
        ready = neighbours.built.wait(3_600)
        out["graph_s"] = first + time.perf_counter() - t if ready else None
        from voicebank.library import neighbours as graphs

        for thread in list(graphs._BUILDERS):  # the build's copy of the vectors goes with its thread
            thread.join()
        out["rss_graph_mb"] = C.rss_mb()
    counter = iter(range(run + 1, run + 10 * repeat + 10))
    names = [f"voice-{i:07d}" for i in np.random.default_rng(1).integers(0, n, size=repeat)]

    def timed(key: str, fn: Callable[[int], Any]) -> None:
        out[key] = C.p50_p99_ms(C.time_each(fn, repeat))

    timed("add", lambda k: lib.add(clip(next(counter)), name=f"added-{next(counter)}", mode="embedding",
                                         force=True))
    timed("search", lambda k: lib.search(names[k], k=10))
    timed("compare", lambda k: lib.compare(names[k], names[-1 - k]))
    timed("show", lambda k: lib.show(names[k]))
    timed("list page", lambda k: lib.list(limit=100, after=names[k]))
    timed("count", lambda k: len(lib))
    for check in (True, False):  # the unchecked import last: it can leave the graph behind (searches exact until
        rows = IMPORT_ROWS[check]  # it caught up), which would slow a checked import right after it
        dataset = root.parent / f"import-{n}-{int(check)}"
        write_dataset(dataset, rows, start=10_000_000 * (2 + int(check)) + 10 * run)
        t = time.perf_counter()
        results = import_dataset(lib, dataset, check_duplicates=check)
        elapsed = time.perf_counter() - t
        assert [r.status for r in results].count("added") == rows, "the benchmark's rows must all be new"
        out[f"import_{int(check)}"] = rows / elapsed
        shutil.rmtree(dataset, ignore_errors=True)
    lib.close()
    return out


IMPORT_ROWS = {False: 20_000, True: 5_000}
"""Rows imported into each library: without and with the duplicate check (which is a pass over the library)."""


def write_dataset(path: Path, n: int, *, start: int) -> None:
    """A ``voicebank batch`` embedding dataset of ``n`` new clips (random unit vectors)."""
    from voicebank.batch.dataset import rows_to_table, write_part

    rng = np.random.default_rng(start)
    for lo in range(0, n, 50_000):
        m = min(50_000, n - lo)
        s = rng.standard_normal((m, 256)).astype(np.float32)
        s /= np.linalg.norm(s, axis=1, keepdims=True)
        x = rng.standard_normal((m, 192)).astype(np.float32)
        write_part(path, rows_to_table([
            {"path": f"/corpus/clip-{start + lo + i:09d}.wav", "source_sha256": f"{start + lo + i:064x}",
             "duration": 4.0, "sample_rate": 16000, "speaker_emb": s[i], "xvector": x[i], "mode": "embedding",
             "variant": "english", "weights_fingerprint": "instant-english"} for i in range(m)]))


def import_million(work: Path) -> float:
    """Rows/s of importing a 10^6-row embedding dataset into an empty library, without the duplicate check."""
    from voicebank.batch.into_library import import_dataset as import_into
    from voicebank.library import Library

    dataset = work / "import-million"
    write_dataset(dataset, 1_000_000, start=50_000_000)
    lib = Library(work / "lib-imported", engine=InstantEngine())
    t = time.perf_counter()
    results = import_into(lib, dataset, check_duplicates=False)
    elapsed = time.perf_counter() - t
    assert len(lib) == len(results) == 1_000_000
    lib.close()
    return elapsed


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    C.size_options(p, "timed calls")
    p.add_argument("--import-million", action="store_true", help="also time importing a 10^6-row dataset into an "
                   "empty library (minutes)")
    p.add_argument("--ann", action="store_true", help="with the approximate index (voicebank[ann]) from 50,000 "
                   "voices; without, every search is exact")
    args = p.parse_args()
    os.environ["VOICEBANK_ANN"] = "" if args.ann else "off"
    ctx = C.setup("scale", args)
    sizes = C.library_sizes(args)
    repeat = 10 if ctx.quick else args.repeat
    with workspace(args.keep, "voicebank-scale-") as work:
        results = [measure(library(work, n), n, repeat) for n in sizes]
        million = import_million(work) if args.import_million else None
    ops = ["add", "search", "compare", "show", "list page", "count"]
    rows = C.latency_rows(results, ops)
    for check, what in ((False, "no duplicate check"), (True, "duplicate check")):
        rates = [r[f"import_{int(check)}"] for r in results]
        rows.append([f"bulk import ({IMPORT_ROWS[check]:,} rows, {what}), rows/s", *[f"{x:,.0f}" for x in rates],
                     f"{rates[0] / max(rates[-1], 1e-9):.1f}x slower"])
    rows.append(["open, ms", *[f"{r['open_ms']:.1f}" for r in results],
                 f"{results[-1]['open_ms'] / max(results[0]['open_ms'], 1e-9):.1f}x"])
    rows.append(["first search or add (loads the index), s", *[f"{r['first_add_s']:.2f}" for r in results], ""])
    rows.append(["resident memory after loading, MiB", *[f"{r['rss_mb']:.0f}" for r in results], ""])
    if args.ann:
        rows.append(["approximate index ready (loaded or built, from opening), s",
                     *[f"{r['graph_s']:.1f}" if r.get("graph_s") else "-" for r in results], ""])
        rows.append(["resident memory with it, MiB", *[f"{r['rss_graph_mb']:.0f}" if "rss_graph_mb" in r else "-"
                                                        for r in results], ""])
    rows.append(["raw float32 speaker embeddings, MiB", *[f"{r['raw_mb']:.0f}" for r in results], ""])
    grown = [r.get("rss_graph_mb", r["rss_mb"]) - r["rss_before_mb"] for r in results]
    rows.append(["memory the library added (from before opening it), MiB (x raw)",
                 *[f"{g:.0f} ({g / r['raw_mb']:.2f}x)" for g, r in zip(grown, results, strict=True)], ""])
    counts = ", ".join(f"{r['voices']:,}" for r in results)
    C.print_table(f"The library at {counts} voices (models taken out; {repeat} calls "
                  f"each)", C.size_headers([r["voices"] for r in results]), rows)
    if million is not None:
        print(f"imported 1,000,000 embedding rows into an empty library (no duplicate check) in {million:.0f} s: "
              f"{1e6 / million:,.0f} rows/s")
    C.write_json(ctx, {"environment": C.environment(ctx), "results": json.loads(json.dumps(results)),
                       "import_million_s": million})


if __name__ == "__main__":
    main()
