"""Library commands for voices: ``add``, ``list``, ``show``, ``rm``, ``rename``, ``export``, ``import``.

Every command takes ``--library DIR`` (default ``$VOICEBANK_LIBRARY``, else the user data directory) and
``--weights DIR``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..chatterbox import DEFAULT_EXAGGERATION
from ..errors import LibraryError, VoiceNotFoundError
from .common import (
    DeviceOpt,
    DownloadOpt,
    JsonOpt,
    LibraryOpt,
    ParentsOpt,
    ThreadsOpt,
    VariantOpt,
    WeightsOpt,
    cell,
    check_exaggeration_option,
    check_output,
    clean,
    echo_json,
    error_line,
    fmt,
    make_console,
    open_library,
    progress,
    torch_threads,
    variant_option,
)

if TYPE_CHECKING:
    from ..library import AddResult


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
    exaggeration: Annotated[float, typer.Option(
        "--exaggeration", help="Default emotion exaggeration.")] = DEFAULT_EXAGGERATION,
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
                                                      "batch` dataset folder (either mode) instead.",
                                                      show_default=False)] = None,
    duplicate_check: Annotated[bool, typer.Option("--duplicate-check/--no-duplicate-check", help="With "
                                                  "--from-dataset: look for stored voices that sound alike (a pass "
                                                  "over the library per 1,000 rows; leave it out for corpus-scale "
                                                  "imports).")] = True,
    threads: ThreadsOpt = None,
) -> None:
    """Add reference clips as named voices; a summary table at the end, exit 1 if any clip failed."""
    from ..library import STORAGE_MODES, collect_audio

    check_exaggeration_option(exaggeration)
    if from_dataset is not None:
        if audio:
            raise typer.BadParameter("give audio files or --from-dataset, not both")
        from .batch import add_from_dataset

        add_from_dataset(from_dataset, open_library(library, weights, device, download, torch_threads(threads)),
                         variant=variant_option(variant[0]) if variant else None, tags=tag or [], consent=consent,
                         added_by=added_by, as_json=as_json, check_duplicates=duplicate_check)
        return
    if not audio:
        raise typer.BadParameter("give audio files or folders (or --from-dataset DIR)")
    if not duplicate_check:
        raise typer.BadParameter("--no-duplicate-check is for --from-dataset imports")

    if mode not in STORAGE_MODES:
        raise typer.BadParameter(f"--mode {mode}: choose one of {', '.join(STORAGE_MODES)}")
    variants = [variant_option(v) or "english" for v in (variant or ["english"])]
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
    from ..models.torch_runtime import torch_installed

    # each worker runs torch ops: the usable CPUs are shared out between them (unless --threads says how many
    # each uses), instead of oversubscribing the cores.  Without torch (embedding mode), nothing to set.
    per_worker = torch_threads(threads, share=min(workers, len(files)))
    lib = open_library(library, weights, device, download, per_worker)
    torch: Any = None
    if torch_installed():
        import torch
    before = torch.get_num_threads() if torch is not None else 0
    if torch is not None:
        torch.set_num_threads(per_worker)
    try:
        with progress(len(files), "adding") as advance:
            results = lib.add_many([str(f) for f in files], names=[name] if name is not None else None, mode=mode,
                                   variant=variants, exaggeration=exaggeration, tags=tag or (), consent=consent,
                                   added_by=added_by, keep_audio=not no_audio, base=base, force=force,
                                   workers=workers, progress=advance)
    finally:
        if torch is not None:
            torch.set_num_threads(before)
    if as_json:
        echo_json([r.to_dict() for r in results])
    else:
        _summary(results, mode)
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        error_line(r.reason)
    if failed:
        raise LibraryError(_failed_line(results, len(failed)))


def _failed_line(results: list[AddResult], failed: int) -> str:
    """The closing error of an ``add`` where clips failed: what was stored, if anything."""
    added = sum(r.status == "added" for r in results)
    skipped = len(results) - failed - added
    if failed == len(results):
        return f"all {failed} clip(s) failed (listed above); nothing was stored"
    head = f"{failed} of {len(results)} clip(s) failed (listed above)"
    if added == 0:
        return f"{head} and the other {skipped} were already stored (skipped); nothing new was stored"
    if skipped == 0:
        return f"{head}; the others were stored"
    return f"{head}; {added} were stored, {skipped} were already stored (skipped)"


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
        table.add_row(f"[{style}]{r.status}[/{style}]", cell(r.name or r.source), fmt(dur, ".2f", " s"), cell(notes))
    console = make_console()
    console.print(table)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def list_voices(
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only voices with this tag.",
                                            show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Voices per page.", min=1, max=100_000)] = 100,
    after: Annotated[str | None, typer.Option("--after", help="Start after this voice name (the last name of the "
                                              "previous page).", show_default=False)] = None,
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
) -> None:
    """List the voices in the library by name, a page at a time (a table, or JSON with --json)."""
    lib = open_library(library)
    page = lib.list(tag=tag, limit=limit + 1, after=after)  # one more says whether there is a next page
    voices, more = page[:limit], len(page) > limit
    if more:
        error_line(f"more voices follow: voicebank list --after {shlex.quote(voices[-1].name)}"
                   + (f" --limit {limit}" if limit != 100 else ""), kind="note")
    if as_json:
        echo_json([v.to_dict() for v in voices])
        return
    from rich.table import Table

    shown = f"{len(voices)} voice(s)" if not more and after is None else f"{len(voices)} of {len(lib)} voice(s)"
    table = Table(title=shown, title_justify="left")
    for col in ("name", "mode", "variants", "seconds", "Hz", "LUFS", "added"):
        table.add_column(col, no_wrap=True)
    table.add_column("tags", overflow="fold")
    for v in voices:
        name = v.name + (" (experimental)" if v.experimental else "")
        table.add_row(cell(name), v.mode, ",".join(v.variants), fmt(v.duration, ".2f"), fmt(v.sample_rate, "d"),
                      fmt(v.loudness_lufs, ".1f"), cell(v.added_at[:10]), cell(",".join(v.tags)))
    make_console().print(table)


def show(
    name: Annotated[str, typer.Argument(help="Voice name.", show_default=False)],
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Show everything the library keeps about a voice."""
    info = open_library(library).show(name)
    data = info.to_dict()
    if as_json:
        echo_json(data)
        return
    typer.echo(f"{clean(info.name)}  ({info.mode}{', EXPERIMENTAL' if info.experimental else ''})")
    for key in ("variant", "variants", "exaggeration", "source_name", "source_sha256", "duration", "sample_rate",
                "channels", "loudness_lufs", "weights_fingerprint", "base", "origin", "tags", "added_by", "added_at",
                "consent"):
        value = data[key]
        if value in (None, "", [], ()):
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(x) for x in value)
        typer.echo(f"  {key}: {clean(value)}")
    for k, val in info.provenance.items():
        typer.echo(f"  {clean(k)}: {clean(val)}")
    for f in info.files:
        label = f.role + (f" ({f.variant})" if f.variant else "")
        typer.echo(f"  file {label}: {clean(f.path)} ({f.size} bytes)")
    findings = info.inspection.get("findings", [])
    for finding in findings if isinstance(findings, list) else []:
        if isinstance(finding, dict):
            typer.echo(f"  {clean(finding.get('level', ''))}: {clean(finding.get('message', ''))}")


