"""The voice-library commands of the ``voicebank`` CLI.

``register(app)`` adds ``add``, ``list``, ``show``, ``rm``, ``rename``, ``export``, ``import``, ``compare``,
``search``, ``blend`` and the ``library`` group (``check``, ``stale``, ``reextract``, ``inspect``, ``path``).
Every command takes ``--library DIR`` (default ``$VOICEBANK_LIBRARY``, else the user data directory) and
``--weights DIR``.  Errors are :class:`~voicebank.errors.VoicebankError` s, which ``voicebank.cli.main``
turns into exit code 1 and one line on stderr.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .cli_common import DeviceOpt, DownloadOpt, JsonOpt, WeightsOpt, check_device, progress
from .errors import LibraryError, ReferenceRejectedError

if TYPE_CHECKING:
    from .library import AddResult, Library

LibraryOpt = Annotated[Path | None, typer.Option(
    "--library", "-L", help="Library directory (default: $VOICEBANK_LIBRARY, else the user data directory).",
    show_default=False)]
VariantOpt = Annotated[str | None, typer.Option("--variant", help="Chatterbox variant: english, multilingual, turbo, "
                                                "vc (default: the voice's own).", show_default=False)]

library_app = typer.Typer(name="library", help="Maintain the voice library: check, stale, reextract, inspect, path.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the library commands to ``app`` (idempotent: a second call does nothing)."""
    if any(c.name == "add" for c in app.registered_commands):
        return
    app.command("add")(add)
    app.command("list")(list_voices)
    app.command("show")(show)
    app.command("rm")(rm)
    app.command("rename")(rename)
    app.command("export")(export)
    app.command("import")(import_voice)
    app.command("compare")(compare)
    app.command("search")(search)
    app.command("blend")(blend)
    app.add_typer(library_app, name="library")


# --- helpers -------------------------------------------------------------------------------------------


def _open(library: Path | None, weights: Path | None = None, device: str = "cpu", download: bool = False) -> Library:
    from .library import Library

    if device != "cpu":
        device = check_device(device)
    return Library(library, weights=weights, device=device, allow_download=download)


def _variant(variant: str | None) -> str | None:
    from .weights import check_variant

    if variant is None:
        return None
    try:
        return check_variant(variant)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: no terminal width to fit, do not wrap at 80 columns
        console.width = 200
    return console


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:{spec}}{unit}"


def report_path(library: Path | None) -> Path:
    from .library import resolve_library_path

    return resolve_library_path(library)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# --- commands ------------------------------------------------------------------------------------------


