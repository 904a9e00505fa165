"""Chatterbox's voice encoder in numpy: the 256-d speaker embedding without torch.

The same model as :mod:`.voice_encoder` (3-layer LSTM 40 -> 256, ``Linear(256, 256)``, ReLU, L2 norm; the same
silence trim, mel, partials and averaging), run as float32 matrix products: each layer's input projection for
every time step of every partial in one product, then one ``(partials, 256) x (256, 1024)`` product per time
step.  It equals the torch module to about 1e-6 relative (float32 rounding of a different summation order) and
imports in milliseconds, so embedding-only work (``voicebank embed``, comparing and searching clips, the
embedding storage mode) never needs torch.  Weights come from ``ve.safetensors``, ``ve.pt`` or Resemblyzer's
``pretrained.pt`` (:func:`~voicebank.models.checkpoints.read_arrays`, no torch either).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..audio.dsp import _blas_single_threaded
from .checkpoints import read_arrays
from .voice_encoder_config import VoiceEncoderConfig, chatterbox_names, check_layout, prepare_partials

_STEPS_PER_PROJECTION = 16
"""Time steps whose input projection is one product: (16 x B, 256) x (256, 1024) stays in cache, where the
projection of all 160 steps at once ran at a third of the speed."""


PARTIALS_PER_FORWARD = 64
"""Partials per forward: numpy's products gain more from a larger batch than torch's (on a 2-core CPU a batch of
64 ran 1.25x torch's time for the same partials, 32: 1.6x, 13: 2.1x)."""


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    # an all-zero ReLU output has no direction: it stays zero rather than becoming NaN
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


class NumpyVoiceEncoder:
    """The speaker encoder on numpy arrays.  Build it with :meth:`from_file` or :meth:`from_state`."""

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], proj_weight: np.ndarray,
                 proj_bias: np.ndarray, config: VoiceEncoderConfig | None = None) -> None:
        """``layers``: per LSTM layer ``(W_ih^T (in, 4H), W_hh^T (H, 4H), b_ih + b_hh (4H,))`` with the gates
        ordered input, forget, output, cell (torch's i, f, g, o reordered so the three sigmoids are adjacent), the
        rows of the three sigmoid gates halved (see :meth:`forward`);
        ``proj_weight`` (256, 256) and ``proj_bias`` (256,) as in the checkpoint."""
        self.config = config or VoiceEncoderConfig()
        self.layers = [tuple(np.ascontiguousarray(a, dtype=np.float32) for a in layer) for layer in layers]
        self.proj_t = np.ascontiguousarray(proj_weight.T, dtype=np.float32)
        self.proj_bias = np.asarray(proj_bias, dtype=np.float32)

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], config: VoiceEncoderConfig | None = None,
                   ) -> NumpyVoiceEncoder:
        """From a Chatterbox (``proj.*``) or Resemblyzer (``linear.*``) state dict of arrays, checked strictly
        (:class:`~voicebank.errors.WeightsMismatchError` lists every missing, unexpected or misshaped tensor)."""
        config = config or VoiceEncoderConfig()
        renamed: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in chatterbox_names(state).items()}
        check_layout({k: v.shape for k, v in renamed.items()}, config, what="voice encoder checkpoint")
        h = config.hidden_size
        order = np.r_[0:2 * h, 3 * h:4 * h, 2 * h:3 * h]  # torch's (i, f, g, o) -> (i, f, o, g)
        layers = []
        for n in range(config.num_layers):
            w_ih = renamed[f"lstm.weight_ih_l{n}"].astype(np.float32)[order]
            w_hh = renamed[f"lstm.weight_hh_l{n}"].astype(np.float32)[order]
            bias = (renamed[f"lstm.bias_ih_l{n}"].astype(np.float32) + renamed[f"lstm.bias_hh_l{n}"])[order]
            for a in (w_ih, w_hh, bias):  # the sigmoid gates' pre-activations halved (exact: a power of two)
                a[: 3 * h] *= 0.5
            layers.append((w_ih.T, w_hh.T, bias))
        return cls(layers, renamed["proj.weight"], renamed["proj.bias"], config)

    @classmethod
    def from_file(cls, path: str | Path, config: VoiceEncoderConfig | None = None) -> NumpyVoiceEncoder:
        """Load ``ve.safetensors``, the Multilingual ``ve.pt`` or Resemblyzer's ``pretrained.pt``."""
        return cls.from_state(read_arrays(Path(path)), config)

    def forward(self, partials: np.ndarray) -> np.ndarray:
        """Embed partials: (B, 160, 40) float32 power mels -> (B, 256) float32, L2-normalised."""
        n, steps, _ = partials.shape
        h = self.config.hidden_size
        seq = np.ascontiguousarray(partials.transpose(1, 0, 2), dtype=np.float32)  # (T, B, in): a step is one block
        chunk = min(steps, _STEPS_PER_PROJECTION)
        pre = np.empty((chunk, n, 4 * h), dtype=np.float32)
        gates = np.empty((n, 4 * h), dtype=np.float32)
        sig, cand = gates[:, : 3 * h], gates[:, 3 * h:]
        hidden = np.zeros((n, h), dtype=np.float32)
        for w_ih_t, w_hh_t, bias in self.layers:
            out = np.empty((steps, n, h), dtype=np.float32)
            hidden = np.zeros((n, h), dtype=np.float32)
            cell = np.zeros((n, h), dtype=np.float32)
            for start in range(0, steps, chunk):
                k = min(chunk, steps - start)
                # the input projection of a few steps at a time: a product that stays in cache
                np.matmul(seq[start: start + k].reshape(k * n, -1), w_ih_t, out=pre[:k].reshape(k * n, 4 * h))
                pre[:k] += bias
                for t in range(k):
                    np.matmul(hidden, w_hh_t, out=gates)
                    gates += pre[t]
                    np.tanh(gates, out=gates)   # sigmoid(x) = (tanh(x / 2) + 1) / 2: the 1/2 is in the weights
                    sig *= 0.5
                    sig += 0.5
                    cell *= gates[:, h: 2 * h]                 # f * c
                    cell += gates[:, :h] * cand                # + i * g
                    np.tanh(cell, out=hidden)
                    hidden *= gates[:, 2 * h: 3 * h]           # o * tanh(c)
                    out[start + t] = hidden
            seq = out
        projected = hidden @ self.proj_t
        projected += self.proj_bias
        np.maximum(projected, 0.0, out=projected)
        return _l2_normalise(projected)

    __call__ = forward

    def prepare(self, wav16: np.ndarray) -> np.ndarray:
        """Trim silence and cut into partials: (n,) float32 @ 16 kHz -> (n_partials, 160, 40) float32."""
        return prepare_partials(wav16, self.config)

    def embed_partials(self, partials: Sequence[np.ndarray]) -> np.ndarray:
        """Utterance embeddings from each clip's partials, the partials of all clips run together in batches of
        :data:`PARTIALS_PER_FORWARD`.

        ``partials[i]``: (n_i, 160, 40) -> (len(partials), 256) float32, L2-normalised.
        """
        if not partials:
            return np.zeros((0, self.config.embedding_size), dtype=np.float32)
        counts = [p.shape[0] for p in partials]
        stacked = np.concatenate(partials, axis=0)
        size = PARTIALS_PER_FORWARD
        # small products on the calling thread: OpenBLAS's threads on them ran 2-10x slower on a busy 2-core machine
        with _blas_single_threaded():
            embeds = np.concatenate([self.forward(stacked[i: i + size]) for i in range(0, stacked.shape[0], size)])
        bounds = np.cumsum([0, *counts])
        means = np.stack([embeds[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
        return _l2_normalise(means).astype(np.float32, copy=False)

    def embed_utterances(self, wavs16: Sequence[np.ndarray]) -> np.ndarray:
        """Speaker embeddings of clips: each (n_i,) float32 @ 16 kHz -> (len(wavs16), 256) float32."""
        return self.embed_partials([self.prepare(w) for w in wavs16])


__all__ = ["PARTIALS_PER_FORWARD", "NumpyVoiceEncoder"]
