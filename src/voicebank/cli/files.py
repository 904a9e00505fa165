"""Commands on audio and voice files: ``embed``, ``extract``, ``inspect-voice``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..chatterbox import DEFAULT_EXAGGERATION
from .app import VariantOpt, heavy_imports, quick_exit_ok
from .common import (
    DeviceOpt,
    DownloadOpt,
    ParentsOpt,
    ThreadsOpt,
    WeightsOpt,
    check_device,
    check_exaggeration_option,
    check_output,
    clean,
    progress,
    torch_threads,
)


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
    parents: ParentsOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Speaker embeddings (256-d, L2-normalised; Chatterbox's t3.speaker_emb), one row per input in order."""
    quick_exit_ok()
    with heavy_imports():
        from ..engine.extractor import Extractor

    if weights is not None and ve_weights is not None:
        raise typer.BadParameter("give --weights or --ve-weights, not both")
    if output is not None and output.suffix.lower() != ".npy":
        raise typer.BadParameter(f"--output {output}: the output must end in .npy")
    if output is not None and jsonl:
        raise typer.BadParameter("give --jsonl or --output, not both")
    if output is not None:
        check_output(output, parents)
    # the voice encoder runs in numpy (never torch): only another device than the CPU is checked
    extractor = Extractor(ve_weights or weights, device=device if device == "cpu" else check_device(device),
                          allow_download=download, threads=torch_threads(threads))
    with progress(len(audio), "embedding") as advance:
        embeddings = extractor.embed([str(p) for p in audio], progress=advance)
    if output is not None:
        import numpy as np

        from ..fileio import atomic_write

        atomic_write(output, lambda f: np.save(f, embeddings), mkdir=parents, opt_in="--parents")
        typer.echo(f"wrote {embeddings.shape[0]} embeddings to {clean(output)}", err=True)
        return
    for path, row in zip(audio, embeddings, strict=True):
        typer.echo(json.dumps({"path": str(path), "embedding": [round(float(x), 8) for x in row]}))


def extract(
    audio: Annotated[Path, typer.Argument(help="Reference clip (WAV, FLAC, MP3, OGG).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="OUT.safetensors (voicebank) or OUT.pt (upstream "
                                         "Conditionals.save format).", show_default=False)],
    variant: VariantOpt = "english",
    exaggeration: Annotated[float, typer.Option(
        "--exaggeration", help="Emotion exaggeration (T3 emotion_adv).")] = DEFAULT_EXAGGERATION,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
    parents: ParentsOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Extract the full Chatterbox conditionals of a reference clip into a voice file."""
    quick_exit_ok()
    with heavy_imports():
        from ..engine.extractor import Extractor
    from ..options import check_variant

    if output.suffix.lower() not in (".safetensors", ".pt"):
        raise typer.BadParameter(f"--output {clean(output)}: use a .safetensors or .pt file name")
    try:
        v = check_variant(variant)
    except ValueError as e:
        raise typer.BadParameter(clean(e)) from e
    check_exaggeration_option(exaggeration)
    check_output(output, parents)
    voice = Extractor(weights, variant=v, device=check_device(device), allow_download=download,
                      threads=torch_threads(threads)).extract(str(audio), exaggeration=exaggeration)
    voice.save(output, mkdir=parents)
    typer.echo(f"wrote {v} voice of {clean(audio)} to {clean(output)}", err=True)


def inspect_voice(
    file: Annotated[Path, typer.Argument(help="A voice file: voicebank .safetensors or upstream .pt.",
                                         show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what a voice file holds: metadata, tensor shapes and dtypes."""
    quick_exit_ok()
    _inspect_voice(file, as_json)


def _inspect_voice(file: Path, as_json: bool) -> None:
    with heavy_imports():
        from ..voice.files import voice_file_format
        from ..voice.voice import Voice

    voice = Voice.load(file)
    info: dict[str, Any] = voice.describe()
    info["file"] = str(file)
    info["format"] = voice_file_format(file)
    if as_json:
        typer.echo(json.dumps(info, indent=2))  # JSON escapes control characters itself
        return
    typer.echo(f"{clean(file)}  ({info['format']})")
    for k, val in info["metadata"].items():
        if val:
            typer.echo(f"  {clean(k)}: {clean(val)}")
    for k, t in info["tensors"].items():
        typer.echo(f"  {clean(k):32s} {clean(t['dtype']):8s} {tuple(t['shape'])}")


