"""Options and helpers shared by the ``voicebank`` commands (cheap to import: no torch, no numpy)."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..chatterbox import VARIANTS

if TYPE_CHECKING:
    from ..batch.runner import Executor
    from ..library import Library

PROGRESS_MIN_ITEMS = 5
"""Progress bars appear for more items than this."""

WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", "-w", help="Directory with the Chatterbox checkpoints (default: $VOICEBANK_WEIGHTS, "
    "then the Hugging Face cache).", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1, mps.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Allow downloading weights from the Hugging Face hub "
                                           "(needs the optional huggingface_hub package).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
LibraryOpt = Annotated[str | None, typer.Option(
    "--library", "-L", help="Library directory, or a shared library's postgresql://user@host:port/db URL (its "
    "content files then at --blobs s3://bucket/prefix) (default: $VOICEBANK_LIBRARY, else the user data directory).",
    show_default=False)]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1, max=1024, help="Torch threads of each worker (default: the CPUs this process may use, "
    "from its CPU affinity and cgroup quota, shared out between the workers).", show_default=False)]
ParentsOpt = Annotated[bool, typer.Option("--parents", help="Create the output's missing parent directories "
                                          "(without it a missing directory is an error, as with cp).")]
VariantOpt = Annotated[str | None, typer.Option("--variant", help=f"Chatterbox variant: {', '.join(VARIANTS)} "
                                                "(default: the voice's own).", show_default=False)]



MAX_MESSAGE_CHARS = 500
"""One-line errors and warnings are cut to this many characters."""


def _escape_char(c: str) -> str:
    if c in "\t\n\r":
        return {"\t": "\\t", "\n": "\\n", "\r": "\\r"}[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def clean(text: object, limit: int | None = None) -> str:
    """``text`` safe to print on a terminal: every control, format (bidi overrides, zero-width), surrogate,
    private-use, unassigned or line-separator character is shown as an escape (``\\x1b``, ``\\u202e``), so
    nothing that came from a file or a user can move the cursor, retitle the terminal or hide text.  With
    ``limit``, cut to that many characters (ending in ``...``).

    The one helper every command uses for names, metadata, paths and messages.
    """
    s = str(text)
    if not s.isprintable() or any(unicodedata.category(c) in ("Cf", "Co", "Cn", "Cs", "Zl", "Zp") for c in s):
        s = "".join(_escape_char(c) if (unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp"))
                    and c != " " else c for c in s)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 3)] + "..."
    return s


def cell(text: object) -> Any:
    """A table cell for rich: :func:`clean` text, with rich markup in it shown literally."""
    from rich.text import Text

    return Text(clean(text))


def error_line(message: object, *, kind: str = "error") -> None:
    """Print ``voicebank: error: MESSAGE`` on stderr: one line, escaped, at most :data:`MAX_MESSAGE_CHARS`."""
    text = " ".join(str(message).split())  # one line: torch's and sqlite's multi-line texts joined
    typer.echo(f"voicebank: {kind}: {clean(text, MAX_MESSAGE_CHARS)}", err=True)


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when there are more than a handful of items; silent otherwise."""
    from ..settings import Settings

    if total <= PROGRESS_MIN_ITEMS or not Settings.from_env().progress:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def check_device(device: str) -> str:
    """``device`` if torch knows it and this machine has it (the engine's check); a usage error (exit 2)
    otherwise.  The CPU needs no check (and no torch: embeddings run in numpy)."""
    if device == "cpu":
        return device
    from ..engine.engine import check_device as engine_check_device
    from ..errors import InvalidOptionError

    try:
        engine_check_device(device)
    except InvalidOptionError as e:
        raise typer.BadParameter(f"--device: {e}") from e
    return device


def check_executor(executor: str, ray_address: str | None, gpus_per_worker: float, device: str) -> Executor:
    """``executor`` when it is one and the executor options go together (a usage error, exit 2, otherwise)."""
    from ..batch.runner import EXECUTORS

    if executor not in EXECUTORS:
        raise typer.BadParameter(f"--executor {executor}: choose one of {', '.join(EXECUTORS)}")
    if ray_address is not None and executor != "ray":
        raise typer.BadParameter("--ray-address is for --executor ray")
    if gpus_per_worker > 0 and executor != "ray":
        raise typer.BadParameter("--gpus-per-worker is for --executor ray (local workers share --device)")
    if gpus_per_worker > 0 and not device.startswith("cuda"):
        raise typer.BadParameter("--gpus-per-worker needs --device cuda")
    return executor


def torch_threads(threads: int | None, share: int = 1) -> int:
    """``--threads`` when given, else the CPUs this process may use (:func:`~voicebank.cpus.usable_cpus`)
    shared out between ``share`` workers that each run torch at once; at least 1."""
    if threads is not None:
        return threads
    from ..cpus import usable_cpus

    return max(1, usable_cpus() // max(1, share))


BLOBS: list[str | None] = [None]
"""The ``--blobs`` location given before the command (``voicebank --blobs s3://... list``), for open_library."""


def open_library(library: str | Path | None, weights: Path | None = None, device: str = "cpu",
                 download: bool = False, threads: int | None = None) -> Library:
    """The library a command works on: the one place the CLI builds a :class:`~voicebank.library.Library`, once
    per command, from its ``--library`` (and, for commands that run models, ``--weights``, ``--device``,
    ``--download``, ``--threads``).  Its models, when needed, are the process's own
    (:func:`~voicebank.engine.shared_engine`)."""
    from ..library import Library

    if device != "cpu":
        device = check_device(device)
    return Library(library, weights=weights, device=device, allow_download=download, threads=threads,
                   blobs=BLOBS[0])


def variant_option(variant: str | None) -> str | None:
    from ..options import check_variant

    if variant is None:
        return None
    try:
        return check_variant(variant)
    except ValueError as e:
        raise typer.BadParameter(clean(e)) from e


def check_exaggeration_option(value: float) -> float:
    """``--exaggeration`` checked by the API's own check (finite, in range) before any work: usage error."""
    from ..errors import InvalidOptionError
    from ..options import check_exaggeration

    try:
        return check_exaggeration(value, name="--exaggeration")
    except InvalidOptionError as e:
        raise typer.BadParameter(str(e)) from e


def check_output(path: Path, parents: bool = False) -> Path:
    """``-o PATH`` checked before any work (not a directory, not under a regular file, writable; its directory
    exists unless ``--parents``)."""
    from ..fileio import check_output_path

    return check_output_path(path, "--output", mkdir=parents, opt_in="--parents")


def make_console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: no terminal width to fit, do not wrap at 80 columns
        console.width = 200
    return console


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:{spec}}{unit}"


def report_path(library: str | Path | None) -> Path:
    from ..library import resolve_library_path

    return resolve_library_path(library)


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
