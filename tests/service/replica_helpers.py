"""Replicas of ``voicebank serve`` over one shared library (a real PostgreSQL and S3 server from cluster_fixtures):
each a subprocess on a loopback port of its own, with a local cache directory of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from service_helpers import HOST, ROOT, free_port

T = TypeVar("T")


class Replica:
    """``voicebank --blobs BLOBS serve --library CATALOGUE`` in a subprocess (its log in ``log``)."""

    def __init__(self, catalogue: str, blobs: str, weights: Path, tmp: Path, *args: str,
                 keys_file: Path | bool | None = None, port: int | None = None) -> None:
        """``keys_file``: default ``tmp/keys.json``; ``False``: none given (the keys in the catalogue)."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()  # a replica restarted in place: the port it had
        self.url = f"http://{HOST}:{self.port}"
        self.log = tmp / "server.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        env["VOICEBANK_CACHE_DIR"] = str(tmp / "cache")  # each replica its own host's cache
        env.setdefault("OMP_NUM_THREADS", "1")
        env.pop("VOICEBANK_LIBRARY", None)
        env.pop("VOICEBANK_KEYS_FILE", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "voicebank.cli", "--blobs", blobs, "serve", "--host", HOST, "--port",
                 str(self.port), "--library", catalogue, "--weights", str(weights),
                 *([] if keys_file is False else ["--keys-file", str(keys_file or tmp / "keys.json")]),
                 "--log-format", "json", *args],
                stdout=out, stderr=out, env=env, cwd=str(tmp))

    def wait_ready(self, timeout: float = 180) -> Replica:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voicebank serve exited with {self.proc.returncode}:\n"
                                   f"{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"voicebank serve did not become ready:\n{self.log.read_text()[-3000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def until(check: Callable[[], T | None], timeout: float = 10.0, step: float = 0.01) -> tuple[T, float]:
    """``(the first truthy value of check(), seconds it took)``; AssertionError after ``timeout``."""
    t0 = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
