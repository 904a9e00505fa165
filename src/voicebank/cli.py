"""The ``voicebank`` command line.  Library errors become exit code 1 and one line on stderr."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__
from .cli_common import DeviceOpt, DownloadOpt, WeightsOpt, check_device, progress

app = typer.Typer(
    name="voicebank",
    help="Extract, store, compare and serve Chatterbox voice conditionals without loading the TTS model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

VariantOpt = Annotated[str, typer.Option("--variant", help="Chatterbox variant: english, multilingual, turbo, vc.")]


def _err(message: str) -> None:
    typer.echo(f"voicebank: error: {message}", err=True)


_OWN_PROCESS = False
"""True when :func:`main` runs the command line of this process (the console script), not a caller's argv."""


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Wrap the import of torch and the models: in the ``voicebank`` process, the cyclic garbage collector
    is paused during the import (it would walk the growing heap dozens of times: ~0.13 s of the 1 s that
    ``import torch`` takes) and what the import created is then frozen out of later collections.  Elsewhere
    (tests calling :func:`main` with arguments) it does nothing."""
    if not _OWN_PROCESS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"voicebank {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """voicebank: Chatterbox voices without the TTS model."""


@app.command()
def embed(
    audio: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC, MP3, OGG).", show_default=False)],
    weights: WeightsOpt = None,
    ve_weights: Annotated[Path | None, typer.Option(
        "--ve-weights", help="A single voice-encoder file: ve.safetensors, ve.pt or Resemblyzer's pretrained.pt.",
        show_default=False)] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Print one JSON object per line: {path, embedding}.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write an (N, 256) float32 .npy file.",
                                                   show_default=False)] = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
) -> None:
    """Speaker embeddings (256-d, L2-normalised; Chatterbox's t3.speaker_emb), one row per input in order."""
    _quick_exit_ok()
    with heavy_imports():
        from .extractor import Extractor

    if weights is not None and ve_weights is not None:
        raise typer.BadParameter("give --weights or --ve-weights, not both")
    if output is not None and output.suffix.lower() != ".npy":
        raise typer.BadParameter(f"--output {output}: the output must end in .npy")
    if output is not None and jsonl:
        raise typer.BadParameter("give --jsonl or --output, not both")
    extractor = Extractor(ve_weights or weights, device=check_device(device), allow_download=download)
    with progress(len(audio), "embedding") as advance:
        embeddings = extractor.embed([str(p) for p in audio], progress=advance)
    if output is not None:
        import numpy as np

        from .fileio import atomic_write

        atomic_write(output, lambda f: np.save(f, embeddings))
        typer.echo(f"wrote {embeddings.shape[0]} embeddings to {output}", err=True)
        return
    for path, row in zip(audio, embeddings, strict=True):
        typer.echo(json.dumps({"path": str(path), "embedding": [round(float(x), 8) for x in row]}))


@app.command()
def extract(
    audio: Annotated[Path, typer.Argument(help="Reference clip (WAV, FLAC, MP3, OGG).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="OUT.safetensors (voicebank) or OUT.pt (upstream "
                                         "Conditionals.save format).", show_default=False)],
    variant: VariantOpt = "english",
    exaggeration: Annotated[float, typer.Option("--exaggeration", help="Emotion exaggeration (T3 emotion_adv).")] = 0.5,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
) -> None:
    """Extract the full Chatterbox conditionals of a reference clip into a voice file."""
    _quick_exit_ok()
    with heavy_imports():
        from .extractor import Extractor
    from .weights import check_variant

    if output.suffix.lower() not in (".safetensors", ".pt"):
        raise typer.BadParameter(f"--output {output}: use a .safetensors or .pt file name")
    try:
        v = check_variant(variant)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    voice = Extractor(weights, variant=v, device=check_device(device), allow_download=download).extract(
        str(audio), exaggeration=exaggeration)
    voice.save(output)
    typer.echo(f"wrote {v} voice of {audio} to {output}", err=True)


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A voice file: voicebank .safetensors or upstream .pt.",
                                         show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what a voice file holds: metadata, tensor shapes and dtypes."""
    _quick_exit_ok()
    with heavy_imports():
        from .conditionals import Voice

    voice = Voice.load(file)
    info: dict[str, Any] = voice.describe()
    info["file"] = str(file)
    info["format"] = "voicebank safetensors" if file.suffix.lower() == ".safetensors" else "upstream .pt"
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{file}  ({info['format']})")
    for k, val in info["metadata"].items():
        if val:
            typer.echo(f"  {k}: {val}")
    for k, t in info["tensors"].items():
        typer.echo(f"  {k:32s} {t['dtype']:8s} {tuple(t['shape'])}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``voicebank`` script; returns the exit code.

    ``argv=None`` means "the command line of this process" (the console script), which ends right after:
    the interpreter is then spared some work on the way out (see :func:`_exit_quickly`).
    """
    global _OWN_PROCESS
    _OWN_PROCESS = argv is None
    try:
        rc = _run(argv)
    finally:
        if argv is None:
            # Freeze every live object into the permanent GC generation, so that the interpreter's last
            # collection no longer walks the objects torch created on import (~0.3 s).
            gc.freeze()
    if argv is None and _QUICK_EXIT:
        _exit_quickly(rc)
    return rc


_QUICK_EXIT = False
"""Set by the commands that have written, fsynced and printed everything when they return."""


def _quick_exit_ok() -> None:
    global _QUICK_EXIT
    _QUICK_EXIT = True


def _exit_quickly(code: int) -> None:
    """End the process now: tearing down torch's modules and libraries takes ~0.1 s, 5 % of a cold
    ``voicebank extract``.  Only for commands whose results are all on disk and on the terminal."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code)


def _run(argv: list[str] | None) -> int:
    from .errors import VoicebankError

    try:
        rc = app(args=argv, standalone_mode=False)
    except VoicebankError as e:
        _err(str(e))
        return 1
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        _err("aborted")
        return 1
    except Exception as e:  # usage errors (click's ClickException, vendored or not, by duck typing)
        show, exit_code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            return exit_code
        raise
    return rc if isinstance(rc, int) else 0


from .cli_batch import register as register_batch  # noqa: E402  (voicebank batch)
from .cli_library import register  # noqa: E402  (the library commands live in their own module)

register(app)
register_batch(app)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
