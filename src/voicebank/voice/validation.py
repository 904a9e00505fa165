"""What a voice's tensors must be: their names, shapes, dtypes and value ranges, checked on every read and write.

The names are the flat ones of :meth:`~voicebank.voice.Voice.tensors` (``t3.<field>``, ``gen.<field>``); the
sizes and limits are Chatterbox's (:mod:`voicebank.chatterbox`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..chatterbox import (
    MAX_PROMPT_FEAT_FRAMES,
    MAX_T3_PROMPT_TOKENS,
    N_MELS_S3GEN,
    SPEAKER_EMB_DIM,
    SPEECH_VOCAB_SIZE,
    XVECTOR_DIM,
)
from ..errors import VoiceFileError

T3_FIELDS = ("speaker_emb", "clap_emb", "cond_prompt_speech_tokens", "cond_prompt_speech_emb", "emotion_adv")
"""Upstream ``T3Cond``'s fields, in its order."""
GEN_FIELDS = ("prompt_token", "prompt_token_len", "prompt_feat", "prompt_feat_len", "embedding")
"""Upstream S3Gen ``ref_dict``'s fields, in its order."""

TENSOR_SPEC: dict[str, tuple[tuple[int | None, ...], torch.dtype]] = {
    "t3.speaker_emb": ((1, SPEAKER_EMB_DIM), torch.float32),
    "t3.cond_prompt_speech_tokens": ((1, None), torch.int64),
    "t3.emotion_adv": ((1, 1, 1), torch.float32),
    "gen.prompt_token": ((1, None), torch.int64),
    "gen.prompt_token_len": ((1,), torch.int64),
    "gen.prompt_feat": ((1, None, N_MELS_S3GEN), torch.float32),
    "gen.embedding": ((1, XVECTOR_DIM), torch.float32),
}
"""``name -> (shape, dtype)`` of every tensor a voice may hold (``None``: any length)."""
GEN_REQUIRED = ("gen.prompt_token", "gen.prompt_token_len", "gen.prompt_feat", "gen.embedding")
"""The tensors every voice holds (a voice with a T3 part holds ``t3.speaker_emb`` too)."""


def _check_tensor(name: str, t: Any, where: str) -> torch.Tensor:
    if not torch.is_tensor(t):
        raise VoiceFileError(f"{where}: {name} is a {type(t).__name__}, not a tensor")
    if t.layout != torch.strided or t.is_quantized or t.is_nested:
        raise VoiceFileError(f"{where}: {name} is a {str(t.layout).replace('torch.', '')} tensor; only dense tensors "
                             "are read")
    if t.device.type != "cpu":
        raise VoiceFileError(f"{where}: {name} is on the {t.device.type} device; only tensors with data are read")
    shape, dtype = TENSOR_SPEC[name]
    if t.dtype != dtype:
        raise VoiceFileError(f"{where}: {name} has dtype {str(t.dtype).replace('torch.', '')}, "
                             f"expected {str(dtype).replace('torch.', '')}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape, strict=True)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise VoiceFileError(f"{where}: {name} has shape {tuple(t.shape)}, expected {want}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise VoiceFileError(f"{where}: {name} holds NaN or infinite values")
    return t


def validate(tensors: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    """``tensors`` (flat ``t3.<field>`` / ``gen.<field>`` names, CPU) if their names, shapes, dtypes and value
    ranges make a Chatterbox voice, else :class:`VoiceFileError` naming ``where`` and the first problem."""
    unknown = sorted(set(tensors) - set(TENSOR_SPEC))
    if unknown:
        shown = ", ".join(k[:40] for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise VoiceFileError(f"{where}: unexpected entries {shown}; not a Chatterbox voice file")
    missing = [k for k in GEN_REQUIRED if k not in tensors]
    if any(k.startswith("t3.") for k in tensors) and "t3.speaker_emb" not in tensors:
        missing.append("t3.speaker_emb")
    if missing:
        raise VoiceFileError(f"{where}: missing {', '.join(missing)}; not a complete Chatterbox voice")
    checked = {k: _check_tensor(k, v, where) for k, v in tensors.items()}
    tokens = checked["gen.prompt_token"]
    if int(checked["gen.prompt_token_len"][0]) != tokens.shape[1]:
        raise VoiceFileError(f"{where}: gen.prompt_token_len {int(checked['gen.prompt_token_len'][0])} "
                             f"!= number of tokens {tokens.shape[1]}")
    for k in ("gen.prompt_token", "t3.cond_prompt_speech_tokens"):
        if k in checked and checked[k].numel() and (checked[k].min() < 0 or checked[k].max() >= SPEECH_VOCAB_SIZE):
            raise VoiceFileError(f"{where}: {k} holds values outside [0, {SPEECH_VOCAB_SIZE})")
    prompt = checked.get("t3.cond_prompt_speech_tokens")
    if prompt is not None and prompt.shape[1] > MAX_T3_PROMPT_TOKENS:
        raise VoiceFileError(f"{where}: more than {MAX_T3_PROMPT_TOKENS} T3 prompt tokens")
    if prompt is not None and prompt.shape[1] == 0:
        raise VoiceFileError(f"{where}: t3.cond_prompt_speech_tokens is empty (0 tokens)")
    frames, n_tokens = checked["gen.prompt_feat"].shape[1], tokens.shape[1]
    if not 0 < frames <= MAX_PROMPT_FEAT_FRAMES:
        raise VoiceFileError(f"{where}: gen.prompt_feat has {frames} mel frames; a reference has 1 to "
                             f"{MAX_PROMPT_FEAT_FRAMES} (upstream: at most 500)")
    if n_tokens == 0 or not frames // 2 - 1 <= n_tokens <= frames // 2:
        # upstream: 2 mel frames per token, the tokens cut to frames // 2 when the clip is not a multiple of 40 ms
        raise VoiceFileError(f"{where}: {n_tokens} gen.prompt_token for {frames} mel frames; Chatterbox gives "
                             f"{frames // 2} (2 frames per token)")
    return checked


__all__ = ["GEN_FIELDS", "GEN_REQUIRED", "T3_FIELDS", "TENSOR_SPEC", "validate"]
