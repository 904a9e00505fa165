"""Chatterbox's VoiceEncoder: the 256-d speaker embedding that conditions T3.

A 3-layer LSTM (40 -> 256) reads 160-frame partials of a power mel spectrogram; the last layer's final
hidden state goes through ``Linear(256, 256)``, a ReLU and L2 normalisation.  An utterance is cut into
partials every 77 frames (``rate=1.3``: 1.3 partials per second), the last one kept only when at least
80 % of it is covered; the partial embeddings are averaged and L2-normalised again.  Silence is trimmed
first (20 dB below the loudest 2048-sample frame).

The same architecture is Resemblyzer's trained speaker encoder (its keys say ``linear.*`` where
Chatterbox says ``proj.*``); both checkpoints load here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..audio.dsp import trim_silence, voice_encoder_mel
from ..chatterbox import S3_SR, SPEAKER_EMB_DIM
from .building import build_empty, load_into
from .checkpoints import read_tensors


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


def _l2_normalise(x: torch.Tensor) -> torch.Tensor:
    # A ReLU output of all zeros has no direction; keep it zero instead of turning it into NaN.
    return x / torch.linalg.norm(x, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


class VoiceEncoder(nn.Module):
    """The speaker encoder.  Build it with :meth:`from_file` or :meth:`from_state`."""

    def __init__(self, config: VoiceEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or VoiceEncoderConfig()
        c = self.config
        self.lstm = nn.LSTM(c.n_mels, c.hidden_size, num_layers=c.num_layers, batch_first=True)
        self.proj = nn.Linear(c.hidden_size, c.embedding_size)
        self.similarity_weight = nn.Parameter(torch.empty(1))
        self.similarity_bias = nn.Parameter(torch.empty(1))

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], config: VoiceEncoderConfig | None = None) -> VoiceEncoder:
        """Load a Chatterbox (``proj.*``) or Resemblyzer (``linear.*``) state dict, without random init."""
        renamed = {("proj." + k[len("linear."):] if k.startswith("linear.") else k): v for k, v in state.items()}
        module = build_empty(lambda: cls(config))
        load_into(module, renamed, what="voice encoder checkpoint")
        return module

    @classmethod
    def from_file(cls, path: str | Path, config: VoiceEncoderConfig | None = None) -> VoiceEncoder:
        """Load ``ve.safetensors``, the Multilingual ``ve.pt`` or Resemblyzer's ``pretrained.pt``."""
        return cls.from_state(read_tensors(Path(path)), config)

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def forward(self, partials: torch.Tensor) -> torch.Tensor:
        """Embed partials: (B, 160, 40) float32 power mels -> (B, 256) L2-normalised embeddings."""
        _, (hidden, _) = self.lstm(partials)
        return _l2_normalise(torch.relu(self.proj(hidden[-1])))

    def prepare(self, wav16: np.ndarray) -> np.ndarray:
        """Trim silence and cut into partials: (n,) float32 @ 16 kHz -> (n_partials, 160, 40) float32."""
        trimmed = trim_silence(wav16, self.config.trim_top_db)
        if trimmed.shape[0] == 0:
            trimmed = wav16
        return partials_of(voice_encoder_mel(trimmed, self.config.n_mels), self.config)

    @torch.inference_mode()
    def embed_partials(self, partials: Sequence[np.ndarray]) -> torch.Tensor:
        """Utterance embeddings from each clip's partials, in ONE batched forward (chunked for memory).

        ``partials[i]``: (n_i, 160, 40) -> (len(partials), 256) float32 on the CPU, L2-normalised.
        """
        counts = [p.shape[0] for p in partials]
        stacked = torch.from_numpy(np.concatenate(partials, axis=0)).to(self.device)
        n_chunks = max(1, math.ceil(stacked.shape[0] / self.config.max_partials_per_forward))
        embeds = torch.cat([self(chunk) for chunk in stacked.chunk(n_chunks)], dim=0).cpu()
        means = torch.stack([part.mean(dim=0) for part in embeds.split(counts)])
        return _l2_normalise(means)

    def embed_utterances(self, wavs16: Sequence[np.ndarray]) -> torch.Tensor:
        """Speaker embeddings of clips: each (n_i,) float32 @ 16 kHz -> (len(wavs16), 256) float32.

        Equal to upstream ``VoiceEncoder.embeds_from_wavs(wavs, 16000)`` (cosine > 0.99999).
        """
        return self.embed_partials([self.prepare(w) for w in wavs16])
