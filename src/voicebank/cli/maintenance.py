"""The ``library`` command group (``check``, ``stale``, ``reextract``, ``copy``, ``path``) and ``inspect-audio``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import LibraryError, ReferenceRejectedError
from .common import (
    DeviceOpt,
    DownloadOpt,
    JsonOpt,
    LibraryOpt,
    ThreadsOpt,
    WeightsOpt,
    clean,
    echo_json,
    error_line,
    fmt,
    open_library,
    progress,
    report_path,
    torch_threads,
    variant_option,
)

if TYPE_CHECKING:
    pass

library_app = typer.Typer(name="library", help="Maintain the voice library: check, stale, reextract, copy, path.",
                          no_args_is_help=True)

# --- library group -------------------------------------------------------------------------------------


@library_app.command("check")
def check(
    repair: Annotated[bool, typer.Option("--repair", help="Drop damaged caches, re-extract damaged voice files from "
                                         "kept audio.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Check that files exist, without hashing them.")] = False,
    delete_orphans: Annotated[bool, typer.Option("--delete-orphans", help="Delete content files no voice references "
                                                 "(never done otherwise; refused while the catalogue is "
                                                 "damaged).")] = False,
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Verify every file's hash and the catalogue; clean what a crash left; exit 1 if problems remain."""
    from ..errors import CatalogueDamagedError

    try:
        lib = open_library(library, weights)
        report = lib.check(repair=repair, verify_hashes=not quick, delete_orphans=delete_orphans)
    except CatalogueDamagedError as e:
        if not repair:
            raise CatalogueDamagedError(str(e).split("; run voicebank library check")[0] + "; nothing was deleted: "
                                        "voicebank library check --repair sets it aside and rebuilds it from the "
                                        "voice and audio files") from e
        _rebuild(library, as_json)
        return
    if repair and any(not p.voice and "is damaged" in p.problem for p in report.problems):
        lib.close()
        _rebuild(library, as_json)
        return
    if as_json:
        echo_json(report.to_dict())
    else:
        typer.echo(f"{report.voices} voice(s), {report.files_checked} file(s) checked")
        for p in report.removed_temp_files:
            typer.echo(f"removed temp file {clean(p)}")
        for p in report.removed_orphans:
            typer.echo(f"removed unreferenced file {clean(p)}")
        for p in report.unreferenced:
            typer.echo(f"unreferenced file kept: {clean(p)} (--delete-orphans deletes it)")
        for prob in report.problems:
            state = "repaired" if prob.repaired else "PROBLEM"
            typer.echo(clean(f"{state}: {prob.voice or '(library)'}: {prob.problem}; {prob.fix}"))
        typer.echo("library is consistent" if report.ok else "library has problems")
    if not report.ok:
        n = sum(1 for p in report.problems if not p.repaired)
        raise LibraryError(f"the library at {report_path(library)} has {n} problem(s) (listed above)")


def _rebuild(library: str | Path | None, as_json: bool) -> None:
    from ..errors import CatalogueDamagedError
    from ..library.recover import rebuild
    from ..settings import Settings
    from ..store.shared import is_shared

    if is_shared(library if library is not None else Settings.from_env().library_url):
        raise CatalogueDamagedError("a shared library's catalogue is not rebuilt from its objects: restore the "
                                    "database from a backup (nothing was deleted)")

    result = rebuild(report_path(library))
    if as_json:
        echo_json(result.to_dict())
    else:
        typer.echo(f"the damaged catalogue was set aside as {clean(result.set_aside or '(none)')}; a new one was "
                   f"built from the content files")
        for name, mode in result.recovered:
            typer.echo(f"recovered: {clean(name)} ({mode})")
        for file, why in result.skipped:
            typer.echo(clean(f"left out: {file}: {why}"))
        typer.echo("audio voices need their embeddings again: voicebank library reextract NAME...")
    if result.skipped and not result.recovered:
        raise LibraryError(f"nothing could be recovered from the content files of {report_path(library)}")


@library_app.command("stale")
def stale(
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    download: DownloadOpt = False,
) -> None:
    """List voices extracted with other weights than the ones found now."""
    entries = open_library(library, weights, download=download).stale()
    if as_json:
        echo_json([e.__dict__ for e in entries])
        return
    if not entries:
        typer.echo("no stale voices", err=True)
    for e in entries:
        typer.echo(clean(f"{e.name}  {e.variant}  {e.what}  {e.stored} -> {e.current}"))


