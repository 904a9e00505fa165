"""Options and helpers shared by the ``voicebank`` commands (cheap to import: no torch, no numpy)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

PROGRESS_MIN_ITEMS = 5
"""Progress bars appear for more items than this."""

WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", "-w", help="Directory with the Chatterbox checkpoints (default: $VOICEBANK_WEIGHTS, "
    "then the Hugging Face cache).", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1, mps.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Allow downloading weights from the Hugging Face hub "
                                           "(needs the optional huggingface_hub package).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when there are more than a handful of items; silent otherwise."""
    if total <= PROGRESS_MIN_ITEMS or os.environ.get("VOICEBANK_NO_PROGRESS"):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def check_device(device: str) -> str:
    """``device`` if torch knows it and this machine has it; a usage error (exit 2) otherwise."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise typer.BadParameter(f"unknown device {device!r}: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise typer.BadParameter(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return device
