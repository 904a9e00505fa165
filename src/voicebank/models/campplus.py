"""CAM++, the S3Gen speaker encoder: 16 kHz audio -> 192-d x-vector (``gen.embedding``).

A clean re-implementation of the network upstream Chatterbox loads as ``s3gen.speaker_encoder`` (from
3D-Speaker / FunASR), for inference only.  Module and buffer names equal upstream's with the
``speaker_encoder.`` prefix removed, so a state dict read from ``s3gen.safetensors`` loads strictly.

Architecture (input: Kaldi fbank, 80 bins, minus its mean over time):

* ``head`` (FCM): a 2-D conv stem, two stages of two residual blocks (each stage halves the frequency
  axis), a strided conv (halves it again): ``(B, 80, T) -> (B, 32 * 10, T)``;
* ``xvector.tdnn``: conv k5 stride 2 -> 128 channels, BatchNorm, ReLU (``T -> ceil(T / 2)``);
* ``xvector.block{1,2,3}``: densely connected CAM layers (12, 24, 16 layers, growth 32, kernel 3,
  dilation 1, 2, 2), each followed by ``transit{1,2,3}`` (BN, ReLU, 1x1 conv halving the channels);
* ``out_nonlinear`` (BN, ReLU), statistics pooling (mean and unbiased std over time -> 1024),
  ``dense`` (1x1 conv -> 192, BatchNorm without affine parameters).

BatchNorm always uses its running statistics: the module is for evaluation only.  For speed the forward
pass folds each BatchNorm that follows a convolution into that convolution's weights and bias, computes
the other BatchNorm + ReLU pairs as one multiply-add, runs the 2-D head channels-last, and evaluates the
CAM gate once per 100-frame segment (it is constant within a segment).  The folding is recomputed on every
call, so nothing goes stale when the parameters change; the result equals the unfolded network to
float32 rounding (about 1e-6 relative), not bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..audio.fbank import fbank
from ..chatterbox import XVECTOR_DIM
from .building import build_empty, load_into

FEAT_DIM = 80
# Shortest 16 kHz input with a finite x-vector: 3 fbank frames (400 + 2 * 160 samples), which the
# stride-2 TDNN turns into the 2 frames an unbiased standard deviation needs.
MIN_SAMPLES = 720


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` ``(C,)`` with ``bn(x) == x * scale + shift`` per channel (eval mode)."""
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None  # eval-mode BatchNorm with running statistics
    scale = torch.rsqrt(var + bn.eps)
    shift = -mean * scale
    if bn.weight is not None:
        scale = scale * bn.weight
        shift = shift * bn.weight + bn.bias
    return scale, shift


