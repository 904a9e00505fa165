"""The voice service over 10^3 to 10^6 voices: ``GET /v1/audio/voices`` pages and filters, the count, the map,
a search by name and an upload, timed over loopback HTTP against a real uvicorn in its own process, and the
server's resident memory.

The models are taken out (benchmarks/scale.py's engine, whose embeddings come from the clip's hash), so what is
timed is the service and the library: HTTP, the multipart upload, decoding and inspecting the 2 s clip, the
checks, the duplicate check and the commit; the catalogue's pages; the search.  The libraries are filled straight
through the catalogue (benchmarks/scale.py's ``fill``), every fifth voice tagged ``narrator``.  Requests are sent
one at a time on one keep-alive connection; the table gives the median and p99 of each and the growth from the
smallest library to the largest.

    python benchmarks/service_scale.py [--sizes 1000,10000,100000] [--with-million] [--repeat 50] [--keep DIR]

10^6 voices take about 2 GB of disk and a few minutes to build; they are measured with ``--with-million``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
from scale import InstantEngine, clip, fill, library, workspace

HOST = "127.0.0.1"
OPS = ["list, first page", "list, a later page", "filter, name prefix", "filter, name fragment",
       "filter, tag", "count", "tags", "map (2,000-voice sample)", "map around a voice", "search by name, k=10",
       "unknown voice (404 with suggestions)", "upload (add, embedding mode)"]


def serve(root: str, port: str) -> None:
    """The child: the service over ``root`` with the model-free engine, on ``port``."""
    import uvicorn

    from voicebank.library import Library
    from voicebank.service import ServiceSettings, create_app

    lib = Library(root, engine=InstantEngine())  # type: ignore[arg-type]
    app = create_app(ServiceSettings(library=Path(root), log_json=False), library=lib)
    uvicorn.run(app, host=HOST, port=int(port), log_level="warning", access_log=False)


def fill_tagged(root: Path, n: int) -> None:
    """benchmarks/scale.py's library of ``n`` voices, every fifth tagged ``narrator``."""
    from voicebank.store.store import VoiceStore

    fill(root, n)
    store = VoiceStore(root)
    with store.catalogue.write() as conn:
        conn.execute("INSERT INTO tags (voice_id, tag) SELECT id, 'narrator' FROM voices WHERE id % 5 = 0")
    store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wav(i: int) -> bytes:
    import soundfile as sf

    w = clip(i)
    buf = io.BytesIO()
    sf.write(buf, w.samples, w.sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def measure(root: Path, n: int, repeat: int) -> dict[str, Any]:
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, __file__, "_serve", str(root), str(port)], env=env)
    url = f"http://{HOST}:{port}"
    out: dict[str, Any] = {"voices": n}
    try:
        t = time.perf_counter()
        with httpx.Client(base_url=url, timeout=300) as c:
            while True:
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.perf_counter() - t > 300:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            out["start_s"] = time.perf_counter() - t
            out["rss_start_mb"] = C.rss_mb(proc.pid)
            rng = np.random.default_rng(7)
            names = [f"voice-{i:07d}" for i in rng.integers(0, n, size=repeat + 1)]
            counter = iter(range(1, repeat + 2))
            t = time.perf_counter()
            assert c.post("/v1/audio/voices/search", json={"name": names[0], "k": 10}).status_code == 200
            out["first_search_s"] = time.perf_counter() - t  # loads the search index

            def timed(key: str, fn: Callable[[int], httpx.Response]) -> None:
                def check(r: httpx.Response) -> None:
                    assert r.status_code in (200, 201, 404), (key, r.status_code, r.text[:300])

                out[key] = C.p50_p99_ms(C.time_each(fn, repeat, check))

            timed(OPS[0], lambda k: c.get("/v1/audio/voices"))
            timed(OPS[1], lambda k: c.get("/v1/audio/voices", params={"after": names[k]}))
            timed(OPS[2], lambda k: c.get("/v1/audio/voices", params={"prefix": names[k][:-2]}))
            timed(OPS[3], lambda k: c.get("/v1/audio/voices", params={"q": names[k][-4:]}))
            timed(OPS[4], lambda k: c.get("/v1/audio/voices", params={"tag": "narrator", "after": names[k]}))
            timed(OPS[5], lambda k: c.get("/v1/audio/count"))
            timed(OPS[6], lambda k: c.get("/v1/audio/tags"))
            timed(OPS[7], lambda k: c.get("/v1/audio/map"))
            timed(OPS[8], lambda k: c.get("/v1/audio/map", params={"around": names[k]}))
            timed(OPS[9], lambda k: c.post("/v1/audio/voices/search", json={"name": names[k], "k": 10}))
            timed(OPS[10], lambda k: c.get(f"/v1/audio/voices/{names[k]}x"))
            run = time.time_ns() % 10**12 * 100  # new clips and names each run (a kept library holds the last ones)
            clips = {i: wav(run + i) for i in range(1, repeat + 2)}

            def upload(k: int) -> httpx.Response:
                i = next(counter)
                return c.post("/v1/audio/voices", data={"name": f"added-{run + i}", "consent": "benchmark",
                                                        "mode": "embedding", "force": "true"},
                              files={"audio_sample": ("clip.wav", clips[i], "audio/wav")})

            timed(OPS[11], upload)
            out["rss_end_mb"] = C.rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    return out


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    C.size_options(p, "timed requests")
    args = p.parse_args()
    ctx = C.setup("service_scale", args)
    sizes = C.library_sizes(args)
    repeat = 10 if ctx.quick else args.repeat
    with workspace(args.keep, "voicebank-service-scale-") as work:
        results = [measure(library(work, n, fill_tagged), n, repeat) for n in sizes]
    rows = C.latency_rows(results, OPS)
    rows.append(["server start to ready, s", *[f"{r['start_s']:.1f}" for r in results], ""])
    rows.append(["first search (loads the index), s", *[f"{r['first_search_s']:.2f}" for r in results], ""])
    rows.append(["server resident memory when ready, MiB", *[f"{r['rss_start_mb']:.0f}" for r in results], ""])
    rows.append(["server resident memory at the end, MiB", *[f"{r['rss_end_mb']:.0f}" for r in results], ""])
    C.print_table(f"The service at {', '.join(f'{n:,}' for n in sizes)} voices (models taken out; {repeat} requests "
                  "each, one at a time over loopback)", C.size_headers(sizes), rows)
    C.write_json(ctx, {"environment": C.environment(ctx), "results": json.loads(json.dumps(results))})


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
