"""Which approximate index: usearch HNSW against faiss (HNSW, IVF) on the library's own question.

The library ranks by a normalised score (each row's cohort mean and spread, see ``VoiceIndex.rank``), not by
the raw cosine an index answers, so each index is asked for ``K'`` candidates by cosine and they are re-scored
exactly in float64; recall@10 is the share of the exact normalised top 10 found that way.  The duplicate
check's recall: the share of the exact "top 5 of the rows over the cut-off" found.

Two sets: the real-derived embeddings (``tests/data/ann/embeddings.npy``, see ``ann_embeddings.py``; 500 rows
held out as queries) and, for scale, synthetic clustered unit vectors (``--synthetic N``: speakers around a
common direction like real embeddings, 5-50 rows each; labelled synthetic in the output).

    python benchmarks/ann_compare.py [--synthetic 100000] [--candidates 100]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

REAL = REPO / "tests" / "data" / "ann" / "embeddings.npy"


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """``n`` clustered unit rows: speakers at cosine ~0.5 to each other, their rows at ~0.85 to each other."""
    rng = np.random.default_rng(seed)
    common = unit(np.abs(rng.standard_normal((1, 256))))
    sizes = rng.integers(5, 51, size=n // 5)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    speakers = unit(common + 0.06 * rng.standard_normal((sizes.size, 256)))
    rows = np.repeat(speakers, sizes, axis=0)[:n]
    return unit(rows + 0.028 * rng.standard_normal(rows.shape).astype(np.float32))


def statistics(x: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cohort statistics against an even sample of 1,000 rows (the library's settled cohort)."""
    from voicebank.similarity import DEFAULT_TOP_K, ScoreNormaliser

    cohort = x[np.random.default_rng(seed).choice(x.shape[0], size=min(1_000, x.shape[0]), replace=False)]
    return ScoreNormaliser(cohort, top_k=DEFAULT_TOP_K, exclude_above=0.999).statistics(x)


def scores(x: np.ndarray, means: np.ndarray, stds: np.ndarray, q: np.ndarray, qm: float, qs: float,
           rows: np.ndarray | None = None) -> np.ndarray:
    c = (x if rows is None else x[rows]) @ q
    m, s = (means, stds) if rows is None else (means[rows], stds[rows])
    return 0.5 * ((c.astype(np.float64) - qm) / qs + (c - m) / s)


def usearch_index(dtype: str, m: int, ef_add: int, ef: int, threads: int = 2) -> Callable[[np.ndarray], Any]:
    def build(x: np.ndarray) -> Any:
        from usearch.index import Index

        index = Index(ndim=x.shape[1], metric="ip", dtype=dtype, connectivity=m, expansion_add=ef_add,
                      expansion_search=ef)
        index.add(np.arange(x.shape[0], dtype=np.uint64), x, threads=threads)
        return index

    return build


