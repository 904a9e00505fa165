"""``--threads`` on every command that runs models (issue 20, item 3); its default is the CPUs this process may
use (:func:`voicebank.cpus.usable_cpus`), shared out between the workers, not ``os.cpu_count()``."""

from __future__ import annotations

import pytest
import typer

from voicebank import cpus

from audio_fixtures import GOLDEN_INPUTS
from faults import run_cli

CLIP = GOLDEN_INPUTS / "short_3s_22k.wav"
MODEL_COMMANDS = [("embed",), ("extract",), ("add",), ("export",), ("compare",), ("search",),
                  ("library", "reextract"), ("serve",), ("batch",)]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    import torch

    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)
    monkeypatch.delenv("VOICEBANK_WEIGHTS", raising=False)
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def command(path: tuple[str, ...]):
    from voicebank.cli import app, register

    register(app)
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd


@pytest.mark.parametrize("path", MODEL_COMMANDS, ids=" ".join)
def test_every_command_that_runs_models_takes_threads(path):
    options = {o for p in command(path).params for o in p.opts}
    assert "--threads" in options, path
    assert not any("thread" in o for o in options - {"--threads"}), options  # one spelling


def test_embed_and_extract_use_threads_or_the_usable_cpus(tmp_path, capsys, monkeypatch, golden_weights_dir):
    from voicebank.engine import shared_engines

    def engines_with(threads: int) -> list:
        return [e for e in shared_engines() if e.threads == threads and e.weights is not None
                and e.weights.resolve() == golden_weights_dir.resolve()]

    rc, _out, err = run_cli(capsys, ["embed", CLIP, "--weights", golden_weights_dir, "--threads", "1"])
    assert rc == 0, err
    assert engines_with(1)
    monkeypatch.setattr(cpus, "usable_cpus", lambda *a, **k: 3)
    rc, _out, err = run_cli(capsys, ["extract", CLIP, "-o", tmp_path / "v.safetensors", "--weights",
                                     golden_weights_dir])
    assert rc == 0, err
    assert engines_with(3)  # the default: usable_cpus(), not os.cpu_count()


def test_the_library_builds_its_engine_with_threads(tmp_path, golden_weights_dir):
    from voicebank.library import Library

    with Library(tmp_path / "lib", weights=golden_weights_dir, threads=1) as lib:
        assert lib.engine.threads == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("args", "usable", "expected"), [([], 4, 2), (["--threads", "3"], 4, 3), ([], 1, 1)])
def test_serve_shares_the_usable_cpus_between_its_workers(tmp_path, capsys, monkeypatch, args, usable, expected):
    from voicebank.cli import service

    seen = []

    def stop(settings):
        seen.append(settings.threads)
        raise service.ServeError("stopped before starting (test)")

    monkeypatch.setattr(service, "preflight", stop)
    monkeypatch.setattr(cpus, "usable_cpus", lambda *a, **k: usable)
    rc, _out, err = run_cli(capsys, ["serve", "--port", "0", "--library", tmp_path / "lib", "--workers", "2",
                                     *args])
    assert rc == 1 and "stopped before starting" in err, err
    assert seen == [expected]


def test_batch_local_workers_share_the_usable_cpus(monkeypatch):
    from voicebank.batch import runner

    monkeypatch.setattr(runner, "usable_cpus", lambda *a, **k: 5)
    assert runner.local_worker_threads(None, 2) == 2
    assert runner.local_worker_threads(None, 8) == 1
    assert runner.local_worker_threads(3, 2) == 3