def add(
    audio: Annotated[list[Path] | None, typer.Argument(help="Audio files, or directories (searched recursively).",
                                                       show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Voice name (one clip only; default: the file "
                                             "stem).", show_default=False)] = None,
    mode: Annotated[str, typer.Option("--mode", "-m", help="Storage mode: audio (the decoded clip), conditionals "
                                      "(the voice file, plus the audio), embedding (speaker embedding only)."
                                      )] = "audio",
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Chatterbox variant(s) to extract for "
                                                      "(repeatable; default english).", show_default=False)] = None,
    exaggeration: Annotated[float, typer.Option("--exaggeration", help="Default emotion exaggeration.")] = 0.5,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the voice (repeatable).",
                                                  show_default=False)] = None,
    consent: Annotated[str, typer.Option("--consent", help="Consent note kept with the voice.")] = "",
    added_by: Annotated[str | None, typer.Option("--by", help="Who adds it (default: the user name).",
                                                 show_default=False)] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Mode conditionals: do not keep the audio (the voice "
                                           "cannot be re-extracted later).")] = False,
    base: Annotated[str | None, typer.Option("--base", help="Mode embedding: the voice that lends its S3Gen "
                                             "reference when conditionals are needed.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Add poor references anyway (overrides warnings, never "
                                        "errors).")] = False,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Parallel workers.")] = 2,
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
    from_dataset: Annotated[Path | None, typer.Option("--from-dataset", help="Import the voices of a `voicebank "
                                                      "batch --mode conditionals` dataset folder instead.",
                                                      show_default=False)] = None,
) -> None:
    """Add reference clips as named voices; a summary table at the end, exit 1 if any clip failed."""
    from .library import MODES, collect_audio

    if from_dataset is not None:
        if audio:
            raise typer.BadParameter("give audio files or --from-dataset, not both")
        from .cli_batch import add_from_dataset

        add_from_dataset(from_dataset, library=library, weights=weights, variant=_variant(variant[0]) if variant
                         else None, tags=tag or [], consent=consent, added_by=added_by, as_json=as_json)
        return
    if not audio:
        raise typer.BadParameter("give audio files or folders (or --from-dataset DIR)")

    if mode not in MODES:
        raise typer.BadParameter(f"--mode {mode}: choose one of {', '.join(MODES)}")
    variants = [_variant(v) or "english" for v in (variant or ["english"])]
    if no_audio and mode != "conditionals":
        raise typer.BadParameter("--no-audio is for --mode conditionals (audio mode keeps the audio by definition; "
                                 "embedding mode keeps none)")
    if base is not None and mode != "embedding":
        raise typer.BadParameter("--base is for --mode embedding")
    files = collect_audio(audio)
    if not files:
        raise typer.BadParameter(f"no audio files in {', '.join(str(a) for a in audio)}")
    if name is not None and len(files) != 1:
        raise typer.BadParameter(f"--name names one clip, but {len(files)} were given; drop --name to use file stems")
    import torch

    lib = _open(library, weights, device, download)
    # each worker runs torch ops: share the intra-op threads between them instead of oversubscribing the cores
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // min(workers, len(files))))
    try:
        with progress(len(files), "adding") as advance:
            results = lib.add_many([str(f) for f in files], names=[name] if name is not None else None, mode=mode,
                                   variant=variants, exaggeration=exaggeration, tags=tag or (), consent=consent,
                                   added_by=added_by, keep_audio=not no_audio, base=base, force=force,
                                   workers=workers, progress=advance)
    finally:
        torch.set_num_threads(threads)
    if as_json:
        _echo_json([r.to_dict() for r in results])
    else:
        _summary(results, mode)
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        typer.echo(f"voicebank: error: {r.reason}", err=True)
    if failed:
        raise LibraryError(f"{len(failed)} of {len(results)} clip(s) failed (listed above); the others were stored")


def _summary(results: list[AddResult], mode: str) -> None:
    from rich.table import Table

    table = Table(title=f"voicebank add ({mode})", title_justify="left")
    for col in ("status", "name", "duration"):
        table.add_column(col, no_wrap=True)
    table.add_column("notes", overflow="fold")
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        dur = r.voice.duration if r.voice is not None else None
        notes = r.reason if r.status != "added" else "; ".join(r.warnings)
        style = {"added": "green", "skipped": "yellow", "failed": "red"}[r.status]
        table.add_row(f"[{style}]{r.status}[/{style}]", r.name or r.source, _fmt(dur, ".2f", " s"), notes)
    console = _console()
    console.print(table)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def list_voices(
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only voices with this tag.",
                                            show_default=False)] = None,
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """List the voices in the library (a table, or JSON with --json)."""
    voices = _open(library, weights).list(tag=tag)
    if as_json:
        _echo_json([v.to_dict() for v in voices])
        return
    from rich.table import Table

    table = Table(title=f"{len(voices)} voice(s)", title_justify="left")
    for col in ("name", "mode", "variants", "seconds", "Hz", "LUFS", "added"):
        table.add_column(col, no_wrap=True)
    table.add_column("tags", overflow="fold")
    for v in voices:
        name = v.name + (" (experimental)" if v.experimental else "")
        table.add_row(name, v.mode, ",".join(v.variants), _fmt(v.duration, ".2f"), _fmt(v.sample_rate, "d"),
                      _fmt(v.loudness_lufs, ".1f"), v.added_at[:10], ",".join(v.tags))
    _console().print(table)


