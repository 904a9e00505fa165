"""The voice encoder's hyper-parameters and how an utterance is cut into partials (numpy only, no torch).

Both voice-encoder runtimes read these: :mod:`.voice_encoder` (torch) and :mod:`.voice_encoder_numpy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..audio.dsp import trim_silence, voice_encoder_mel
from ..chatterbox import S3_SR, SPEAKER_EMB_DIM
from ..errors import WeightsMismatchError


@dataclass(frozen=True)
class VoiceEncoderConfig:
    """Hyper-parameters of Chatterbox's voice encoder (``VoiceEncConfig`` upstream)."""

    sample_rate: int = S3_SR
    n_mels: int = 40
    hidden_size: int = 256
    embedding_size: int = SPEAKER_EMB_DIM
    num_layers: int = 3
    partial_frames: int = 160
    frame_hop_samples: int = 160
    partials_per_second: float = 1.3
    min_coverage: float = 0.8
    trim_top_db: float = 20.0
    max_partials_per_forward: int = 32
    """Partials per LSTM forward.  On a 2-core CPU, batches of 16 to 64 ran fastest (512: 15 % slower), and
    every batch of 16 or more partials gave the same bits."""

    @property
    def frame_step(self) -> int:
        """Frames between two partials: ``round(sample_rate / rate / partial_frames)`` = 77."""
        step = int(np.round((self.sample_rate / self.partials_per_second) / self.partial_frames))
        assert 0 < step <= self.partial_frames
        return step

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The checkpoint's tensor names (Chatterbox's ``proj.*`` spelling) and their shapes."""
        h, gates = self.hidden_size, 4 * self.hidden_size
        out: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            out[f"lstm.weight_ih_l{layer}"] = (gates, self.n_mels if layer == 0 else h)
            out[f"lstm.weight_hh_l{layer}"] = (gates, h)
            out[f"lstm.bias_ih_l{layer}"] = (gates,)
            out[f"lstm.bias_hh_l{layer}"] = (gates,)
        out["proj.weight"] = (self.embedding_size, h)
        out["proj.bias"] = (self.embedding_size,)
        out["similarity_weight"] = (1,)
        out["similarity_bias"] = (1,)
        return out


def chatterbox_names(state: Mapping[str, object]) -> dict[str, object]:
    """``state`` with Resemblyzer's ``linear.*`` keys renamed to Chatterbox's ``proj.*``."""
    return {("proj." + k[len("linear."):] if k.startswith("linear.") else k): v for k, v in state.items()}


def check_layout(shapes: Mapping[str, tuple[int, ...]], config: VoiceEncoderConfig, *, what: str) -> None:
    """Refuse a checkpoint whose tensor names or shapes are not the voice encoder's, listing every difference.

    ``shapes``: name (``proj.*`` spelling) -> shape.  Raises :class:`~voicebank.errors.WeightsMismatchError`.
    """
    expected = config.shapes()
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(f"{k}: {tuple(shapes[k])} != {expected[k]}" for k in set(expected) & set(shapes)
                   if tuple(shapes[k]) != expected[k])
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise WeightsMismatchError(f"{what} does not fit the expected layout: " + "; ".join(parts))


def partial_layout(n_frames: int, config: VoiceEncoderConfig) -> tuple[int, int]:
    """``(n_partials, target_frames)`` for a mel of ``n_frames`` frames.

    The mel is zero-padded or cut to ``target_frames = partial_frames + step * (n_partials - 1)``.
    """
    if n_frames <= 0:
        raise ValueError("a mel spectrogram needs at least one frame")
    win, step = config.partial_frames, config.frame_step
    n_wins, remainder = divmod(max(n_frames - win + step, 0), step)
    if n_wins == 0 or (remainder + (win - step)) / win >= config.min_coverage:
        n_wins += 1
    return n_wins, win + step * (n_wins - 1)


def partials_of(mel: np.ndarray, config: VoiceEncoderConfig) -> np.ndarray:
    """Overlapping partials of one mel: (frames, 40) -> (n_partials, 160, 40) float32."""
    n_partials, target = partial_layout(mel.shape[0], config)
    if target > mel.shape[0]:
        mel = np.concatenate([mel, np.zeros((target - mel.shape[0], mel.shape[1]), dtype=mel.dtype)])
    mel = np.ascontiguousarray(mel[:target], dtype=np.float32)
    step = config.frame_step
    return np.lib.stride_tricks.as_strided(
        mel, shape=(n_partials, config.partial_frames, mel.shape[1]),
        strides=(mel.strides[0] * step, mel.strides[0], mel.strides[1]), writeable=False)


def prepare_partials(wav16: np.ndarray, config: VoiceEncoderConfig) -> np.ndarray:
    """Trim silence and cut into partials: (n,) float32 @ 16 kHz -> (n_partials, 160, 40) float32.

    A clip that is silence throughout is used untrimmed.
    """
    trimmed = trim_silence(wav16, config.trim_top_db)
    if trimmed.shape[0] == 0:
        trimmed = wav16
    return partials_of(voice_encoder_mel(trimmed, config.n_mels), config)


__all__ = ["VoiceEncoderConfig", "chatterbox_names", "check_layout", "partial_layout", "partials_of",
           "prepare_partials"]