def usearch_search(index: Any, q: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(index.search(q, k, threads=1).keys, dtype=np.int64)


def faiss_hnsw(m: int, ef_add: int, ef: int, sq: bool) -> Callable[[np.ndarray], Any]:
    def build(x: np.ndarray) -> Any:
        import faiss

        if sq:
            index = faiss.IndexHNSWSQ(x.shape[1], faiss.ScalarQuantizer.QT_fp16, m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_add
        index.hnsw.efSearch = ef
        if sq:
            index.train(x)
        index.add(x)
        return index

    return build


_KEEP: list[Any] = []


def faiss_ivf(nlist: int, nprobe: int) -> Callable[[np.ndarray], Any]:
    def build(x: np.ndarray) -> Any:
        import faiss

        quantizer = faiss.IndexFlatIP(x.shape[1])
        index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x[np.random.default_rng(0).choice(x.shape[0], min(x.shape[0], 50 * nlist), replace=False)])
        index.add(x)
        index.nprobe = nprobe
        _KEEP.append(quantizer)  # faiss does not own the quantizer
        return index

    return build


def faiss_search(index: Any, q: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(index.search(q[None, :], k)[1][0], dtype=np.int64)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def evaluate(name: str, build: Callable[[np.ndarray], Any], search: Callable[[Any, np.ndarray, int], np.ndarray],
             x: np.ndarray, queries: np.ndarray, means: np.ndarray, stds: np.ndarray, qstats: tuple[np.ndarray,
             np.ndarray], cutoff: float, candidates: int) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(2)
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    index = build(x)
    built = time.perf_counter() - t0
    memory = rss_mb() - before
    faiss.omp_set_num_threads(1)
    times, hits10, hits_dup, want_dup = [], 0, 0, 0
    for j, q in enumerate(queries):
        qm, qs = float(qstats[0][j]), float(qstats[1][j])
        exact = scores(x, means, stds, q, qm, qs)
        top = np.argsort(-exact, kind="stable")[:10]
        t0 = time.perf_counter()
        rows = search(index, q, candidates)
        rows = rows[rows >= 0]
        s = scores(x, means, stds, q, qm, qs, rows)
        got = rows[np.argsort(-s, kind="stable")[:10]]
        times.append(time.perf_counter() - t0)
        hits10 += len(set(top.tolist()) & set(got.tolist()))
        dup = [int(r) for r in top[:5] if exact[r] >= cutoff]
        got_dup = set(rows[np.argsort(-s, kind="stable")[:5]].tolist())
        want_dup += len(dup)
        hits_dup += sum(r in got_dup for r in dup)
    return {"index": name, "rows": x.shape[0], "build_s": built, "memory_mb": memory,
            "search_ms_p50": 1e3 * float(np.median(times)), "search_ms_p99": 1e3 * float(np.quantile(times, 0.99)),
            "recall10": hits10 / (10 * len(queries)), "dup_recall": hits_dup / max(1, want_dup), "dup_rows": want_dup}


def voicebank_graph(x: np.ndarray) -> Any:
    from voicebank.library.ann import Graph

    return Graph.build(np.arange(x.shape[0]), x, 0)


def voicebank_search(graph: Any, q: np.ndarray, k: int) -> np.ndarray:
    return graph.search(q[None, :], k)[0]


CANDIDATES: dict[str, tuple[Callable[[np.ndarray], Any], Callable[[Any, np.ndarray, int], np.ndarray]]] = {
    "voicebank's choice: usearch i8 M16 ef192, 1 thread": (voicebank_graph, voicebank_search),
    "usearch i8 M16 add96 ef192, 1 thread": (usearch_index("i8", 16, 96, 192, threads=1), usearch_search),
    "usearch i8 M16 add64 ef192, 1 thread": (usearch_index("i8", 16, 64, 192, threads=1), usearch_search),
    "usearch i8 M16 add64 ef128, 1 thread": (usearch_index("i8", 16, 64, 128, threads=1), usearch_search),
    "usearch f16 M16 ef64": (usearch_index("f16", 16, 128, 64), usearch_search),
    "usearch f16 M16 ef128": (usearch_index("f16", 16, 128, 128), usearch_search),
    "usearch i8 M16 ef128": (usearch_index("i8", 16, 128, 128), usearch_search),
    "usearch f16 M32 ef128": (usearch_index("f16", 32, 128, 128), usearch_search),
    "faiss HNSWFlat M16 ef128": (faiss_hnsw(16, 128, 128, sq=False), faiss_search),
    "faiss HNSWSQfp16 M16 ef128": (faiss_hnsw(16, 128, 128, sq=True), faiss_search),
    "faiss IVFFlat 1024/32": (faiss_ivf(1024, 32), faiss_search),
}


def run(label: str, data: np.ndarray, args: argparse.Namespace) -> None:
    from voicebank.duplicates import duplicate_threshold

    rng = np.random.default_rng(2)
    held = rng.choice(data.shape[0], size=args.queries, replace=False)
    queries = data[held]
    x = np.ascontiguousarray(np.delete(data, held, axis=0))
    means, stds = statistics(x)
    cohort_stats = statistics(np.concatenate([x, queries]))  # the same cohort sample size, queries included
    qstats = (cohort_stats[0][-len(queries):], cohort_stats[1][-len(queries):])
    cutoff = duplicate_threshold(x.shape[0])
    print(f"\n{label}: {x.shape[0]} rows, {len(queries)} queries, K'={args.candidates}, cut-off {cutoff:.3f}")
    print("| index | build s | memory MB | search ms p50 / p99 | recall@10 | duplicate-check recall (rows) |")
    print("|---|---|---|---|---|---|")
    for name, (build, search) in CANDIDATES.items():
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        r = evaluate(name, build, search, x, queries, means, stds, qstats, cutoff, args.candidates)
        print(f"| {name} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | {r['search_ms_p50']:.2f} / "
              f"{r['search_ms_p99']:.2f} | {r['recall10']:.4f} | {r['dup_recall']:.4f} ({r['dup_rows']}) |",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--synthetic", type=int, default=100_000, help="rows of the synthetic set (0: none)")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--only", default="", help="comma-separated substrings of the indexes to run")
    args = p.parse_args()
    if args.real.is_file():
        run("real-derived embeddings", unit(np.load(args.real).astype(np.float32)), args)
    if args.synthetic:
        run("SYNTHETIC clustered vectors", synthetic(args.synthetic + args.queries), args)


if __name__ == "__main__":
    main()
