"""Interop with upstream Chatterbox itself.  Needs ``chatterbox-tts`` installed (see README: "Upstream
interop tests"); skipped otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from voicebank.engine import Extractor
from voicebank.voice.voice import Voice

from golden_cases import EXPECTED, INPUTS

chatterbox_tts = pytest.importorskip("chatterbox.tts", reason="upstream chatterbox-tts is not installed")
pytestmark = pytest.mark.upstream


@pytest.fixture(scope="module")
def upstream_parts(golden_weights_dir):
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.voice_encoder import VoiceEncoder
    from safetensors.torch import load_file

    ve = VoiceEncoder()
    ve.load_state_dict(load_file(str(golden_weights_dir / "ve.safetensors")))
    s3gen = S3Gen()
    s3gen.load_state_dict(load_file(str(golden_weights_dir / "s3gen.safetensors")), strict=False)
    return ve.eval(), s3gen.eval()


@pytest.fixture(scope="module")
def upstream_tts(upstream_parts):
    ve, s3gen = upstream_parts
    # T3 is not involved in conditioning; only its prompt length is read.
    t3 = SimpleNamespace(hp=SimpleNamespace(speech_cond_prompt_len=150))
    return chatterbox_tts.ChatterboxTTS(t3=t3, s3gen=s3gen, ve=ve, tokenizer=None, device="cpu")


def _assert_equal_tensors(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape, k
        if ours[k].is_floating_point():
            torch.testing.assert_close(ours[k], theirs[k], atol=1e-5, rtol=1e-5)
        else:
            assert (ours[k] == theirs[k]).float().mean() >= 0.99, k


def _flat(conds) -> dict:
    out = {f"t3.{k}": v for k, v in conds.t3.__dict__.items() if v is not None}
    out.update({f"gen.{k}": v for k, v in conds.gen.items() if v is not None})
    return {k: v.detach() for k, v in out.items()}


def test_upstream_conditionals_load_reads_our_pt(tmp_path, golden_weights_dir):
    voice = Extractor.from_local(golden_weights_dir).extract(INPUTS / "aishell_4s.wav")
    path = voice.save(tmp_path / "ours.pt")
    conds = chatterbox_tts.Conditionals.load(path)
    _assert_equal_tensors(voice.tensors(), _flat(conds))


def test_we_read_upstream_conditionals_save(tmp_path):
    conds = chatterbox_tts.Conditionals.load(EXPECTED / "mid_12s.tts.pt")
    path = tmp_path / "conds.pt"
    conds.save(path)
    _assert_equal_tensors(Voice.load(path).tensors(), _flat(conds))


def test_live_prepare_conditionals_equals_extract_and_apply_to(upstream_tts, golden_weights_dir):
    clip = INPUTS / "odd_7p33s_48k.ogg"
    upstream_tts.prepare_conditionals(str(clip), exaggeration=0.6)
    theirs = _flat(upstream_tts.conds)
    voice = Extractor.from_local(golden_weights_dir).extract(clip, exaggeration=0.6)
    _assert_equal_tensors(voice.tensors(), theirs)
    upstream_tts.conds = None
    voice.apply_to(upstream_tts)
    assert isinstance(upstream_tts.conds, chatterbox_tts.Conditionals)
    _assert_equal_tensors(_flat(upstream_tts.conds), theirs)
    assert isinstance(voice.to_chatterbox(), chatterbox_tts.Conditionals)


def test_vc_set_target_voice_equals_extract_and_apply_to(upstream_parts, golden_weights_dir):
    from chatterbox.vc import ChatterboxVC

    _, s3gen = upstream_parts
    vc = ChatterboxVC(s3gen, "cpu")
    clip = INPUTS / "short_3s_22k.wav"
    vc.set_target_voice(str(clip))
    theirs = {f"gen.{k}": v.detach() for k, v in vc.ref_dict.items() if v is not None}
    voice = Extractor.from_local(golden_weights_dir, variant="vc").extract(clip)
    _assert_equal_tensors(voice.tensors(), theirs)
    vc.ref_dict = None
    voice.apply_to(vc)
    _assert_equal_tensors({f"gen.{k}": v for k, v in vc.ref_dict.items() if v is not None}, theirs)