def rm(
    names: Annotated[list[str], typer.Argument(help="Voice names.", show_default=False)],
    library: LibraryOpt = None,
) -> None:
    """Remove voices; their files go when no other voice uses them."""
    lib = open_library(library)
    for n in names:
        if n not in lib:  # every name must exist before anything is removed (a damaged row can still be removed)
            try:
                lib.show(n)
            except VoiceNotFoundError as e:
                raise VoiceNotFoundError(f"{e}; nothing was removed" if len(names) > 1 else str(e)) from e
    for n in names:
        dependents = lib.remove(n)
        typer.echo(f"removed {clean(n)}", err=True)
        for d in dependents:
            typer.echo(clean(f"note: {d!r} used {n!r} as its base voice; pass --base when exporting it"), err=True)


def rename(
    old: Annotated[str, typer.Argument(help="Current name.", show_default=False)],
    new: Annotated[str, typer.Argument(help="New name.", show_default=False)],
    library: LibraryOpt = None,
) -> None:
    """Rename a voice."""
    info = open_library(library).rename(old, new)
    typer.echo(f"renamed {clean(old)} to {clean(info.name)}", err=True)


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
    parents: ParentsOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Write a voice to a file: ready conditionals whatever the storage mode."""
    if output.suffix.lower() not in (".safetensors", ".pt", ".wav", ".npy"):
        raise typer.BadParameter(f"--output {clean(output)}: use a .safetensors, .pt, .wav or .npy file name")
    if exaggeration is not None:
        check_exaggeration_option(exaggeration)
    check_output(output, parents)
    lib = open_library(library, weights, device, download, torch_threads(threads))
    lib.export(name, output, variant=variant_option(variant), exaggeration=exaggeration, base=base, mkdir=parents)
    typer.echo(f"wrote {clean(name)} to {clean(output)}", err=True)


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
) -> None:
    """Add a voice file (conditionals, no audio) to the library."""
    result = open_library(library).import_file(file, name, tags=tag or (), consent=consent, added_by=added_by)
    for w in result.warnings:
        error_line(w, kind="warning")
    typer.echo(f"imported {clean(file)} as {clean(result.name)}", err=True)


