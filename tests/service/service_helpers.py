"""Helpers of the service tests: a real uvicorn server on a loopback port, in a thread or a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def loopback_socket() -> socket.socket:
    """A listening TCP socket on a free loopback port (no race between choosing and binding the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(256)
    return sock


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """uvicorn serving ``app`` in a background thread of the test process, on a loopback port."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.app = app
        self.sock = loopback_socket()
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://{HOST}:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=5,  # type: ignore[arg-type]
                                timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


class ProcessServer:
    """``voicebank serve`` in a subprocess (so it can be killed), on a loopback port."""

    def __init__(self, library: Path, weights: Path, *args: str, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        env.setdefault("OMP_NUM_THREADS", "1")
        self.log_path = log
        out = open(log, "ab") if log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicebank.cli", "serve", "--host", HOST, "--port", str(self.port),
             "--library", str(library), "--weights", str(weights), *args],
            stdout=out, stderr=out, env=env, cwd=str(library.parent))

    def wait_ready(self, timeout: float = 120) -> ProcessServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voicebank serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("voicebank serve did not become ready")

    def kill(self) -> None:
        """``kill -9``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> bool:
        """SIGTERM; whether the server shut down gracefully: uvicorn (0.29 and later) re-raises the signal once it
        is done, so the exit status is -SIGTERM, and the log's last service line says the lifespan finished."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        logged = self.log_path.read_text() if self.log_path is not None else '"message": "stopped"'
        return rc == -signal.SIGTERM and '"message": "stopped"' in logged


def wav_bytes(samples: object, sample_rate: int) -> bytes:
    """A 16-bit WAV file of ``samples``."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_server(tmp: Path, weights: Path, extractor, **settings) -> ThreadServer:
    from voicebank.library import Library
    from voicebank.service import ServiceSettings, create_app

    lib = Library(tmp / "lib", weights=weights, engine=extractor.engine)
    app = create_app(ServiceSettings(library=lib.path, weights=weights, **settings), library=lib)
    return ThreadServer(app)