def show(
    name: Annotated[str, typer.Argument(help="Voice name.", show_default=False)],
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Show everything the library keeps about a voice."""
    info = _open(library, weights).show(name)
    data = info.to_dict()
    if as_json:
        _echo_json(data)
        return
    typer.echo(f"{info.name}  ({info.mode}{', EXPERIMENTAL' if info.experimental else ''})")
    for key in ("variant", "variants", "exaggeration", "source_name", "source_sha256", "duration", "sample_rate",
                "channels", "loudness_lufs", "weights_fingerprint", "base", "origin", "tags", "added_by", "added_at",
                "consent"):
        value = data[key]
        if value in (None, "", [], ()):
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(x) for x in value)
        typer.echo(f"  {key}: {value}")
    for k, val in info.provenance.items():
        typer.echo(f"  {k}: {val}")
    for f in info.files:
        label = f.role + (f" ({f.variant})" if f.variant else "")
        typer.echo(f"  file {label}: {f.path} ({f.size} bytes)")
    for finding in info.inspection.get("findings", []):
        typer.echo(f"  {finding['level']}: {finding['message']}")


def rm(
    names: Annotated[list[str], typer.Argument(help="Voice names.", show_default=False)],
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Remove voices; their files go when no other voice uses them."""
    lib = _open(library, weights)
    for n in names:
        lib.show(n)  # every name must exist before anything is removed
    for n in names:
        dependents = lib.remove(n)
        typer.echo(f"removed {n}", err=True)
        for d in dependents:
            typer.echo(f"note: {d!r} used {n!r} as its base voice; pass --base when exporting it", err=True)


def rename(
    old: Annotated[str, typer.Argument(help="Current name.", show_default=False)],
    new: Annotated[str, typer.Argument(help="New name.", show_default=False)],
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Rename a voice."""
    _open(library, weights).rename(old, new)
    typer.echo(f"renamed {old} to {new}", err=True)


def export(
    name: Annotated[str, typer.Argument(help="Voice name.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="FILE.safetensors (voicebank voice, ready "
                                         "conditionals), FILE.pt (upstream format), FILE.wav (kept audio) or "
                                         "FILE.npy (speaker embedding).", show_default=False)],
    variant: VariantOpt = None,
    exaggeration: Annotated[float | None, typer.Option("--exaggeration", help="Emotion exaggeration (default: the "
                                                       "voice's).", show_default=False)] = None,
    base: Annotated[str | None, typer.Option("--base", help="Embedding-only voices: the voice lending its S3Gen "
                                             "reference (default: the one set when adding).",
                                             show_default=False)] = None,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
) -> None:
    """Write a voice to a file: ready conditionals whatever the storage mode."""
    if output.suffix.lower() not in (".safetensors", ".pt", ".wav", ".npy"):
        raise typer.BadParameter(f"--output {output}: use a .safetensors, .pt, .wav or .npy file name")
    lib = _open(library, weights, device, download)
    lib.export(name, output, variant=_variant(variant), exaggeration=exaggeration, base=base)
    typer.echo(f"wrote {name} to {output}", err=True)


def import_voice(
    file: Annotated[Path, typer.Argument(help="A voice file: voicebank .safetensors or upstream .pt.",
                                         show_default=False)],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Voice name (default: the file stem).",
                                             show_default=False)] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the voice (repeatable).",
                                                  show_default=False)] = None,
    consent: Annotated[str, typer.Option("--consent", help="Consent note kept with the voice.")] = "",
    added_by: Annotated[str | None, typer.Option("--by", help="Who adds it (default: the user name).",
                                                 show_default=False)] = None,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Add a voice file (conditionals, no audio) to the library."""
    result = _open(library, weights).import_file(file, name, tags=tag or (), consent=consent, added_by=added_by)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"imported {file} as {result.name}", err=True)


def compare(
    a: Annotated[str, typer.Argument(help="A voice name or an audio file.", show_default=False)],
    b: Annotated[str, typer.Argument(help="A voice name or an audio file.", show_default=False)],
    variant: Annotated[str, typer.Option("--variant", help="Variant whose pipeline embeds audio files.")] = "english",
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
) -> None:
    """Cosine similarity of two voices or clips (speaker embeddings, and CAM++ x-vectors)."""
    c = _open(library, weights, device, download).compare(a, b, variant=_variant(variant) or "english")
    if as_json:
        _echo_json({"a": c.a, "b": c.b, "speaker_cosine": c.speaker_cosine, "xvector_cosine": c.xvector_cosine,
                    "threshold": c.threshold, "same_speaker": c.same_speaker})
        return
    verdict = "likely the same speaker" if c.same_speaker else "likely different speakers"
    typer.echo(f"speaker cosine {c.speaker_cosine:.4f}  x-vector cosine {_fmt(c.xvector_cosine, '.4f')}  "
               f"({verdict}; threshold {c.threshold:.2f})")


def search(
    query: Annotated[str, typer.Argument(help="A voice name or an audio file.", show_default=False)],
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many voices to list.")] = 5,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only voices with this tag.",
                                            show_default=False)] = None,
    variant: Annotated[str, typer.Option("--variant", help="Variant whose pipeline embeds an audio file.")] = "english",
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
) -> None:
    """The stored voices nearest to a voice or a clip, by speaker-embedding cosine."""
    matches = _open(library, weights, device, download).search(query, k=k, tag=tag,
                                                               variant=_variant(variant) or "english")
    if as_json:
        _echo_json([{"name": m.name, "score": m.score, "xvector_score": m.xvector_score} for m in matches])
        return
    if not matches:
        typer.echo("no voices to compare with", err=True)
    for m in matches:
        typer.echo(f"{m.score:.4f}  {m.name}")