def _folded(conv: nn.Conv1d | nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as a single convolution."""
    scale, shift = _bn_affine(bn)
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return weight, bias


def _conv_bn(x: torch.Tensor, conv: nn.Conv1d | nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``bn(conv(x))`` in one convolution."""
    weight, bias = _folded(conv, bn)
    return conv._conv_forward(x, weight, bias)


class _BNReLU(nn.Module):
    """``batchnorm`` then ReLU; the child is named as in upstream's ``get_nonlinear("batchnorm-relu")``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C, T)``, as one multiply-add and an in-place ReLU."""
        scale, shift = _bn_affine(self.batchnorm)
        return torch.relu_(torch.addcmul(shift[:, None], x, scale[:, None]))


class _BN(nn.Module):
    """Affine-free BatchNorm (upstream's ``"batchnorm_"`` config), named ``batchnorm``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.batchnorm(x)


class BasicResBlock(nn.Module):
    """2-D residual block: (conv3x3, BN, ReLU, conv3x3, BN) + shortcut, ReLU.  Stride acts on frequency."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu_(_conv_bn(x, self.conv1, self.bn1))
        out = _conv_bn(out, self.conv2, self.bn2)
        if len(self.shortcut) == 0:
            shortcut = x
        else:
            conv, bn = self.shortcut
            assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            shortcut = _conv_bn(x, conv, bn)
        return torch.relu_(out + shortcut)


class FCM(nn.Module):
    """Front-end convolution module: ``(B, 80, T) -> (B, 320, T)``."""

    def __init__(self, channels: int = 32, feat_dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = self._stage(channels)
        self.layer2 = self._stage(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    @staticmethod
    def _stage(channels: int) -> nn.Sequential:
        """Two residual blocks, the first halving the frequency axis."""
        return nn.Sequential(BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last: oneDNN then convolves without reordering each activation to and from its layout
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        out = torch.relu_(_conv_bn(x, self.conv1, self.bn1))  # (B, C, F, T)
        out = self.layer2(self.layer1(out))
        out = torch.relu_(_conv_bn(out, self.conv2, self.bn2))
        b, c, f, t = out.shape
        return out.contiguous().reshape(b, c * f, t)


class TDNNLayer(nn.Module):
    """Conv1d (no bias, 'same' padding) then BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2, bias=False)
        self.nonlinear = _BNReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(_conv_bn(x, self.linear, self.nonlinear.batchnorm))


class CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by a sigmoid of global + 100-frame-segment context."""

    SEG_LEN = 100

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 reduction: int = 2) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size,
                                      padding=padding, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear_local(x)
        # The context (mean over the clip plus mean over the frame's 100-frame segment, the last segment
        # possibly shorter) is the same for every frame of a segment, and so is the gate computed from it
        # by 1x1 convolutions: compute it once per segment, then repeat it over the segment's frames.
        segments = F.avg_pool1d(x, kernel_size=self.SEG_LEN, stride=self.SEG_LEN, ceil_mode=True)
        context = x.mean(-1, keepdim=True) + segments  # (B, C, n_segments)
        gate = torch.sigmoid(self.linear2(torch.relu_(self.linear1(context))))
        return y * gate.repeat_interleave(self.SEG_LEN, dim=-1)[..., : y.shape[-1]]


class CAMDenseTDNNLayer(nn.Module):
    """BN-ReLU, 1x1 bottleneck conv, BN-ReLU, CAM layer: ``(B, in, T) -> (B, growth, T)``."""

    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int,
                 dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _BNReLU(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _BNReLU(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck = torch.relu_(_conv_bn(self.nonlinear1(x), self.linear1, self.nonlinear2.batchnorm))
        return self.cam_layer(bottleneck)


class CAMDenseTDNNBlock(nn.ModuleList):
    """Densely connected stack (``tdnnd1`` ... ``tdnndN``): each layer adds its output to the channels."""

    def __init__(self, num_layers: int, in_channels: int, out_channels: int, bn_channels: int,
                 kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.growth = out_channels
        for i in range(num_layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(in_channels + i * out_channels, out_channels,
                                                               bn_channels, kernel_size, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Write every layer's output into one preallocated buffer instead of concatenating repeatedly:
        # the values are the same, without the quadratic copying.
        b, c, t = x.shape
        out = x.new_empty(b, c + len(self) * self.growth, t)
        out[:, :c] = x
        for layer in self:
            out[:, c: c + self.growth] = layer(out[:, :c])
            c += self.growth
        return out


class TransitLayer(nn.Module):
    """BN-ReLU then a 1x1 conv (no bias) that halves the channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = _BNReLU(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    """1x1 conv (no bias) on pooled statistics ``(B, C)``, then affine-free BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = _BN(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_bn(x.unsqueeze(-1), self.linear, self.nonlinear.batchnorm).squeeze(-1)


class StatsPool(nn.Module):
    """Mean and unbiased standard deviation over time: ``(B, C, T) -> (B, 2C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class CAMPPlus(nn.Module):
    """The CAM++ speaker encoder of S3Gen (6.9 M parameters), inference only.

    Build it from a checkpoint with :meth:`from_state`; get an x-vector with :meth:`xvector`.
    ``forward`` takes mean-normalised fbank features ``(B, T, 80)`` and returns ``(B, 192)``.
    """

    def __init__(self, feat_dim: int = FEAT_DIM, embedding_size: int = XVECTOR_DIM, growth_rate: int = 32,
                 bn_size: int = 4, init_channels: int = 128) -> None:
        super().__init__()
        self.head = FCM(feat_dim=feat_dim)
        # The trunk is registered as "xvector" (upstream's name, which fixes the state-dict keys); the
        # attribute name is taken by the xvector() method, so it is reached through the `trunk` property.
        trunk = nn.Sequential()
        trunk.add_module("tdnn", TDNNLayer(self.head.out_channels, init_channels, 5, stride=2))
        channels = init_channels
        for i, (num_layers, dilation) in enumerate(zip((12, 24, 16), (1, 2, 2), strict=True)):
            trunk.add_module(f"block{i + 1}", CAMDenseTDNNBlock(
                num_layers, channels, growth_rate, bn_size * growth_rate, kernel_size=3, dilation=dilation))
            channels += num_layers * growth_rate
            trunk.add_module(f"transit{i + 1}", TransitLayer(channels, channels // 2))
            channels //= 2
        trunk.add_module("out_nonlinear", _BNReLU(channels))
        trunk.add_module("stats", StatsPool())
        trunk.add_module("dense", DenseLayer(channels * 2, embedding_size))
        self._modules["xvector"] = trunk  # add_module() refuses a name that a method already has

    @property
    def trunk(self) -> nn.Sequential:
        """The TDNN trunk (``xvector.*`` in the state dict): ``(B, 320, T) -> (B, 192)``."""
        trunk = self._modules["xvector"]
        assert isinstance(trunk, nn.Sequential)
        return trunk

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor]) -> CAMPPlus:
        """Build the encoder from its state dict (upstream names without ``speaker_encoder.``).

        The module is created on the ``meta`` device, so nothing is initialised, and the tensors of
        ``state`` are assigned in place.  Raises :class:`~voicebank.errors.WeightsMismatchError` if a key is
        missing, unexpected or wrongly shaped.  The result is in eval mode without gradients.
        """
        module = build_empty(cls)
        load_into(module, state, what="CAM++ speaker encoder")
        return module

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats``: float32 ``(B, T, 80)`` mean-normalised fbank -> float32 ``(B, 192)`` x-vectors."""
        return self.trunk(self.head(feats.permute(0, 2, 1)))

    @staticmethod
    def xvector_features(wav16: torch.Tensor) -> torch.Tensor:
        """The network input for one clip: float32 ``(1, frames, 80)`` fbank of ``wav16`` (16 kHz ``(n,)``)
        minus its per-bin mean over time.

        Raises ``ValueError`` below :data:`MIN_SAMPLES` (45 ms): the statistics pooling needs two frames
        after the stride-2 TDNN, i.e. three fbank frames; upstream would return NaN there.
        """
        n = wav16.shape[-1]
        if n < MIN_SAMPLES:
            raise ValueError(f"audio too short for a speaker embedding: {n} samples at 16 kHz, "
                             f"need at least {MIN_SAMPLES} ({MIN_SAMPLES / 16:g} ms)")
        feats = fbank(wav16, num_mel_bins=FEAT_DIM)
        return (feats - feats.mean(dim=0, keepdim=True)).unsqueeze(0)

    def xvector(self, wav16: torch.Tensor) -> torch.Tensor:
        """Speaker x-vector of one clip, as upstream's ``speaker_encoder.inference([wav16])``.

        ``wav16``: float32 ``(n,)`` (or ``(1, n)``) at 16 kHz in [-1, 1], at least :data:`MIN_SAMPLES`.
        Returns float32 ``(1, 192)`` (not L2-normalised), computed under ``torch.inference_mode()``.
        """
        return self.xvectors([wav16])[0]

    def xvectors(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`xvector` of several clips, in input order; each entry is float32 ``(1, 192)``.

        Clips of the same length run as one batch (~1.5x faster per clip; equal to one by one to float32
        rounding, ~1e-7, as the batched convolutions round differently); clips of other lengths are not
        padded, since padding would change their statistics.
        """
        param = next(self.parameters())
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(wavs):
            groups.setdefault(w.shape[-1], []).append(i)
        out: list[torch.Tensor] = [torch.empty(0)] * len(wavs)
        with torch.inference_mode():
            for idx in groups.values():
                feats = torch.cat([self.xvector_features(wavs[i].reshape(-1).to(param.device, torch.float32))
                                   for i in idx])
                for i, x in zip(idx, self.forward(feats), strict=True):
                    out[i] = x[None]
        return out

