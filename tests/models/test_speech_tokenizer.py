"""S3 speech tokenizer: log-mel and token parity with upstream on the golden cases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from voicebank.audio.tokenizer_mel import log_mel_batch, log_mel_spectrogram
from voicebank.errors import WeightsMismatchError
from voicebank.models.checkpoints import read_tensors, strip_prefix
from voicebank.models.speech_tokenizer import FSMNAttention, SpeechTokenizer, SpeechTokenizerConfig, token_count

from golden_weights import DATA

CASES = ["long_22s", "mid_12s", "p240_24k", "stereo_44k1", "short_3s_22k", "odd_7p33s_48k", "aishell_4s"]
ENC_COND_SAMPLES = 6 * 16_000  # upstream's ENC_COND_LEN: T3 conditions on the first 6 s
T3_MAX_TOKENS = 150
MIN_TOKEN_AGREEMENT = 0.99  # golden README tolerance
EXPECTED = DATA / "expected"


@pytest.fixture(scope="module")
def tokenizer_state(golden_weights_dir: Path) -> dict[str, torch.Tensor]:
    state = read_tensors(golden_weights_dir / "s3gen.safetensors", prefixes=("tokenizer.",))
    return strip_prefix(state, "tokenizer.")


@pytest.fixture(scope="module")
def tokenizer(tokenizer_state: dict[str, torch.Tensor]) -> SpeechTokenizer:
    return SpeechTokenizer.from_state(tokenizer_state)


def _tts(case: str) -> dict[str, torch.Tensor]:
    return load_file(str(EXPECTED / f"{case}.tts.safetensors"))


def test_cases_are_the_golden_inputs() -> None:
    assert sorted(p.stem for p in (DATA / "inputs").iterdir()) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_log_mel_matches_upstream(case: str, golden_intermediates) -> None:
    inter = golden_intermediates(case)
    gen = log_mel_spectrogram(inter["ref16"])
    assert gen.dtype == torch.float32
    assert gen.shape == inter["tok_mel_gen"].shape == (128, inter["ref16"].numel() // 160)
    # atol 1e-4: torch.fft rounds differently per CPU (bit-identical where the goldens were made, up to 3e-5 on an
    # Intel Xeon); see FFT_TOLERANCE in tests/engine/test_parity.py
    torch.testing.assert_close(gen, inter["tok_mel_gen"], atol=1e-4, rtol=0)
    t3 = log_mel_spectrogram(inter["wav16"][:ENC_COND_SAMPLES])[:, : 4 * T3_MAX_TOKENS]
    assert t3.shape == inter["tok_mel_t3"].shape
    torch.testing.assert_close(t3, inter["tok_mel_t3"], atol=1e-4, rtol=0)


def _agreement(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape
    return (ours == ref).double().mean().item()


@pytest.mark.parametrize("case", CASES)
def test_tokens_match_upstream(case: str, tokenizer: SpeechTokenizer, golden_intermediates,
                               record_property) -> None:
    inter, expected = golden_intermediates(case), _tts(case)

    # S3Gen prompt tokens: the 10 s reference.  Upstream cuts them to len(gen_mel) // 2 when the clip is
    # not a whole number of 40 ms tokens (odd_7p33s_48k, p240_24k): compare that prefix.
    ref16 = inter["ref16"]
    tokens, lengths = tokenizer.tokenize([ref16])
    assert tokens.dtype == lengths.dtype == torch.int64
    n_ours = int(lengths[0])
    assert tokens.shape == (1, n_ours)
    assert n_ours == token_count(ref16.numel() // 160)
    prompt = expected["gen.prompt_token"]
    assert min(n_ours, inter["gen_mel"].shape[0] // 2) == int(expected["gen.prompt_token_len"][0])
    assert prompt.shape[1] <= n_ours
    gen_agree = _agreement(tokens[:, : prompt.shape[1]], prompt)

    # T3 conditioning tokens: the first 6 s, at most 150 tokens
    t3_tokens, t3_lengths = tokenizer.tokenize([inter["wav16"][:ENC_COND_SAMPLES]], max_tokens=T3_MAX_TOKENS)
    cond = expected["t3.cond_prompt_speech_tokens"]
    assert t3_tokens.shape == cond.shape
    assert int(t3_lengths[0]) == cond.shape[1]
    t3_agree = _agreement(t3_tokens, cond)

    record_property("gen_token_agreement", gen_agree)
    record_property("t3_token_agreement", t3_agree)
    assert gen_agree >= MIN_TOKEN_AGREEMENT, f"{case}: S3Gen tokens {gen_agree:.2%} identical"
    assert t3_agree >= MIN_TOKEN_AGREEMENT, f"{case}: T3 tokens {t3_agree:.2%} identical"


def test_batch_equals_single(tokenizer: SpeechTokenizer, golden_intermediates) -> None:
    wavs = [
        golden_intermediates("short_3s_22k")["ref16"],  # 300 frames -> 75 tokens
        golden_intermediates("odd_7p33s_48k")["ref16"][:61_000],  # 381 frames -> 96 tokens (odd lengths)
        golden_intermediates("aishell_4s")["ref16"],  # 420 frames -> 105 tokens
    ]
    tokens, lengths = tokenizer.tokenize(wavs)
    assert tokens.shape == (3, int(lengths.max()))
    assert lengths.tolist() == [75, 96, 105]
    for i, wav in enumerate(wavs):
        single, single_len = tokenizer.tokenize([wav])
        assert int(single_len[0]) == int(lengths[i])
        assert torch.equal(tokens[i, : int(lengths[i])], single[0])
        assert not tokens[i, int(lengths[i]):].any()  # padding positions hold 0


def test_log_mel_batch_pads_with_zeros() -> None:
    wavs = [torch.randn(16_000), torch.randn(8_000)]
    mels, lengths = log_mel_batch(wavs, max_frames=90)
    assert mels.shape == (2, 128, 90) and lengths.tolist() == [90, 50]
    torch.testing.assert_close(mels[1, :, :50], log_mel_spectrogram(wavs[1]), atol=0, rtol=0)
    assert not mels[1, :, 50:].any()


def test_state_dict_is_exactly_upstream_layout(tokenizer: SpeechTokenizer) -> None:
    upstream = json.loads((DATA / "keys.json").read_text())["s3gen_tokenizer"]
    expected = {name.removeprefix("tokenizer."): tuple(shape) for name, shape, _ in upstream}
    ours = {k: tuple(v.shape) for k, v in tokenizer.state_dict().items()}
    assert ours == expected
    assert list(tokenizer.buffers()) == []
    assert all(p.device.type == "cpu" and not p.requires_grad for p in tokenizer.parameters())


def test_weight_mismatch_is_reported(tokenizer_state: dict[str, torch.Tensor]) -> None:
    missing = dict(tokenizer_state)
    del missing["encoder.blocks.3.attn.fsmn_block.weight"]
    with pytest.raises(WeightsMismatchError, match=re.escape("missing: encoder.blocks.3.attn.fsmn_block.weight")):
        SpeechTokenizer.from_state(missing)

    renamed = dict(tokenizer_state)
    renamed["tokenizer.quantizer._codebook.project_down.bias"] = renamed.pop("quantizer._codebook.project_down.bias")
    with pytest.raises(WeightsMismatchError, match=re.escape("unexpected: tokenizer.quantizer")):
        SpeechTokenizer.from_state(renamed)

    wrong = dict(tokenizer_state)
    wrong["encoder.conv1.weight"] = torch.zeros(1280, 80, 3)
    with pytest.raises(WeightsMismatchError, match=re.escape("wrong shape: encoder.conv1.weight")):
        SpeechTokenizer.from_state(wrong)


def test_refuses_bad_inputs(tokenizer: SpeechTokenizer) -> None:
    with pytest.raises(ValueError, match="too long"):
        tokenizer.tokenize([torch.zeros(3001 * 160)])
    with pytest.raises(ValueError, match="too short"):
        tokenizer.tokenize([torch.zeros(200)])
    with pytest.raises(ValueError, match="1-D"):
        tokenizer.tokenize([torch.zeros(2, 16_000)])
    with pytest.raises(ValueError, match="float"):
        tokenizer.tokenize([torch.zeros(16_000, dtype=torch.int16)])
    with pytest.raises(ValueError, match="at least one"):
        tokenizer.tokenize([])


def test_max_tokens_and_weight_updates_on_a_small_model() -> None:
    # a small randomly initialised model: checks the cut, the lengths and that nothing caches the weights
    torch.manual_seed(0)
    config = SpeechTokenizerConfig(n_state=128, n_head=2, n_layer=1)
    model = SpeechTokenizer(config).eval().requires_grad_(False)
    wav = torch.randn(32_000)  # 2 s -> 200 frames -> 50 tokens
    _full, full_len = model.tokenize([wav])
    cut, cut_len = model.tokenize([wav], max_tokens=20)
    assert full_len.tolist() == [50] and cut_len.tolist() == [20] and cut.shape == (1, 20)
    mel = log_mel_spectrogram(wav)[None, :, :80]  # the cut happens after the whole clip's log-mel
    assert torch.equal(cut, model(mel, torch.tensor([80]))[0])
    # in-place changes of the projection weights take effect (nothing holds a stale copy)
    lengths = torch.tensor([80])
    before = model.encoder(mel, lengths)[0]
    attn = model.encoder.blocks[0].attn
    assert isinstance(attn, FSMNAttention)
    with torch.no_grad():
        attn.query.weight.mul_(3.0)
    after = model.encoder(mel, lengths)[0]
    fresh = SpeechTokenizer(config).eval().requires_grad_(False)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(after, fresh.encoder(mel, lengths)[0])
    assert not torch.equal(after, before)