def _parse_mix(text: str, n: int) -> list[float]:
    try:
        values = [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as e:
        raise typer.BadParameter(f"--weights {text}: expected numbers such as 0.7,0.3") from e
    if len(values) != n:
        raise typer.BadParameter(f"--weights {text}: {len(values)} numbers for {n} voices; give one per voice")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise typer.BadParameter(f"--weights {text}: weights must be non-negative and not all zero")
    return values


def blend(
    voices: Annotated[list[str], typer.Argument(help="Two or more voice names.", show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Name of the new voice.", show_default=False)],
    mix: Annotated[str | None, typer.Option("--weights", "--mix", help="Blend weights, one per voice, e.g. 0.7,0.3 "
                                            "(default: equal).", show_default=False)] = None,
    base: Annotated[str | None, typer.Option("--base", help="Voice lending its S3Gen reference (default: the "
                                             "heaviest-weighted input).", show_default=False)] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the voice (repeatable).",
                                                  show_default=False)] = None,
    library: LibraryOpt = None,
    model_weights: Annotated[Path | None, typer.Option(
        "--model-weights", help="Directory with the Chatterbox checkpoints (here --weights is the blend mix).",
        show_default=False)] = None,
) -> None:
    """EXPERIMENTAL: a new embedding-only voice, the weighted average of voices' speaker embeddings and x-vectors."""
    if len(voices) < 2:
        raise typer.BadParameter("a blend needs at least two voices")
    w = _parse_mix(mix, len(voices)) if mix is not None else None
    info = _open(library, model_weights).blend(voices, w, name=name, base=base, tags=tag or ())
    typer.echo(f"added {info.name}: EXPERIMENTAL embedding-space blend of {', '.join(voices)}"
               + (f" (S3Gen reference from {info.base})" if info.base else ""), err=True)


# --- library group -------------------------------------------------------------------------------------


@library_app.command("check")
def check(
    repair: Annotated[bool, typer.Option("--repair", help="Drop damaged caches, re-extract damaged voice files from "
                                         "kept audio.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Check that files exist, without hashing them.")] = False,
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Verify every file's hash and the catalogue; clean what a crash left; exit 1 if problems remain."""
    report = _open(library, weights).check(repair=repair, verify_hashes=not quick)
    if as_json:
        _echo_json(report.to_dict())
    else:
        typer.echo(f"{report.voices} voice(s), {report.files_checked} file(s) checked")
        for p in report.removed_temp_files:
            typer.echo(f"removed temp file {p}")
        for p in report.removed_orphans:
            typer.echo(f"removed unreferenced file {p}")
        for prob in report.problems:
            state = "repaired" if prob.repaired else "PROBLEM"
            typer.echo(f"{state}: {prob.voice or '(library)'}: {prob.problem}; {prob.fix}")
        typer.echo("library is consistent" if report.ok else "library has problems")
    if not report.ok:
        n = sum(1 for p in report.problems if not p.repaired)
        raise LibraryError(f"the library at {report_path(library)} has {n} problem(s) (listed above)")


@library_app.command("stale")
def stale(
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    download: DownloadOpt = False,
) -> None:
    """List voices extracted with other weights than the ones found now."""
    entries = _open(library, weights, download=download).stale()
    if as_json:
        _echo_json([e.__dict__ for e in entries])
        return
    if not entries:
        typer.echo("no stale voices", err=True)
    for e in entries:
        typer.echo(f"{e.name}  {e.variant}  {e.what}  {e.stored} -> {e.current}")


@library_app.command("reextract")
def reextract(
    names: Annotated[list[str] | None, typer.Argument(help="Voice names (default: every stale voice).",
                                                      show_default=False)] = None,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
) -> None:
    """Re-extract voices in place from their kept audio with the weights found now."""

    lib = _open(library, weights, device, download)
    targets = names or sorted({s.name for s in lib.stale()})
    with progress(len(targets), "re-extracting") as advance:
        results = lib.reextract(targets, progress=advance)
    failed = 0
    for r in results:
        if r.status == "failed":
            failed += 1
            typer.echo(f"voicebank: error: {r.reason}", err=True)
        else:
            typer.echo(f"{r.status}: {r.name}")
    if not results:
        typer.echo("nothing to re-extract", err=True)
    if failed:
        raise LibraryError(f"{failed} of {len(results)} voice(s) could not be re-extracted (listed above)")


@library_app.command("inspect")
def inspect_audio(
    audio: Annotated[list[Path], typer.Argument(help="Audio files.", show_default=False)],
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Variant(s) the clip is meant for.",
                                                      show_default=False)] = None,
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Inspect reference clips as `add` does (duration, level, clipping, loudness, silence, SNR); exit 1 if any is
    unusable.  Needs neither the library nor weights (the options are accepted for uniformity)."""
    from .library import inspect_reference

    variants = [_variant(v) or "english" for v in (variant or ["english"])]
    reports = [inspect_reference(str(a), variants=variants) for a in audio]
    if as_json:
        _echo_json([r.to_dict() for r in reports])
    else:
        for r in reports:
            typer.echo(f"{r.source}: {r.duration:.2f} s, {r.sample_rate} Hz, {r.channels} ch, peak "
                       f"{_fmt(r.peak_dbfs, '.1f', ' dBFS')}, clipped {r.clipped_fraction:.2%}, loudness "
                       f"{_fmt(r.loudness_lufs, '.1f', ' LUFS')}, silence {r.leading_silence:.2f} s / "
                       f"{r.trailing_silence:.2f} s, SNR {_fmt(r.snr_db, '.1f', ' dB')}")
            for f in r.findings:
                typer.echo(f"  {f.level}: {f.message}")
            if not r.findings:
                typer.echo("  good reference")
    bad = [r.source for r in reports if r.errors]
    if bad:
        raise ReferenceRejectedError(f"unusable reference(s): {', '.join(bad)}", source=bad[0])


@library_app.command("path")
def path(library: LibraryOpt = None, weights: WeightsOpt = None) -> None:
    """Print the library directory in use (``--weights`` is accepted for uniformity and not used)."""
    from .library import resolve_library_path

    typer.echo(str(resolve_library_path(library)))
