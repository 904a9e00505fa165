"""The S3 speech tokenizer (S3TokenizerV2, ``speech_tokenizer_v2_25hz``) that Chatterbox conditions on.

It turns 16 kHz speech into discrete speech tokens at 25 tokens/s (one token per 40 ms, i.e. per four
10 ms mel frames), with a codebook of ``3**8 = 6561`` entries:

1. :func:`~voicebank.audio.tokenizer_mel.log_mel_spectrogram`: 128-bin Whisper-style log-mel, one frame per
   160 samples (10 ms);
2. :class:`SpeechTokenizer`: two stride-2 convolutions, six transformer blocks whose attention has rotary
   position embeddings and an FSMN memory (a depthwise convolution over the values), then a finite
   scalar quantiser (FSQ): eight projections, each rounded to one of three levels.

The arithmetic follows upstream (``s3tokenizer`` 0.3.0 as wrapped by ``chatterbox-tts`` 0.1.7) closely
enough that the tokens agree with upstream's on the golden cases; the state-dict names are upstream's with
the ``tokenizer.`` prefix removed, so a Chatterbox ``s3gen`` checkpoint loads strictly.

Clips longer than 30 s (3000 mel frames), which upstream splits into overlapping windows, are refused:
voicebank never feeds the tokenizer more than 10 s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import overload

import torch
import torch.nn.functional as F
from torch import nn

from ..audio.tokenizer_mel import HOP_SAMPLES, N_MELS, log_mel_batch
from ..chatterbox import S3_SR
from .building import build_empty, load_into

__all__ = [
    "MAX_MEL_FRAMES",
    "MEL_FRAMES_PER_TOKEN",
    "TOKENS_PER_SECOND",
    "TOKEN_HOP_SAMPLES",
    "BF16Linear",
    "Projection",
    "SpeechTokenizer",
    "SpeechTokenizerConfig",
    "rotary_tables",
    "token_count",
]

# --- constants ---------------------------------------------------------------------------------------

MEL_FRAMES_PER_TOKEN = 4
"""Mel frames per speech token (the encoder downsamples time by 4)."""
TOKEN_HOP_SAMPLES = HOP_SAMPLES * MEL_FRAMES_PER_TOKEN
"""Samples per speech token at 16 kHz (640 samples = 40 ms)."""
TOKENS_PER_SECOND = S3_SR // TOKEN_HOP_SAMPLES
"""Speech-token rate (25 tokens per second)."""
MAX_MEL_FRAMES = 3000
"""Longest input handled in one window (3000 mel frames = 30 s); upstream splits longer clips."""
FSQ_SCALE = 0.9990000128746033
"""Factor applied after ``tanh`` before rounding (float32 of 0.999, as upstream)."""


@dataclass(frozen=True)
class SpeechTokenizerConfig:
    """Hyper-parameters of S3TokenizerV2 (``speech_tokenizer_v2_25hz``); the defaults are upstream's."""

    n_mels: int = N_MELS
    """Mel bins of the input."""
    n_state: int = 1280
    """Model width."""
    n_head: int = 20
    """Attention heads (head dimension ``n_state // n_head = 64``)."""
    n_layer: int = 6
    """Transformer blocks."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP, in multiples of ``n_state``."""
    conv_kernel_size: int = 3
    """Kernel of the two input convolutions (padding 1)."""
    conv_stride: int = 2
    """Stride of each input convolution (two of them: 4 mel frames per token)."""
    fsmn_kernel_size: int = 31
    """Taps of the FSMN memory (a depthwise convolution over the values, centred)."""
    layer_norm_eps: float = 1e-5
    """Epsilon of every LayerNorm."""
    rope_head_dim: int = 64
    """Dimension the rotary table is computed for (the head dimension)."""
    rope_max_positions: int = 2048
    """Positions in the rotary table (2048 tokens = 81.92 s)."""
    rope_theta: float = 10000.0
    """Rotary base."""
    fsq_levels: int = 3
    """Levels of each FSQ digit (-1, 0, +1)."""
    fsq_dim: int = 8
    """FSQ digits per token; the codebook has ``fsq_levels ** fsq_dim`` entries."""

    @property
    def head_dim(self) -> int:
        """Dimension of one attention head."""
        return self.n_state // self.n_head

    @property
    def codebook_size(self) -> int:
        """Number of distinct tokens (6561)."""
        return int(self.fsq_levels**self.fsq_dim)


