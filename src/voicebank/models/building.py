"""Building a model's module skeleton without initialising it, and loading a checkpoint's tensors into it strictly.

:func:`build_empty` constructs a module on the ``meta`` device (no memory, no random init);
:func:`load_into` then assigns the checkpoint's tensors to it, refusing a state dict whose keys or shapes do
not match exactly.  Where the tensors come from is :mod:`.checkpoints`'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch.overrides import TorchFunctionMode

from ..errors import WeightsMismatchError

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


# Tensor factories that take ``device=`` (torch's own list for ``with torch.device(...)``, public names only).
_FACTORIES: frozenset[Callable[..., Any]] = frozenset({
    torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.eye, torch.arange, torch.range,
    torch.linspace, torch.logspace, torch.rand, torch.randn, torch.randint, torch.randperm, torch.tensor,
    torch.as_tensor, torch.asarray, torch.scalar_tensor, torch.tril_indices, torch.triu_indices, torch.hann_window,
    torch.hamming_window, torch.bartlett_window, torch.blackman_window, torch.kaiser_window, torch.empty_permuted,
    torch.fft.fftfreq, torch.fft.rfftfreq,
})
# What modules' reset_parameters() run: torch.nn.init's initialisers (some reach a mode themselves, the others
# through the tensor methods they call) and the in-place fills and draws of those and of the normalisation
# layers.  On a meta tensor each is a no-op that costs time (``uniform_`` runs a Python decomposition).
_INITIALISERS: frozenset[Callable[..., Any]] = frozenset({
    *(getattr(torch.nn.init, name) for name in (
        "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
        "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
      if hasattr(torch.nn.init, name)),
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.fill_, torch.Tensor.zero_, torch.Tensor.random_,
    torch.Tensor.bernoulli_, torch.Tensor.exponential_, torch.Tensor.log_normal_, torch.Tensor.cauchy_,
    torch.Tensor.geometric_,
})
_META = torch.device("meta")


class _MetaBuild(TorchFunctionMode):
    """While a module is built on this thread: factories without a device make ``meta`` tensors, and
    initialisers given a ``meta`` tensor return it untouched.

    A torch function mode lives on the mode stack of the thread that enters it, so other threads go on
    creating and initialising tensors as usual, and nothing module-wide is swapped (``torch.nn.init.uniform_``
    stays the function it is): ``torch.nn.init``'s initialisers reach the mode through
    ``handle_torch_function``, tensor methods through torch's own dispatch.  The mode also does what
    ``with torch.device("meta")`` (itself such a mode) would, so each torch call of a build pays one Python
    hop, not two: stacking the two took CAM++'s build from ~37 to ~50 ms.

    No garbage-collector pause: it would be process-wide, and it only moved the one full collection a process
    makes after importing torch (~80 ms) to just after the build, not saved it.
    """

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _INITIALISERS:
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        elif func in _FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = _META
        return func(*args, **kwargs)


def build_empty(factory: Callable[[], ModuleT]) -> ModuleT:
    """``factory()`` built on the ``meta`` device without running any initialiser: a skeleton whose tensors
    :func:`load_into` then assigns from a checkpoint.

    Only the calling thread is affected (see :class:`_MetaBuild`); builds on several threads at once are safe.
    """
    with _MetaBuild():
        return factory()


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Load ``state`` into ``module`` strictly, assigning the tensors in place (no copy, no init).

    ``module`` is expected to be built on the ``meta`` device (see :func:`build_empty`).  Missing,
    unexpected and wrongly shaped keys raise :class:`WeightsMismatchError` listing them all.  Floating-point
    tensors of another dtype are converted to float32.  The module is left in eval mode without gradients.
    """
    expected = module.state_dict(keep_vars=True)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise WeightsMismatchError(f"{what} does not fit the expected layout: " + "; ".join(parts))

    # What load_state_dict(strict=True, assign=True) does, without its per-module bookkeeping (the checks
    # are done above): each parameter becomes a Parameter around the checkpoint's tensor, each buffer the
    # tensor itself.  setattr keeps module-specific caches (nn.LSTM's flat weights) up to date.
    owners = dict(module.named_modules())
    for key, value in state.items():
        if value.is_floating_point() and value.dtype != torch.float32:
            value = value.float()
        owner_name, _, attr = key.rpartition(".")
        owner = owners[owner_name]
        if isinstance(expected[key], torch.nn.Parameter):
            setattr(owner, attr, torch.nn.Parameter(value, requires_grad=False))
        else:
            setattr(owner, attr, value)
    module.eval()


__all__ = ["build_empty", "load_into"]
