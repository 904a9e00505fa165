"""Voice encoder: golden parity of every stage, batching, checkpoint flavours and strict loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from voicebank.audio.dsp import trim_silence, voice_encoder_mel
from voicebank.errors import WeightsMismatchError
from voicebank.models.checkpoints import read_tensors
from voicebank.models.voice_encoder import VoiceEncoder, VoiceEncoderConfig, partial_layout

from audio_fixtures import GOLDEN_INPUTS, resemblyzer_weights
from golden_cases import EXPECTED, case_name

CASES = [case_name(p.name) for p in sorted(GOLDEN_INPUTS.iterdir())]


@pytest.fixture(scope="module")
def ve(golden_weights_dir):
    return VoiceEncoder.from_file(golden_weights_dir / "ve.safetensors")


@pytest.mark.parametrize("case", CASES)
def test_every_stage_matches_upstream(case, ve, golden_intermediates):
    ref = golden_intermediates(case)
    wav16 = ref["wav16"].numpy()
    trimmed = trim_silence(wav16)
    np.testing.assert_array_equal(trimmed, ref["ve_wav_trimmed"].numpy())
    mel = voice_encoder_mel(trimmed)
    np.testing.assert_allclose(mel, ref["ve_mel"].numpy(), rtol=1e-6, atol=1e-9)
    partials = ve.prepare(wav16)
    with torch.inference_mode():
        partial_embeds = ve(torch.from_numpy(partials.copy()))
    torch.testing.assert_close(partial_embeds, ref["ve_partial_embeds"], atol=1e-6, rtol=1e-5)
    emb = ve.embed_utterances([wav16])
    expected = load_file(str(EXPECTED / f"{case}.tts.safetensors"))["t3.speaker_emb"]
    assert torch.nn.functional.cosine_similarity(emb, expected).item() >= 0.99999
    torch.testing.assert_close(emb, ref["ve_utterance_embed"].reshape(1, -1), atol=1e-6, rtol=1e-5)


def test_batch_of_clips_equals_one_by_one(ve, golden_intermediates):
    wavs = [golden_intermediates(c)["wav16"].numpy() for c in ("short_3s_22k", "long_22s", "aishell_4s")]
    batched = ve.embed_utterances(wavs)
    singles = torch.cat([ve.embed_utterances([w]) for w in wavs])
    torch.testing.assert_close(batched, singles, atol=1e-6, rtol=1e-5)
    assert torch.allclose(batched.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize(("frames", "expected"), [(1, (1, 160)), (160, (1, 160)), (237, (2, 237)),
                                                  (200, (1, 160)), (2045, (25, 2008))])
def test_partial_layout(frames, expected):
    assert partial_layout(frames, VoiceEncoderConfig()) == expected


def test_frame_step_from_rate():
    assert VoiceEncoderConfig().frame_step == 77


def test_resemblyzer_checkpoint_loads_with_its_key_names():
    path = resemblyzer_weights()
    if path is None:
        pytest.skip("resemblyzer (a test dependency) is not installed")
    state = read_tensors(path)
    assert any(k.startswith("linear.") for k in state)
    ve = VoiceEncoder.from_file(path)
    torch.testing.assert_close(ve.proj.weight, state["linear.weight"])


def test_loads_ve_pt_like_the_multilingual_checkpoint(tmp_path, golden_weights_dir):
    state = read_tensors(golden_weights_dir / "ve.safetensors")
    torch.save(state, tmp_path / "ve.pt")
    a = VoiceEncoder.from_file(golden_weights_dir / "ve.safetensors")
    b = VoiceEncoder.from_file(tmp_path / "ve.pt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_strict_loading_lists_missing_unexpected_and_misshaped(golden_weights_dir):
    state = read_tensors(golden_weights_dir / "ve.safetensors")
    state.pop("lstm.weight_hh_l2")
    state["extra.weight"] = torch.zeros(3)
    state["proj.bias"] = torch.zeros(7)
    with pytest.raises(WeightsMismatchError) as info:
        VoiceEncoder.from_state(state)
    msg = str(info.value)
    assert "missing: lstm.weight_hh_l2" in msg
    assert "unexpected: extra.weight" in msg
    assert "proj.bias: (7,) != (256,)" in msg


def test_no_parameter_is_left_on_meta(ve):
    assert all(p.device.type == "cpu" for p in ve.parameters())
