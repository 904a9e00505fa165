"""A TLS-terminating reverse proxy in front of ``voicebank serve`` replicas, as docs/shared-store.md configures it:
Debian's nginx as a subprocess (``nginx -g 'daemon off;'``) with a generated configuration, a self-signed
certificate made by the ``openssl`` command for this run, HTTPS on a free loopback port and the replicas as
one round-robin upstream.  Skipped with the reason only when the nginx or openssl binary is not installed
(``.ci/run`` installs nginx)."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from audio_fixtures import speechlike
from service_helpers import HOST, free_port, wav_bytes

NGINX_CONF = """\
worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}

http {{
    log_format upstreams '$status $upstream_addr $request_method $uri';
    access_log {prefix}/access.log upstreams;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

{site}}}
"""
"""The test's whole ``nginx.conf``: everything in the proxy's own directory, the site as in the docs."""

SITE = """\
upstream voicebank {{
{servers}    keepalive 64;                # connections kept open to the replicas
    keepalive_timeout 4s;        # below uvicorn's 5 s, so nginx never reuses a connection a replica is closing
}}

server {{
    listen {listen} ssl;
    server_name {server_name};
    ssl_certificate     {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;

    client_max_body_size 64m;    # uploads (the service has its own limit and answers 413 above it)
    proxy_read_timeout 300s;     # an upload waits for its extraction

    location / {{
        proxy_pass http://voicebank;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
}}
"""
"""The site of docs/shared-store.md ("Behind a reverse proxy"), filled in per run."""

UPSTREAM_SERVER = "    server {address} max_fails=1 fail_timeout=2s;\n"


def site_config(upstreams: Sequence[str], listen: str, cert: Path | str, key: Path | str,
                server_name: str = "localhost") -> str:
    """The ``server``/``upstream`` blocks proxying HTTPS on ``listen`` to ``upstreams`` (``host:port`` each)."""
    servers = "".join(UPSTREAM_SERVER.format(address=a) for a in upstreams)
    return SITE.format(servers=servers, listen=listen, server_name=server_name, cert=cert, key=key)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)``: a new self-signed certificate for ``localhost`` and ``127.0.0.1``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed (apt-get install openssl)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def nginx_binary() -> str:
    """The nginx binary; the test is skipped, saying so, when it is not installed."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return found


class Proxy:
    """nginx terminating TLS on ``https://127.0.0.1:PORT`` for ``upstreams`` (round robin), in ``directory``."""

    def __init__(self, upstreams: Sequence[str], directory: Path) -> None:
        self.nginx = nginx_binary()
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self_signed_certificate(directory)
        self.port = free_port()
        self.url = f"https://{HOST}:{self.port}"
        # as root, nginx's worker would run as nobody, who cannot reach a test's temp directory
        user = "user root root;\n" if os.geteuid() == 0 else ""
        site = site_config(upstreams, f"{HOST}:{self.port}", self.cert, self.key)
        self.conf = directory / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(user=user, prefix=directory, site=site))
        self.log = directory / "nginx.out"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([self.nginx, "-p", str(directory), "-c", str(self.conf), "-g", "daemon off;"],
                                         stdout=out, stderr=out, start_new_session=True)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this proxy's certificate only (verified, host name checked)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=120, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = 30) -> Proxy:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.errors()}")
            try:
                with self.client() as c:
                    if c.get("/healthz", timeout=2).status_code == 200:
                        return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not answer in {timeout:.0f} s:\n{self.errors()}")
            time.sleep(0.1)

    def errors(self) -> str:
        """nginx's own output and error log."""
        parts = [p.read_text()[-3000:] for p in (self.log, self.dir / "error.log") if p.exists()]
        return "\n".join(parts)

    def access(self) -> list[tuple[int, str, str, str]]:
        """The access log: ``(status, upstream address(es), method, path)`` per request."""
        path = self.dir / "access.log"
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            status, upstream, method, uri = line.split(" ", 3)
            rows.append((int(status), upstream, method, uri))
        return rows

    def spread(self, method: str | None = None) -> Counter[str]:
        """Requests per upstream address (the last one tried), of ``method`` only if given."""
        return Counter(up.split(", ")[-1] for _, up, m, _ in self.access() if method in (None, m))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


def upload(c: httpx.Client, name: str, seed: int, mode: str = "conditionals") -> httpx.Response:
    """``POST /v1/audio/voices``: a 2-3 s speech-like clip of its own (from ``seed``) as ``name``."""
    rng = np.random.default_rng(seed)
    audio = wav_bytes(speechlike(float(rng.uniform(2.0, 3.0)), 16000, seed=seed), 16000)
    return c.post("/v1/audio/voices", files={"audio_sample": ("c.wav", audio)},
                  data={"name": name, "consent": "test", "force": "true", "mode": mode})
