"""Chatterbox's VoiceEncoder: the 256-d speaker embedding that conditions T3.

A 3-layer LSTM (40 -> 256) reads 160-frame partials of a power mel spectrogram; the last layer's final
hidden state goes through ``Linear(256, 256)``, a ReLU and L2 normalisation.  An utterance is cut into
partials every 77 frames (``rate=1.3``: 1.3 partials per second), the last one kept only when at least
80 % of it is covered; the partial embeddings are averaged and L2-normalised again.  Silence is trimmed
first (20 dB below the loudest 2048-sample frame).

The same architecture is Resemblyzer's trained speaker encoder (its keys say ``linear.*`` where
Chatterbox says ``proj.*``); both checkpoints load here.  :mod:`.voice_encoder_numpy` runs the same model
without torch (what embedding-only work uses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .building import build_empty, load_into
from .checkpoints import read_tensors
from .voice_encoder_config import VoiceEncoderConfig, chatterbox_names, partial_layout, partials_of, prepare_partials


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
        renamed: dict[str, torch.Tensor] = chatterbox_names(state)  # type: ignore[assignment]
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
        return prepare_partials(wav16, self.config)

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


__all__ = ["VoiceEncoder", "VoiceEncoderConfig", "partial_layout", "partials_of"]
