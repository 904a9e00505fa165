"""Fixtures of the service tests: one loaded extractor, a library, API keys and a live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from service_helpers import ThreadServer, make_server


@pytest.fixture(scope="session")
def service_extractor(golden_weights_dir):
    from voicebank.engine import Extractor

    return Extractor.from_local(golden_weights_dir).load()


@pytest.fixture(scope="session", autouse=True)
def _one_thread_for_service_tests():
    """One intra-op torch thread: the server's workers share two busy cores with the clients."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shared_env(monkeypatch):
    """No progress bars, no Hugging Face network, and none of the user's library, bucket, weights or keys file:
    the shared-library tests name each of them."""
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("VOICEBANK_LIBRARY", "VOICEBANK_BLOBS", "VOICEBANK_WEIGHTS", "VOICEBANK_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server_factory(tmp_path, golden_weights_dir, service_extractor) -> Iterator:
    """``start(**settings)``: a live server on a fresh library (stopped at the end of the test)."""
    started: list[ThreadServer] = []

    def start(**settings) -> ThreadServer:
        srv = make_server(tmp_path / f"s{len(started)}", golden_weights_dir, service_extractor, **settings)
        srv.__enter__()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.__exit__(None, None, None)