DEFAULT_CONFIG = SpeechTokenizerConfig()


@overload
def _conv_out_len(n: int, kernel_size: int = ..., stride: int = ...) -> int: ...
@overload
def _conv_out_len(n: torch.Tensor, kernel_size: int = ..., stride: int = ...) -> torch.Tensor: ...
def _conv_out_len(n: int | torch.Tensor, kernel_size: int = 3, stride: int = 2) -> int | torch.Tensor:
    """Output length of one input convolution ("same" padding, dilation 1) for ``n`` input frames."""
    padding = (kernel_size - 1) // 2
    return (n + 2 * padding - (kernel_size - 1) - 1) // stride + 1


def token_count(n_mel_frames: int, config: SpeechTokenizerConfig = DEFAULT_CONFIG) -> int:
    """Number of speech tokens for ``n_mel_frames`` log-mel frames (upstream's conv-length formula)."""
    k, s = config.conv_kernel_size, config.conv_stride
    return _conv_out_len(_conv_out_len(n_mel_frames, k, s), k, s)


# --- rotary embedding --------------------------------------------------------------------------------


def rotary_tables(
    head_dim: int, n_positions: int, theta: float = 10000.0, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables ``(n_positions, head_dim)`` float32 of upstream's rotary embedding.

    Frequency ``i`` (of ``head_dim // 2``) is used for dimensions ``i`` and ``i + head_dim // 2``
    (the "rotate half" layout).  Computed like upstream (``torch.polar`` of float32 angles).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    positions = torch.arange(n_positions, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)
    unit = torch.view_as_real(torch.polar(torch.ones_like(angles), angles))
    cos = torch.cat((unit[..., 0], unit[..., 0]), dim=-1).contiguous()
    sin = torch.cat((unit[..., 1], unit[..., 1]), dim=-1).contiguous()
    if device is not None:
        cos, sin = cos.to(device), sin.to(device)
    return cos, sin


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply the rotary embedding to ``x`` ``(B, T, H, D)`` with tables ``(T, 1, D)``."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


# --- the network -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _onednn_linear() -> bool:
    """Whether this torch has oneDNN's float32 linear kernel (x86 and most ARM builds do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class Projection(nn.Linear):
    """An ``nn.Linear`` (same parameters and state-dict keys) whose float32 product runs in oneDNN on CPU.

    For the tokenizer's shapes (a few hundred rows by 1280 or 5120 columns) oneDNN's GEMM is about 1.2x
    faster than the MKL one ``F.linear`` takes.  The two round differently in the last bits (about 1e-7
    relative), far inside upstream's own run-to-run variation; other devices, dtypes, autograd or a
    torch without the kernel fall back to ``F.linear``.  ``(..., in)`` -> ``(..., out)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not (torch.is_grad_enabled() and self.weight.requires_grad) and _onednn_linear()):
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


class FSMNAttention(nn.Module):
    """Multi-head self-attention with rotary embeddings plus an FSMN memory over the values.

    Parameters: ``query`` (with bias), ``key`` (no bias), ``value`` and ``out`` (with bias), all
    ``n_state x n_state``; ``fsmn_block``: depthwise ``Conv1d`` weight ``(n_state, 1, kernel)``, no bias.
    """

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__()
        c = config.n_state
        self.n_head = config.n_head
        self.query = Projection(c, c)
        self.key = Projection(c, c, bias=False)
        self.value = Projection(c, c)
        self.out = Projection(c, c)
        self.fsmn_block = nn.Conv1d(c, c, config.fsmn_kernel_size, groups=c, bias=False)
        self.fsmn_left = (config.fsmn_kernel_size - 1) // 2
        self.fsmn_right = config.fsmn_kernel_size - 1 - self.fsmn_left

    def forward(self, x: torch.Tensor, lengths: Sequence[int], cos: torch.Tensor, sin: torch.Tensor
                ) -> torch.Tensor:
        """``x`` ``(N, C)``: the normalised rows of every sequence, packed (``N = sum(lengths)``) ->
        ``(N, C)``: attention output plus FSMN memory.

        The projections run on all rows at once; attention and the memory run per sequence, on its own
        frames only, as upstream does for a clip tokenized alone.  ``cos``/``sin``: rotary tables
        ``(>= max(lengths), head_dim)``.
        """
        q_all, k_all, v_all = self.query(x), self.key(x), self.value(x)
        h = self.n_head
        d = x.shape[-1] // h
        scale = d**-0.25  # upstream scales q and k each by head_dim ** -0.25 before the product
        attended, memory = [], []
        for q, k, v in zip(q_all.split(list(lengths)), k_all.split(list(lengths)), v_all.split(list(lengths)),
                           strict=True):
            t = q.shape[0]
            rope_cos, rope_sin = cos[:t, None, :], sin[:t, None, :]
            qh = (_rotate(q.view(t, h, d), rope_cos, rope_sin) * scale).transpose(0, 1)  # (H, T, D)
            kh = (_rotate(k.view(t, h, d), rope_cos, rope_sin) * scale).permute(1, 2, 0)  # (H, D, T)
            weights = torch.softmax(torch.matmul(qh, kh), dim=-1)  # (H, T, T)
            attended.append(torch.matmul(weights, v.view(t, h, d).transpose(0, 1)).transpose(0, 1).reshape(t, -1))
            memory.append(self._memory(v))
        return self.out(torch.cat(attended)) + torch.cat(memory)

    def _memory(self, v: torch.Tensor) -> torch.Tensor:
        """FSMN memory of one sequence's values ``(T, C)``: a depthwise convolution over time with zero
        padding at both ends (upstream's ``ConstantPad1d``), plus the values.  It runs as a 2-D
        convolution on a channels-last view, which oneDNN does several times faster than on ``(C, T)``."""
        c = v.shape[-1]
        # (1, C, 1, T) over the (T, C) memory; built with permute so that torch sees channels-last (a
        # transpose-based view of the same memory has strides it takes for contiguous: 8x slower)
        v_cl = v[None, None].permute(0, 3, 1, 2)
        if self.fsmn_left != self.fsmn_right:
            v_cl, pad = F.pad(v_cl, (self.fsmn_left, self.fsmn_right)), 0
        else:
            pad = self.fsmn_left
        out = F.conv2d(v_cl, self.fsmn_block.weight.unsqueeze(2), padding=(0, pad), groups=c)
        return out[0, :, 0, :].t() + v


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(attn_ln(x))``, then ``x + mlp(mlp_ln(x))``."""

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__()
        c = config.n_state
        self.attn = FSMNAttention(config)
        self.attn_ln = nn.LayerNorm(c, eps=config.layer_norm_eps)
        hidden = c * config.mlp_ratio
        self.mlp = nn.Sequential(Projection(c, hidden), nn.GELU(), Projection(hidden, c))
        self.mlp_ln = nn.LayerNorm(c, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, lengths: Sequence[int], cos: torch.Tensor, sin: torch.Tensor
                ) -> torch.Tensor:
        """``x`` ``(N, C)`` packed rows -> ``(N, C)``."""
        x = x + self.attn(self.attn_ln(x), lengths, cos, sin)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """S3TokenizerV2's encoder: two stride-2 GELU convolutions and ``n_layer`` attention blocks."""

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        k, s, c = config.conv_kernel_size, config.conv_stride, config.n_state
        self.conv1 = nn.Conv1d(config.n_mels, c, k, s, (k - 1) // 2)
        self.conv2 = nn.Conv1d(c, c, k, s, (k - 1) // 2)
        self.blocks = nn.ModuleList([ResidualAttentionBlock(config) for _ in range(config.n_layer)])
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def rope(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary tables ``(rope_max_positions, head_dim)`` on ``device`` (built once, not persistent)."""
        if self._rope is None or self._rope[0].device != device:
            cfg = self.config
            with torch.inference_mode(False):
                self._rope = rotary_tables(cfg.rope_head_dim, cfg.rope_max_positions, cfg.rope_theta, device)
        return self._rope

    def forward(self, mel: torch.Tensor, mel_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch of log-mels.

        ``mel`` ``(B, n_mels, T)`` float32 (100 frames/s), ``mel_len`` ``(B,)`` int64; frames past a clip's
        length are ignored.  Returns the hidden states of every clip's tokens packed as ``(N, n_state)``
        (batch-major, ``N = lengths.sum()``) and the token lengths ``(B,)`` int64 (25 tokens/s).

        The convolutions and attention run per clip on its own frames (the result does not depend on
        which clips share the batch); the position-wise layers run on all rows at once.
        """
        k, s = self.config.conv_kernel_size, self.config.conv_stride
        frames = [int(n) for n in mel_len]
        lengths = [_conv_out_len(_conv_out_len(n, k, s), k, s) for n in frames]
        if max(lengths) > self.config.rope_max_positions:
            raise ValueError(
                f"{max(lengths)} tokens exceed the rotary table ({self.config.rope_max_positions} positions)"
            )
        rows = [F.gelu(self.conv2(F.gelu(self.conv1(mel[i : i + 1, :, :n]))))[0].t() for i, n in enumerate(frames)]
        x = torch.cat(rows) if len(rows) > 1 else rows[0].contiguous()  # (N, C)
        cos, sin = self.rope(x.device)
        for block in self.blocks:
            x = block(x, lengths, cos, sin)
        return x, torch.tensor(lengths, dtype=torch.int64, device=mel.device)


class FSQCodebook(nn.Module):
    """Finite scalar quantiser: ``project_down`` to 8 values, each mapped to a digit in {0, 1, 2}."""

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__()
        self.levels = config.fsq_levels
        self.project_down = nn.Linear(config.n_state, config.fsq_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``(..., n_state)`` -> token indices ``(...)`` int64 in ``[0, levels ** fsq_dim)``."""
        h = torch.tanh(self.project_down(hidden)) * FSQ_SCALE
        digits = h.round().to(torch.int64) + 1  # (..., 8) in {0, 1, 2}
        powers = self.levels ** torch.arange(digits.shape[-1], device=digits.device, dtype=torch.int64)
        return (digits * powers).sum(dim=-1)


class FSQVectorQuantization(nn.Module):
    """Holder of the :class:`FSQCodebook` (keeps upstream's ``quantizer._codebook`` key names)."""

    def __init__(self, config: SpeechTokenizerConfig) -> None:
        super().__init__()
        self._codebook = FSQCodebook(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``(..., n_state)`` -> token indices ``(...)`` int64."""
        return self._codebook(hidden)


class BF16Linear(nn.Module):
    """A linear layer whose product runs in bfloat16 (float32 accumulation, bias added in float32).

    Inference only: the weight is a bfloat16 copy held as a non-persistent buffer.  ``(..., in)`` float32
    -> ``(..., out)`` float32.  About 1.4x faster than the float32 :class:`Projection` on CPUs with
    AVX512-BF16 or AMX, at the cost of ~3 significant digits in the product: see
    :meth:`SpeechTokenizer.to_bf16`.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x.to(torch.bfloat16), self.weight).float()
        return y if self.bias is None else y + self.bias


class SpeechTokenizer(nn.Module):
    """S3TokenizerV2: 16 kHz speech -> speech tokens at 25 tokens/s (codebook 6561).

    State-dict keys are upstream's without the ``tokenizer.`` prefix (``encoder.conv1.weight``,
    ``encoder.blocks.0.attn.query.weight``, ..., ``quantizer._codebook.project_down.bias``); there are no
    buffers (the STFT window, mel basis and rotary tables are computed, not stored).  Build one from a
    checkpoint with :meth:`from_state`; use :meth:`tokenize` on waveforms.
    """

    def __init__(self, config: SpeechTokenizerConfig = DEFAULT_CONFIG) -> None:
        super().__init__()
        self.config = config
        self.encoder = AudioEncoder(config)
        self.quantizer = FSQVectorQuantization(config)

    @classmethod
    def from_state(
        cls, state: Mapping[str, torch.Tensor], config: SpeechTokenizerConfig = DEFAULT_CONFIG
    ) -> SpeechTokenizer:
        """Build the tokenizer from a state dict (keys without the ``tokenizer.`` prefix), in eval mode.

        Nothing is randomly initialised: the module is created on the ``meta`` device and the tensors of
        ``state`` are assigned in place.  Raises :class:`~voicebank.errors.WeightsMismatchError` when a key
        is missing, unexpected or of the wrong shape.
        """
        module = build_empty(lambda: cls(config))
        load_into(module, state, what="S3 speech tokenizer")
        # the derived tables are built now, on the weights' device, rather than on the meta device
        module.encoder.rope(module.encoder.conv1.weight.device)
        return module

    def to_bf16(self) -> SpeechTokenizer:
        """Run the transformer blocks' projections and MLPs (99 % of the arithmetic) in bfloat16.  In place;
        returns ``self``.

        NOT exact: tokens then differ from float32 ones wherever a pre-quantisation value lies close to a
        rounding boundary (about 2 % of the tokens on the random test weights: ``benchmarks/fast_mode.py``
        measures it).  The convolutions, attention products, normalisation and quantiser stay in float32.
        """
        for block in self.encoder.blocks:
            for owner, name in [(block.attn, n) for n in ("query", "key", "value", "out")] + [
                (block.mlp, "0"), (block.mlp, "2")]:
                layer = getattr(owner, name)
                if isinstance(layer, nn.Linear):
                    setattr(owner, name, BF16Linear(layer))
        return self

    def forward(self, mel: torch.Tensor, mel_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of a padded batch of log-mels.

        ``mel`` ``(B, n_mels, T)`` float32 log-mels (100 frames/s; values past each clip's end are masked
        out), ``mel_len`` ``(B,)`` int64 frames per clip.  Returns ``(tokens, lengths)``: tokens
        ``(B, T_tokens)`` int64 (25 tokens/s, 0 past each clip's end), lengths ``(B,)`` int64.
        """
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(
                f"expected log-mels of shape (B, {self.config.n_mels}, T), got {tuple(mel.shape)}"
            )
        mel_len = mel_len.to(device=mel.device, dtype=torch.int64)
        hidden, lengths = self.encoder(mel, mel_len)
        codes = self.quantizer(hidden)  # (N,)
        tokens = codes.new_zeros(len(lengths), int(lengths.max()))
        for i, row in enumerate(codes.split(lengths.tolist())):
            tokens[i, : row.shape[0]] = row
        return tokens, lengths

    def tokenize(
        self, wavs: Sequence[torch.Tensor], max_tokens: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech tokens of one or more 16 kHz clips, in one batched forward.

        ``wavs``: 1-D float32 tensors at 16 kHz (lengths may differ; each more than 200 samples and at
        most 30 s).  Each clip's log-mel is computed separately and cut to ``4 * max_tokens`` frames when
        ``max_tokens`` is given (as upstream's ``max_len``).  Returns ``(tokens, lengths)``: tokens
        ``(B, N_max)`` int64 (25 tokens/s, zero past each clip's length), lengths ``(B,)`` int64.
        Each clip's tokens equal those of tokenizing it alone.
        """
        if len(wavs) == 0:
            raise ValueError("tokenize needs at least one waveform")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        with torch.inference_mode():
            device = self.encoder.conv1.weight.device
            max_frames = None if max_tokens is None else MEL_FRAMES_PER_TOKEN * max_tokens
            mels, lengths = log_mel_batch([w.to(device) for w in wavs], max_frames, self.config.n_mels)
            longest = int(lengths.max())
            if longest > MAX_MEL_FRAMES:
                seconds = longest * HOP_SAMPLES / S3_SR
                raise ValueError(
                    f"audio too long for the speech tokenizer: {seconds:.2f} s ({longest} mel frames); "
                    f"at most {MAX_MEL_FRAMES * HOP_SAMPLES // S3_SR} s is handled in one "
                    "window, cut the clip (or pass max_tokens)"
                )
            return self(mels, lengths)
