"""Where an engine computes: the device check, the compute threads and the decoding threads ahead of the models.

Nothing here imports torch until a device other than the CPU is named (or torch is already loaded).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, TypeVar

from ..errors import InvalidOptionError
from ..models.torch_runtime import require_torch
from ..ordered import ordered_map

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
R = TypeVar("R")


def decoded_ahead(fn: Callable[[T], R], items: Sequence[T], lookahead: int) -> Iterator[R]:
    """``fn(item)`` for each item, in input order, computed on worker threads up to ``lookahead`` items ahead
    (:func:`~voicebank.ordered.ordered_map`).

    For the audio front end (decoding, resampling, mels), which runs in numpy, soundfile and soxr with the
    GIL released: on as many threads as torch uses, it takes half the time on two cores.  An exception
    is raised when its item's turn comes, so the first unusable input in order is the one reported.
    """
    workers = min(len(items), max(1, _compute_threads()))
    with closing(ordered_map(fn, items, workers=workers if workers > 1 else 0, ahead=lookahead,
                             thread_name_prefix="voicebank-decode")) as done:
        for future in done:
            yield future.result()


def _compute_threads() -> int:
    """The threads the models compute on: torch's setting once torch is loaded, else the usable CPUs."""
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    from ..cpus import usable_cpus

    return usable_cpus()


def device_name(device: str | torch.device) -> str:
    """``str(check_device(device))``, without importing torch for the CPU (all that numpy work runs on)."""
    if isinstance(device, str) and device.strip() == "cpu":
        return "cpu"
    return str(check_device(device))


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` if torch knows it and this machine has it, else
    :class:`~voicebank.errors.InvalidOptionError` saying which devices there are (the one device check of the
    engine, the library, the service and the command line).  Imports torch (see :func:`device_name`)."""
    torch = require_torch(f"device {device!r}")
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise InvalidOptionError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from e
    else:
        raise InvalidOptionError(f"device must be a name such as 'cpu' or 'cuda:0', got {device!r}")
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidOptionError(f"device {str(dev)!r}: CUDA is not available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidOptionError(f"device {str(dev)!r}: this machine has {torch.cuda.device_count()} CUDA "
                                     f"device(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return dev
    if dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InvalidOptionError(f"device {str(dev)!r}: MPS is not available on this machine; use cpu")
        return dev
    raise InvalidOptionError(f"device {str(dev)!r} cannot run the models; use cpu, cuda or mps")


__all__ = ["check_device", "decoded_ahead", "device_name"]
