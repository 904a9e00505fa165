"""``voicebank serve --executor ray``: uploads extracted by Ray actors on a real local cluster, a real uvicorn on
loopback, an API process that loads no model; a full queue (429), a worker killed mid-extraction (retried, or a
clean 503 with nothing stored) and an unreachable cluster (one line at start-up)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from audio_fixtures import speechlike
from service_helpers import ROOT, ThreadServer, free_port, wav_bytes

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep the local cluster on 127.0.0.1
ray = pytest.importorskip("ray")

from voicebank.batch.remote import PrepareWorker  # noqa: E402
from voicebank.batch.runner import connect_ray  # noqa: E402

JOB_DELAY_S = 1.5
"""How long each upload's job sleeps on the worker before extracting: time to see it in flight."""


class SlowWorker(PrepareWorker):
    """A worker whose uploads take :data:`JOB_DELAY_S` longer (pickled by value: the actors cannot import tests)."""

    def prepare(self, clip, options, name):  # type: ignore[no-untyped-def]
        time.sleep(JOB_DELAY_S)
        return super().prepare(clip, options, name)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs on loopback (shut down after the module); its address."""
    if ray.is_initialized():
        ray.shutdown()
    connect_ray(num_cpus=2)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray.get_runtime_context().gcs_address
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.fixture(scope="module")
def server(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory,
           golden_weights_dir: Path) -> Iterator[ThreadServer]:
    """The service with its extraction on one slow Ray actor, no queue (a second upload at once gets 429)."""
    from voicebank.service import ServiceSettings, create_app
    from voicebank.service.remote import remote_library

    settings = ServiceSettings(library=tmp_path_factory.mktemp("ray") / "lib", weights=golden_weights_dir,
                               executor="ray", ray_workers=1, queue_size=0, threads=1)
    library = remote_library(settings, worker_class=SlowWorker)
    with ThreadServer(create_app(settings, library=library)) as srv:
        yield srv


def clip(seed: int, seconds: float = 3.0) -> bytes:
    return wav_bytes(speechlike(seconds, 16000, seed=seed), 16000)


def upload(srv: ThreadServer, name: str, data: bytes, mode: str = "conditionals") -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/audio/voices", files={"audio_sample": (f"{name}.wav", data)},
                      data={"name": name, "consent": "test", "force": "true", "mode": mode}, timeout=120)


def library_of(srv: ThreadServer):  # type: ignore[no-untyped-def]
    return srv.app.state.service.library  # type: ignore[attr-defined]


def test_a_ray_upload_equals_a_local_one_and_the_api_process_loads_no_model(
        server: ThreadServer, tmp_path: Path, golden_weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicebank.batch.remote import RemoteEngine
    from voicebank.engine.engine import Engine
    from voicebank.library import Library

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the API process built a model")

    monkeypatch.setattr(Engine, "_model", no_model)  # any model built in this process fails the request
    lib = library_of(server)
    assert isinstance(lib.engine, RemoteEngine)
    data = clip(1)
    r = upload(server, "alice", data)
    assert r.status_code == 201, r.text
    a = upload(server, "bob", clip(2), mode="audio")  # audio mode: conditionals extracted on GET, remotely too
    assert a.status_code == 201, a.text
    got = httpx.get(f"{server.url}/v1/audio/voices/bob/conditionals", timeout=120)
    assert got.status_code == 200, got.text
    for route in ("embed", "extract"):  # the stateless tools compute on the actors too
        r = httpx.post(f"{server.url}/v1/{route}", files={"audio_sample": ("x.wav", clip(3))}, timeout=120)
        assert r.status_code == 200, r.text
    monkeypatch.undo()

    with Library(tmp_path / "local", weights=golden_weights_dir, threads=1) as local:
        import io

        f = io.BytesIO(data)
        f.name = "alice.wav"
        local.add(f, "alice", mode="conditionals", consent="test", force=True)
        speaker, xvector = local.vectors("alice")
        remote_speaker, remote_xvector = lib.vectors("alice")
        np.testing.assert_array_equal(remote_speaker, speaker)
        # CAM++ runs with the actor's torch threads: its sums may round differently in the last bits
        np.testing.assert_allclose(remote_xvector, xvector, rtol=0, atol=1e-6)
        ours, theirs = lib.get("alice").tensors(), local.get("alice").tensors()
        assert ours.keys() == theirs.keys()
        for key in theirs:  # tokens equal; floats to the last bits of CAM++'s sums (see above)
            a, b = ours[key].numpy(), theirs[key].numpy()
            if a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=key)
            else:
                np.testing.assert_array_equal(a, b, err_msg=key)
    assert lib.check().ok


def test_a_refusal_on_the_worker_comes_back_as_itself(server: ThreadServer) -> None:
    """The reference inspection runs on the worker: its refusal is the same 422 as a local one, nothing stored."""
    noise = wav_bytes(np.random.default_rng(5).uniform(-0.9, 0.9, 16000 * 3).astype(np.float32), 16000)
    r = httpx.post(f"{server.url}/v1/audio/voices", files={"audio_sample": ("noise.wav", noise)},
                   data={"name": "noise", "consent": "test"}, timeout=120)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "reference_rejected"
    assert "noise" not in library_of(server)


def test_a_full_queue_answers_429_with_retry_after(server: ThreadServer) -> None:
    barrier = threading.Barrier(3)

    def post(i: int) -> httpx.Response:
        barrier.wait()
        return upload(server, f"q{i}", clip(100 + i))

    with ThreadPoolExecutor(3) as ex:
        responses = list(ex.map(post, range(3)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 429, 429], [r.text for r in responses]
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "queue_full"
            assert int(r.headers["retry-after"]) >= 1


def _kill_during_upload(srv: ThreadServer, name: str, data: bytes) -> httpx.Response:
    """Upload ``data`` and SIGKILL the Ray worker's process while its job runs."""
    lib = library_of(srv)
    pid = ray.get(lib.pool.actor(0).pid.remote())
    result: dict[str, httpx.Response] = {}
    t = threading.Thread(target=lambda: result.setdefault("r", upload(srv, name, data)))
    t.start()
    deadline = time.monotonic() + 30
    while srv.app.state.service.pool.running == 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    time.sleep(JOB_DELAY_S / 3)  # the job is on the worker, sleeping before its extraction
    os.kill(pid, signal.SIGKILL)
    t.join(120)
    return result["r"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills the worker process")
def test_a_worker_killed_mid_extraction_is_retried_or_fails_cleanly(server: ThreadServer) -> None:
    lib = library_of(server)
    # once: the job is sent again to the worker's successor, and the voice is stored whole
    r = _kill_during_upload(server, "survivor", clip(200))
    assert r.status_code == 201, r.text
    assert lib.show("survivor").mode == "conditionals"
    # with no retry left: 503 with Retry-After, nothing stored, and the next upload works
    lib.pool.retries = 0
    try:
        r = _kill_during_upload(server, "lost", clip(201))
    finally:
        lib.pool.retries = 1
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "extraction_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert "lost" not in lib
    again = upload(server, "lost", clip(201))
    assert again.status_code == 201, again.text
    assert lib.check().ok


def test_serve_with_an_unreachable_cluster_says_so_in_one_line(tmp_path: Path, golden_weights_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "voicebank.cli", "serve", "--port", str(free_port()),
                           "--library", str(tmp_path / "lib"), "--weights", str(golden_weights_dir),
                           "--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the Ray cluster" in lines[0], done.stderr


def test_serve_executor_ray_on_the_command_line(ray_cluster: str, tmp_path: Path, golden_weights_dir: Path) -> None:
    """`voicebank serve --executor ray --ray-address HOST:PORT`: a second driver on the same cluster; the upload is
    extracted there and stored here."""
    from voicebank.library import Library

    from service_helpers import ProcessServer

    srv = ProcessServer(tmp_path / "lib", golden_weights_dir, "--executor", "ray", "--ray-address", ray_cluster,
                        "--ray-workers", "1", "--threads", "1", log=tmp_path / "server.log").wait_ready(180)
    try:
        r = httpx.post(f"{srv.url}/v1/audio/voices", files={"audio_sample": ("c.wav", clip(300))},
                       data={"name": "cli", "consent": "test", "force": "true"}, timeout=120)
        assert r.status_code == 201, r.text
    finally:
        srv.proc.send_signal(signal.SIGTERM)  # Ray's driver exits 0 or 1 rather than re-raising SIGTERM
        rc = srv.proc.wait(60)
    log = (tmp_path / "server.log").read_text()
    assert '"message": "stopped"' in log, (rc, log[-2000:])
    assert "1 ray workers" in log, log
    with Library(tmp_path / "lib") as lib:
        assert lib.names() == ["cli"] and lib.check().ok
