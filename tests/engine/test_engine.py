"""The engine: models load on first need and only then, one copy per process, fingerprints without models."""

from __future__ import annotations

import pytest

from voicebank.engine import Engine, Extractor
from voicebank.library import Library
from voicebank.models.checkpoints import S3GEN_PREFIXES, file_fingerprint, file_fingerprints, fingerprint, read_tensors

from audio_fixtures import GOLDEN_INPUTS

CLIP = GOLDEN_INPUTS / "short_3s_22k.wav"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_weights_fingerprint_needs_no_model(golden_weights_dir):
    engine = Engine(golden_weights_dir)
    fps = {v: engine.weights_fingerprint(v) for v in ("english", "multilingual", "turbo", "vc")}
    assert engine.loaded_models() == [] and sum(engine.loads.values()) == 0
    assert fps["english"] == fps["turbo"] != fps["vc"]  # one set of golden files serves every variant
    # the same value the models' own tensors give (voices stored by older versions stay current)
    for prefixes, path in ((None, golden_weights_dir / "ve.safetensors"),
                           (S3GEN_PREFIXES, golden_weights_dir / "s3gen.safetensors")):
        assert file_fingerprint(path, prefixes) == fingerprint(read_tensors(path, prefixes))
    s3gen = golden_weights_dir / "s3gen.safetensors"
    groups = [S3GEN_PREFIXES, ("tokenizer.",), ("speaker_encoder.",)]
    assert file_fingerprints(s3gen, groups) == [fingerprint(read_tensors(s3gen, g)) for g in groups]


def test_embedding_only_add_never_builds_the_tokenizer(tmp_path, golden_weights_dir, monkeypatch):
    import voicebank.models.speech_tokenizer as tokenizer_module

    def refuse(*args, **kwargs):
        raise AssertionError("the speech tokenizer was built for an embedding-only add")

    monkeypatch.setattr(tokenizer_module.SpeechTokenizer, "from_state", classmethod(refuse))
    engine = Engine(golden_weights_dir)
    lib = Library(tmp_path / "lib", engine=engine)
    result = lib.add(CLIP, mode="embedding")
    assert result.status == "added"
    assert engine.loads == {"voice_encoder": 1, "speech_tokenizer": 0, "speaker_encoder": 1}


def test_one_copy_of_each_model_for_every_variant(golden_weights_dir):
    engine = Engine(golden_weights_dir)
    voices = {v: engine.extract(GOLDEN_INPUTS / "mid_12s.flac", v) for v in ("english", "multilingual", "turbo",
                                                                              "vc")}
    assert engine.loads == {"voice_encoder": 1, "speech_tokenizer": 1, "speaker_encoder": 1}
    assert len(engine.loaded_models()) == 3
    assert voices["vc"].t3 is None and voices["turbo"].t3 is not None
    # an extractor over the engine shares its models
    ex = Extractor(engine=engine, variant="turbo")
    assert ex.speech_tokenizer is engine.speech_tokenizer("english")


def test_engine_equals_extractor(golden_weights_dir):
    engine = Engine(golden_weights_dir)
    a = engine.extract(CLIP, "english", exaggeration=0.7)
    b = Extractor.from_local(golden_weights_dir).extract(CLIP, exaggeration=0.7)
    assert a.metadata == b.metadata
    for k, t in a.tensors().items():
        assert t.equal(b.tensors()[k]), k


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 5.0, "x"])
def test_exaggeration_is_checked_before_any_work(golden_weights_dir, bad):
    engine = Engine(golden_weights_dir)
    with pytest.raises(ValueError, match="exaggeration"):
        engine.extract(CLIP, "english", exaggeration=bad)
    assert sum(engine.loads.values()) == 0


@pytest.mark.parametrize("device", ["tpu", "meta", "xla", "cuda:99", 5, None, "cpu:x"])
def test_a_device_this_machine_cannot_use_is_an_invalid_option(device):
    import torch

    from voicebank import errors

    if device == "cuda:99" and torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(errors.InvalidOptionError, match="device"):
        Engine(device=device)


def test_cpu_devices_are_accepted():
    import torch

    assert Engine(device="cpu").device == torch.device("cpu")
    assert Engine(device=torch.device("cpu")).device.type == "cpu"