@library_app.command("reextract")
def reextract(
    names: Annotated[list[str] | None, typer.Argument(help="Voice names (default: every stale voice).",
                                                      show_default=False)] = None,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Re-extract voices in place from their kept audio with the weights found now."""

    lib = open_library(library, weights, device, download, torch_threads(threads))
    targets = names or sorted({s.name for s in lib.stale()})
    with progress(len(targets), "re-extracting") as advance:
        results = lib.reextract(targets, progress=advance)
    failed = 0
    for r in results:
        if r.status == "failed":
            failed += 1
            error_line(r.reason)
        else:
            typer.echo(f"{r.status}: {clean(r.name)}")
    if not results:
        typer.echo("nothing to re-extract", err=True)
    if failed:
        raise LibraryError(f"{failed} of {len(results)} voice(s) could not be re-extracted (listed above)")


AudioFilesArg = Annotated[list[Path], typer.Argument(help="Audio files.", show_default=False)]
ClipVariantsOpt = Annotated[list[str] | None, typer.Option("--variant", help="Variant(s) the clip is meant for.",
                                                           show_default=False)]


def inspect_audio(
    audio: AudioFilesArg,
    variant: ClipVariantsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Inspect reference clips as `add` does (duration, level, clipping, loudness, silence, SNR); exit 1 if any is
    unusable.  Needs neither a library nor weights."""
    from ..library import inspect_reference

    variants = [variant_option(v) or "english" for v in (variant or ["english"])]
    reports = [inspect_reference(str(a), variants=variants) for a in audio]
    if as_json:
        echo_json([r.to_dict() for r in reports])
    else:
        for r in reports:
            typer.echo(f"{clean(r.source)}: {r.duration:.2f} s, {r.sample_rate} Hz, {r.channels} ch, peak "
                       f"{fmt(r.peak_dbfs, '.1f', ' dBFS')}, clipped {r.clipped_fraction:.2%}, loudness "
                       f"{fmt(r.loudness_lufs, '.1f', ' LUFS')}, silence {r.leading_silence:.2f} s / "
                       f"{r.trailing_silence:.2f} s, SNR {fmt(r.snr_db, '.1f', ' dB')}")
            for f in r.findings:
                typer.echo(f"  {f.level}: {clean(f.message)}")
            if not r.findings:
                typer.echo("  good reference")
    bad = [r.source for r in reports if r.errors]
    if bad:
        raise ReferenceRejectedError(f"unusable reference(s): {', '.join(bad)}", source=bad[0])


@library_app.command("path")
def path(library: LibraryOpt = None) -> None:
    """Print the library directory in use."""
    from ..library import resolve_library_path

    typer.echo(str(resolve_library_path(library)))


@library_app.command("copy")
def copy(
    source: Annotated[str, typer.Argument(help="The library to copy: a directory, or a shared library's "
                                          "postgresql://... URL.", show_default=False)],
    destination: Annotated[str, typer.Argument(help="Where to copy it: a directory (created when missing), or a "
                                               "shared library's postgresql://... URL.", show_default=False)],
    source_blobs: Annotated[str | None, typer.Option(
        "--source-blobs", show_default=False, help="The source's content files when it is a shared library: "
        "s3://bucket/prefix (default: --blobs, else $VOICEBANK_BLOBS).")] = None,
    dest_blobs: Annotated[str | None, typer.Option(
        "--dest-blobs", show_default=False, help="The destination's content files when it is a shared library "
        "(default: --blobs, else $VOICEBANK_BLOBS).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, show_default=False,
                                              help="Copy at most this many voices (run again to go on).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy every voice to another library, between any two backends; resumable (voices already there with the
    same content are skipped), then verified (same voices and file hashes) and checked on both sides."""
    from ..library import Library
    from ..library.copying import copy_library
    from ..settings import Settings
    from ..store.shared import is_shared
    from .common import BLOBS

    def location(where: str, blobs: str | None, role: str) -> tuple[str, str | None]:
        if is_shared(where):
            return where, blobs or BLOBS[0] or Settings.from_env().blobs
        path = Path(where).expanduser()
        if role == "source" and not (path / "catalogue.sqlite3").is_file():
            raise LibraryError(f"{where}: no library there (no catalogue.sqlite3); pass a library directory or a "
                               "postgresql://... URL")
        if blobs:
            raise LibraryError(f"--{role}-blobs applies to a shared library (postgresql://...), not {where}")
        return str(path.resolve()), None

    src_at = location(source, source_blobs, "source")
    dst_at = location(destination, dest_blobs, "dest")
    if src_at == dst_at:
        raise LibraryError(f"{source} and {destination} are the same library: nothing to copy")
    with Library(src_at[0], blobs=src_at[1]) as src, Library(dst_at[0], blobs=dst_at[1]) as dst:
        report = copy_library(src.store, dst.store, limit=limit)
        checks = {} if report.left else {side: lib.check() for side, lib in (("source", src), ("destination", dst))}
    problems = {side: [f"{p.voice or '(library)'}: {p.problem}" for p in c.problems if not p.repaired]
                for side, c in checks.items()}
    if as_json:
        echo_json({**report.to_dict(), "check": problems})
    else:
        for name, why in report.conflicts.items():
            typer.echo(clean(f"conflict: {name}: {why}"))
        for name, why in (report.mismatches or {}).items():
            typer.echo(clean(f"MISMATCH: {name}: {why}"))
        for side, found in problems.items():
            for p in found:
                typer.echo(clean(f"PROBLEM in the {side}: {p}"))
        typer.echo(f"copied {len(report.copied)} voice(s) ({report.caches} cached file(s)), skipped "
                   f"{len(report.skipped)} already there, {len(report.conflicts)} conflict(s)"
                   + (f"; {report.left} left: run the same command again to go on" if report.left else
                      "; verified: the destination has every voice with the same file hashes" if report.ok else ""))
    if report.left:
        return
    bad = len(report.conflicts) + len(report.mismatches or {}) + sum(len(p) for p in problems.values())
    if bad:
        raise LibraryError(f"the copy of {source} to {destination} is incomplete: {bad} problem(s) (listed above)")
