"""The voice service under load: ``voicebank serve`` in its own process, driven over loopback HTTP.

* cached ``GET .../conditionals`` of one voice with 1, 8 and 50 concurrent keep-alive clients: requests/s,
  p50/p99 latency, errors; the same with ``If-None-Match`` (304 revalidation);
* switching among 500 voices round-robin with a cache smaller than all of them (misses served from the store);
* upload -> ready voice (``POST /v1/audio/voices``, conditionals mode) of a 10 s clip against the in-process
  ``Library.add`` of the same clip;
* resident memory of the server with 500 voices and a 64 MiB cache budget, before and after every voice
  was served twice.

The load generator is a minimal asyncio HTTP/1.1 client in this process (no third-party client overhead);
the server runs with the same torch thread count.  The 500 voices are made from one extraction of the
10 s clip with perturbed speaker embeddings and distinct source hashes (imported as voice files), so that the
library is built in seconds; every voice file has the size of a real 10 s voice.

    python benchmarks/service.py [--quick] [--json OUT] [--cache DIR] [--weights DIR] [--threads 2]
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import _common as C

N_VOICES = 500
HOST = "127.0.0.1"


# --- the library and the server ------------------------------------------------------------------------


def build_library(ctx: C.Context, weights: Path, clip: Path, n: int) -> Path:
    """A library of ``n`` conditionals voices ``v000``... (built once in the cache)."""
    import numpy as np
    import torch

    from voicebank.library import Library
    from voicebank.voice import Voice

    root = ctx.cache / "service-bench" / f"lib-{n}"
    if (root / "COMPLETE").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    files = ctx.cache / "service-bench" / "files"
    files.mkdir(parents=True, exist_ok=True)
    with Library(root, weights=weights) as lib:
        base = lib.extractor("english").extract(clip)
        assert base.t3 is not None
        emb = base.t3.speaker_emb.reshape(-1).numpy()
        for i in range(n):
            rng = np.random.default_rng(i)
            e = emb + 0.3 * rng.standard_normal(emb.shape).astype(np.float32) / np.sqrt(emb.size)
            e = (e / np.linalg.norm(e)).astype(np.float32)
            voice = Voice(replace(base.t3, speaker_emb=torch.from_numpy(e.reshape(1, -1).copy())), base.gen,
                          replace(base.metadata, source_sha256=hashlib.sha256(f"bench-{i}".encode()).hexdigest()))
            path = voice.save(files / f"v{i:03d}.safetensors")
            lib.import_file(path, f"v{i:03d}", consent="benchmark")
    (root / "COMPLETE").write_text("ok\n")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """``voicebank serve`` in a child process."""

    def __init__(self, ctx: C.Context, library: Path, weights: Path, *args: str) -> None:
        self.port = free_port()
        env = C.child_env(ctx.threads)
        env["PYTHONPATH"] = os.pathsep.join([str(C.REPO / "src"), env.get("PYTHONPATH", "")])
        self.log = open(ctx.cache / "service-bench" / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "voicebank.cli", "serve", "--host", HOST, "--port",
                                      str(self.port), "--library", str(library), "--weights", str(weights), *args],
                                     env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"voicebank serve exited ({self.proc.returncode}); see {self.log.name}")
            try:
                status, _, _ = asyncio.run(fetch_once(self.port, "/readyz"))
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("voicebank serve did not become ready")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def metric(self, name: str) -> float:
        _, _, body = asyncio.run(fetch_once(self.port, "/metrics"))
        m = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.M)
        return float(m.group(1)) if m else float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


# --- a small asyncio HTTP/1.1 client -------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = await reader.readexactly(n) if n else b""
    return status, headers, body


async def fetch_once(port: int, path: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}Connection: close\r\n\r\n".encode())
        return await _read_response(reader)
    finally:
        writer.close()


async def _client(port: int, paths: list[str], offset: int, extra: str, deadline: float,
                  lat: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    i = offset
    try:
        while time.perf_counter() < deadline:
            path = paths[i % len(paths)]
            i += 1
            t = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode())
            status, _, _ = await _read_response(reader)
            lat.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def load(port: int, paths: list[str], clients: int, seconds: float, extra: str = "") -> dict[str, Any]:
    """``clients`` keep-alive connections requesting ``paths`` round-robin for ``seconds``."""

    async def run() -> tuple[list[float], dict[int, int], float]:
        lat: list[float] = []
        statuses: dict[int, int] = {}
        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(*(_client(port, paths, k * 7919, extra, deadline, lat, statuses)
                               for k in range(clients)))
        return lat, statuses, time.perf_counter() - t0

    lat, statuses, wall = asyncio.run(run())
    xs = sorted(lat)

    def pct(p: float) -> float:
        return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))] * 1e3

    return {"clients": clients, "requests": len(xs), "rps": len(xs) / wall, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "mean_ms": statistics.fmean(xs) * 1e3, "statuses": statuses}


# --- the scenarios -------------------------------------------------------------------------------------


def library_add_child(library: str, weights: str, clip: str) -> None:
    """(In a fresh process, like the server) for each line on stdin, time ``Library.add`` of ``clip`` (then
    remove it) and print the seconds.  The adds run in one worker thread, as the server's do: the same code in
    the same kind of thread, so the difference is what the service adds (HTTP, multipart, checks, queue)."""
    from concurrent.futures import ThreadPoolExecutor

    from voicebank.library import Library

    def once(lib: Library) -> float:
        t = time.perf_counter()
        lib.add(Path(clip), "up", mode="conditionals", consent="benchmark", force=True)
        dt = time.perf_counter() - t
        lib.remove("up")
        return dt

    with Library(library, weights=weights) as lib, ThreadPoolExecutor(1) as worker:
        lib.extractor("english").load()
        print("ready", flush=True)
        for _ in sys.stdin:
            print(worker.submit(once, lib).result(), flush=True)


def upload_latency(ctx: C.Context, weights: Path, clip: Path, repeat: int) -> dict[str, Any]:
    """``POST /v1/audio/voices`` (conditionals mode) against ``Library.add`` of the same clip in another fresh
    process, alternating (never at the same time) so that a shared machine's load drift hits both alike."""
    import httpx

    root = ctx.cache / "service-bench"
    for d in ("upload-server", "upload-local"):
        shutil.rmtree(root / d, ignore_errors=True)
    data = clip.read_bytes()
    env = C.child_env(ctx.threads)
    env["PYTHONPATH"] = os.pathsep.join([str(C.REPO / "src"), env.get("PYTHONPATH", "")])
    server = Server(ctx, root / "upload-server", weights, "--workers", "1")
    child = subprocess.Popen([sys.executable, __file__, "_library_add", str(root / "upload-local"), str(weights),
                              str(clip)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise SystemExit("the Library.add child did not start")
    service_s: list[float] = []
    local_s: list[float] = []
    try:
        with httpx.Client(base_url=f"http://{HOST}:{server.port}", timeout=300) as http:
            for i in range(repeat + 1):  # the first round warms up and is not counted
                t = time.perf_counter()
                r = http.post("/v1/audio/voices", files={"audio_sample": (clip.name, data)},
                              data={"name": "up", "consent": "benchmark", "mode": "conditionals", "force": "true"})
                dt = time.perf_counter() - t
                if r.status_code != 201:
                    raise SystemExit(f"upload failed: {r.status_code} {r.text[:300]}")
                http.delete("/v1/audio/voices/up")
                child.stdin.write("add\n")
                child.stdin.flush()
                dl = float(child.stdout.readline())
                if i:
                    service_s.append(dt)
                    local_s.append(dl)
    finally:
        server.stop()
        child.stdin.close()
        child.wait(60)
    svc, loc = statistics.median(service_s), statistics.median(local_s)
    return {"service_median_s": svc, "library_median_s": loc, "overhead": svc / loc - 1, "n": len(service_s),
            "service_s": service_s, "library_s": local_s}


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    ctx = C.setup("service", args)
    weights, weights_desc = C.weights(ctx)
    clip = C.clips(ctx)["10s"]
    seconds = 3.0 if ctx.quick else 10.0
    repeat = 2 if ctx.quick else 7
    print(f"building the {N_VOICES}-voice library (once) ...", flush=True)
    lib500 = build_library(ctx, weights, clip, N_VOICES)
    voice_bytes = (ctx.cache / "service-bench" / "files" / "v000.safetensors").stat().st_size
    results: dict[str, Any] = {"environment": C.environment(ctx, weights_desc), "voice_file_bytes": voice_bytes}
    one = ["/v1/audio/voices/v000/conditionals"]

    # cached GET and revalidation, then memory, on a 64 MiB cache
    server = Server(ctx, lib500, weights, "--cache-mb", "64")
    try:
        rss_ready = server.rss_mb()
        _, headers, _ = asyncio.run(fetch_once(server.port, one[0]))
        etag = headers["etag"]
        cached, reval = [], []
        for clients in (1, 8, 50):
            cached.append(load(server.port, one, clients, seconds))
            reval.append(load(server.port, one, clients, seconds, extra=f"If-None-Match: {etag}\r\n"))
        rss_warm = server.rss_mb()  # request paths exercised, one voice cached
        everyone = [f"/v1/audio/voices/v{i:03d}/conditionals" for i in range(N_VOICES)]
        for _ in range(2):
            for path in everyone:
                status, _, _ = asyncio.run(fetch_once(server.port, path))
                assert status == 200, (path, status)
        memory = {"rss_ready_mb": rss_ready, "rss_warm_mb": rss_warm, "rss_after_mb": server.rss_mb(),
                  "cache_bytes": server.metric("voicebank_cache_bytes"),
                  "cache_entries": server.metric("voicebank_cache_entries"), "budget_mb": 64}
        memory["growth_mb"] = memory["rss_after_mb"] - rss_warm
    finally:
        server.stop()
    results.update(cached=cached, revalidation=reval, memory=memory)

    # 500 voices round-robin through a cache that holds about a fifth of them
    small_mb = max(1, round(N_VOICES * voice_bytes / 2**20 / 5))
    server = Server(ctx, lib500, weights, "--cache-mb", str(small_mb))
    try:
        everyone = [f"/v1/audio/voices/v{i:03d}/conditionals" for i in range(N_VOICES)]
        load(server.port, everyone, 1, 2.0)  # index warm-up
        rr = [load(server.port, everyone, c, seconds) for c in (1, 8)]
        hits, misses = server.metric("voicebank_cache_hits_total"), server.metric("voicebank_cache_misses_total")
    finally:
        server.stop()
    results["round_robin"] = {"cache_mb": small_mb, "runs": rr, "hit_ratio": hits / max(1.0, hits + misses)}

    print("timing uploads ...", flush=True)
    results["upload"] = upload_latency(ctx, weights, clip, repeat)

    print(C.describe_environment(results["environment"]))
    rows = []
    for label, runs in (("cached GET (200, full file)", cached), ("revalidation (If-None-Match → 304)", reval)):
        for r in runs:
            rows.append([label, r["clients"], C.fmt(r["rps"], 0), C.fmt(r["p50_ms"], 2), C.fmt(r["p99_ms"], 2),
                         _errors(r)])
    for r in rr:
        rows.append([f"{N_VOICES} voices round-robin, {small_mb} MiB cache", r["clients"], C.fmt(r["rps"], 0),
                     C.fmt(r["p50_ms"], 2), C.fmt(r["p99_ms"], 2), _errors(r)])
    C.print_table(f"GET /v1/audio/voices/{{id}}/conditionals ({voice_bytes / 1024:.0f} KiB voice files, "
                  f"{seconds:g} s per run)", ["what", "clients", "requests/s", "p50 ms", "p99 ms", "errors"], rows)
    up = results["upload"]
    C.print_table("Upload → ready voice (10 s clip, conditionals mode)", ["what", "median s"],
                  [["POST /v1/audio/voices", C.fmt(up["service_median_s"], 3)],
                   ["in-process Library.add", C.fmt(up["library_median_s"], 3)],
                   ["service overhead", f"{100 * up['overhead']:+.1f} %"]])
    C.print_table(f"Server memory, {N_VOICES} voices, 64 MiB cache", ["what", "MiB"],
                  [["RSS when ready (models loaded)", C.fmt(memory["rss_ready_mb"], 0)],
                   ["RSS after the load runs (one voice cached)", C.fmt(memory["rss_warm_mb"], 0)],
                   ["RSS after serving every voice twice", C.fmt(memory["rss_after_mb"], 0)],
                   ["growth while filling the cache", C.fmt(memory["growth_mb"], 0)],
                   ["cache held", C.fmt(memory["cache_bytes"] / 2**20, 1)]])
    print(f"round-robin cache hit ratio: {results['round_robin']['hit_ratio']:.2f}")
    C.write_json(ctx, results)


def _errors(run: dict[str, Any]) -> int:
    return sum(n for s, n in run["statuses"].items() if s not in (200, 304))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_library_add":
        library_add_child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
