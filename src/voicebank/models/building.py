"""Building a model's module skeleton without initialising it, and loading a checkpoint's tensors into it strictly.

:func:`build_empty` constructs a module on the ``meta`` device (no memory, no random init);
:func:`load_into` then assigns the checkpoint's tensors to it, refusing a state dict whose keys or shapes do
not match exactly.  Where the tensors come from is :mod:`.checkpoints`'.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from ..errors import WeightsMismatchError

if TYPE_CHECKING:
    import torch

ModuleT = TypeVar("ModuleT", bound="torch.nn.Module")


# torch.nn.init functions that module constructors call from reset_parameters()
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                 "sparse_")
_INIT_LOCK = threading.Lock()


@contextmanager
def _initialisers_disabled() -> Iterator[None]:
    """Make ``torch.nn.init``'s initialisers return their tensor untouched while modules are built.

    On the meta device they would only cost time (``uniform_`` runs a Python decomposition per parameter:
    ~0.15 s for the S3 tokenizer and CAM++ together).  The functions are swapped module-wide for the
    duration of the construction, under a lock, as ``transformers``' ``no_init_weights`` does.
    """
    import torch.nn.init as init

    def keep(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return tensor

    with _INIT_LOCK:
        saved = {name: getattr(init, name) for name in _INITIALISERS if hasattr(init, name)}
        try:
            for name in saved:
                setattr(init, name, keep)
            yield
        finally:
            for name, fn in saved.items():
                setattr(init, name, fn)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building hundreds of modules allocates enough objects to trigger
    full collections, each of which walks every object torch created at import (~80 ms)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_empty(factory: Callable[[], ModuleT]) -> ModuleT:
    """``factory()`` built on the ``meta`` device without running any initialiser: a skeleton whose tensors
    :func:`load_into` then assigns from a checkpoint."""
    import torch

    with _gc_paused(), _initialisers_disabled(), torch.device("meta"):
        return factory()


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Load ``state`` into ``module`` strictly, assigning the tensors in place (no copy, no init).

    ``module`` is expected to be built on the ``meta`` device (see :func:`build_empty`).  Missing,
    unexpected and wrongly shaped keys raise :class:`WeightsMismatchError` listing them all.  Floating-point
    tensors of another dtype are converted to float32.  The module is left in eval mode without gradients.
    """
    import torch

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
