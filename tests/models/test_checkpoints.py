"""Finding and reading checkpoints: explicit paths, the env var, the Hugging Face cache layout, refusals."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from voicebank.errors import WeightsError, WeightsNotFoundError
from voicebank.models.checkpoints import find_weights, fingerprint, read_tensors
from voicebank.settings import ENV_WEIGHTS


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No real cache or env var leaks into these tests."""
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-empty"))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _touch_checkpoints(directory, *names):
    directory.mkdir(parents=True, exist_ok=True)
    for n in names:
        save_file({"x": torch.zeros(1)}, str(directory / n)) if n.endswith(".safetensors") else torch.save(
            {"x": torch.zeros(1)}, directory / n)
    return directory


def test_explicit_directory(tmp_path):
    d = _touch_checkpoints(tmp_path / "w", "ve.safetensors", "s3gen.safetensors")
    files = find_weights(d)
    assert files.ve == d / "ve.safetensors" and files.s3gen == d / "s3gen.safetensors"


@pytest.mark.parametrize(("variant", "present", "expected"), [
    ("english", ["s3gen.pt", "s3gen_meanflow.safetensors"], "s3gen.pt"),
    ("turbo", ["s3gen.safetensors", "s3gen_meanflow.safetensors"], "s3gen_meanflow.safetensors"),
    ("turbo", ["s3gen.safetensors"], "s3gen.safetensors"),
    ("multilingual", ["s3gen.safetensors", "s3gen.pt"], "s3gen.pt"),
    ("vc", ["s3gen_meanflow.safetensors"], "s3gen_meanflow.safetensors"),
])
def test_variant_prefers_its_own_s3gen_file_and_falls_back(tmp_path, variant, present, expected):
    d = _touch_checkpoints(tmp_path / "w", "ve.safetensors", "ve.pt", *present)
    files = find_weights(d, variant=variant)
    assert files.s3gen is not None and files.s3gen.name == expected
    if variant == "multilingual":
        assert files.ve is not None and files.ve.name == "ve.pt"
    if variant == "vc":
        assert files.ve is None


def test_a_fallback_to_another_variants_files_is_said_once(tmp_path, caplog):
    import logging

    from voicebank.models import checkpoints

    d = _touch_checkpoints(tmp_path / "w", "ve.safetensors", "s3gen.safetensors")
    logger = logging.getLogger(checkpoints.__name__)
    logger.addHandler(caplog.handler)  # whatever the CLI's handler did to the "voicebank" logger's propagation
    caplog.set_level(logging.WARNING, logger=checkpoints.__name__)
    try:
        assert find_weights(d, variant="english").s3gen == d / "s3gen.safetensors"
        assert caplog.records == []  # its own files: nothing to say
        files = find_weights(d, variant="multilingual")
        n = len(caplog.records)
        find_weights(d, variant="multilingual")
        assert len(caplog.records) == n  # said once per process
    finally:
        logger.removeHandler(caplog.handler)
    assert files.s3gen == d / "s3gen.safetensors" and files.ve == d / "ve.safetensors"
    said = sorted({r.getMessage() for r in caplog.records})
    assert len(said) == 2, said  # the voice encoder and S3Gen
    assert any("no s3gen.pt in " + str(d) in m and "using s3gen.safetensors (the english variant's S3Gen" in m
               for m in said), said
    assert any("no ve.pt in" in m and "using ve.safetensors" in m for m in said), said
    assert all(m.startswith("variant 'multilingual'") for m in said)


def test_env_var(tmp_path, monkeypatch):
    d = _touch_checkpoints(tmp_path / "env", "ve.safetensors", "s3gen.safetensors")
    monkeypatch.setenv(ENV_WEIGHTS, str(d))
    assert find_weights().source == f"{ENV_WEIGHTS}={d}"


def test_hugging_face_cache_layout(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    repo = cache / "models--ResembleAI--chatterbox"
    blobs = repo / "blobs"
    _touch_checkpoints(blobs, "ve.safetensors", "s3gen.safetensors")
    (blobs / "ve.safetensors").rename(blobs / "aaaa")
    (blobs / "s3gen.safetensors").rename(blobs / "bbbb")
    snap = repo / "snapshots" / "rev123"
    snap.mkdir(parents=True)
    os.symlink(blobs / "aaaa", snap / "ve.safetensors")
    os.symlink(blobs / "bbbb", snap / "s3gen.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    files = find_weights()
    assert files.ve == snap / "ve.safetensors" and files.source == "hf-cache:ResembleAI/chatterbox"
    assert read_tensors(files.ve)["x"].shape == (1,)
    # Turbo looks in chatterbox-turbo first and falls back to the shared tensors of chatterbox
    assert find_weights(variant="turbo").s3gen == snap / "s3gen.safetensors"


def test_nothing_found_lists_what_was_tried(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        find_weights()
    msg = str(info.value)
    assert "ResembleAI/chatterbox" in msg and "--weights" in msg and "--download" in msg


def test_incomplete_directory(tmp_path):
    d = _touch_checkpoints(tmp_path / "w", "ve.safetensors")
    with pytest.raises(WeightsNotFoundError, match=r"s3gen\.safetensors"):
        find_weights(d)
    assert find_weights(d, need_s3gen=False).ve == d / "ve.safetensors"


def test_missing_path_and_single_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        find_weights(tmp_path / "nope")
    f = _touch_checkpoints(tmp_path / "w", "ve.safetensors") / "ve.safetensors"
    assert find_weights(f, need_s3gen=False).ve == f
    with pytest.raises(WeightsNotFoundError, match="single file"):
        find_weights(f)


def test_read_tensors_filters_prefixes_lazily(tmp_path):
    save_file({"tokenizer.a": torch.ones(2), "flow.b": torch.ones(3), "speaker_encoder.c": torch.ones(1)},
              str(tmp_path / "s3gen.safetensors"))
    state = read_tensors(tmp_path / "s3gen.safetensors", prefixes=("tokenizer.", "speaker_encoder."))
    assert sorted(state) == ["speaker_encoder.c", "tokenizer.a"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    p = tmp_path / "ve.pt"
    with open(p, "wb") as f:
        pickle.dump({"x": _Exploit()}, f)
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        read_tensors(p)


def test_truncated_safetensors(tmp_path):
    p = tmp_path / "ve.safetensors"
    save_file({"x": torch.ones(100)}, str(p))
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        read_tensors(p)


def test_fingerprint_is_stable_and_content_sensitive():
    a = {"w": torch.arange(100000, dtype=torch.float32)}
    b = {"w": torch.arange(100000, dtype=torch.float32)}
    c = {"w": torch.arange(100000, dtype=torch.float32) * 2}
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert len(fingerprint(a)) == 16
