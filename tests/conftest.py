"""Shared fixtures: the golden weights (generated once per session) and the golden cases."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cluster_fixtures import pg_database, postgres_server, s3_bucket, s3_server, shared_location  # noqa: F401
from golden_cases import EXPECTED, METRICS
from golden_weights import write_golden_weights

_CACHE_DIR: str | None = None


def pytest_configure(config):
    """Keep voicebank's user caches (the weights fingerprints) of the whole run, subprocesses included, in a
    directory of its own rather than the user's cache directory."""
    global _CACHE_DIR
    _CACHE_DIR = tempfile.mkdtemp(prefix="voicebank-test-cache-")
    os.environ["VOICEBANK_CACHE_DIR"] = _CACHE_DIR


def pytest_unconfigure(config):
    if _CACHE_DIR:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def golden_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ``ve.safetensors`` and ``s3gen.safetensors`` of the golden recipe."""
    return write_golden_weights(tmp_path_factory.mktemp("golden-weights"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (use with ``pytest.mark.usefixtures``): on a loaded 2-core
    machine, spinning OpenMP threads make the library's threaded extraction 10-30x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def golden_intermediates():
    """``case -> {name: tensor}`` of upstream's intermediates (loaded lazily, cached)."""
    from safetensors.torch import load_file

    cache: dict[str, dict] = {}

    def get(case: str) -> dict:
        if case not in cache:
            cache[case] = load_file(str(EXPECTED / f"{case}.intermediates.safetensors"))
        return cache[case]

    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the measured figures tests record in :data:`METRICS`."""
    if METRICS:
        terminalreporter.section("voicebank measurements")
        for k, v in METRICS.items():
            terminalreporter.write_line(f"{k}: {v}")
