"""Library commands that compare voices: ``compare``, ``search`` and the experimental ``blend``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import typer

from .common import (
    DeviceOpt,
    DownloadOpt,
    JsonOpt,
    LibraryOpt,
    ThreadsOpt,
    WeightsOpt,
    clean,
    echo_json,
    fmt,
    open_library,
    torch_threads,
    variant_option,
)

if TYPE_CHECKING:
    pass


def compare(
    a: Annotated[str, typer.Argument(help="A voice name or an audio file.", show_default=False)],
    b: Annotated[str, typer.Argument(help="A voice name or an audio file.", show_default=False)],
    variant: Annotated[str, typer.Option("--variant", help="Variant whose pipeline embeds audio files.")] = "english",
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Similarity of two voices or clips: the normalised score, with the raw speaker and x-vector cosines."""
    lib = open_library(library, weights, device, download, torch_threads(threads))
    c = lib.compare(a, b, variant=variant_option(variant) or "english")
    if as_json:
        echo_json(c.to_dict())
        return
    verdict = "likely the same speaker" if c.same_speaker else "likely different speakers"
    typer.echo(f"score {fmt(c.score, '.2f')}  speaker cosine {c.speaker_cosine:.4f}  "
               f"x-vector cosine {fmt(c.xvector_cosine, '.4f')}  ({verdict}; threshold {c.threshold:.2f})")


def search(
    queries: Annotated[list[str], typer.Argument(help="Voice names or audio files.", show_default=False)],
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many voices to list per query.")] = 5,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only voices with this tag.",
                                            show_default=False)] = None,
    variant: Annotated[str, typer.Option("--variant", help="Variant whose pipeline embeds an audio file.")] = "english",
    as_json: JsonOpt = False,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """The stored voices most similar to each query, by normalised score (raw speaker cosine beside it)."""
    lib = open_library(library, weights, device, download, torch_threads(threads))
    v = variant_option(variant) or "english"
    results = [(q, lib.search(q, k=k, tag=tag, variant=v)) for q in queries]
    if as_json:
        echo_json([{"query": q, "matches": [m.to_dict() for m in matches]} for q, matches in results])
        return
    for q, matches in results:
        if len(queries) > 1:
            typer.echo(f"{clean(q)}:")
        if not matches:
            typer.echo(f"{clean(q)}: no voices to compare with", err=True)
            continue
        typer.echo(f"{'score':>8}  {'cosine':<7} voice")
        for m in matches:
            typer.echo(f"{m.score:8.2f}  {m.speaker_cosine:.4f}  {clean(m.name)}")


def _parse_mix(text: str, n: int, option: str = "--mix") -> list[float]:
    try:
        values = [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as e:
        raise typer.BadParameter(f"{option} {text}: expected numbers such as 0.7,0.3") from e
    if len(values) != n:
        raise typer.BadParameter(f"{option} {text}: {len(values)} numbers for {n} voices; give one per voice")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise typer.BadParameter(f"{option} {text}: weights must be finite, non-negative and not all zero")
    return values


def blend(
    voices: Annotated[list[str], typer.Argument(help="Two or more voice names.", show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Name of the new voice.", show_default=False)],
    mix: Annotated[str | None, typer.Option("--mix", help="How much of each voice, one number per voice, e.g. "
                                            "0.7,0.3 (default: equal).", show_default=False)] = None,
    base: Annotated[str | None, typer.Option("--base", help="Voice lending its S3Gen reference (default: the "
                                             "heaviest-weighted input).", show_default=False)] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the voice (repeatable).",
                                                  show_default=False)] = None,
    library: LibraryOpt = None,
) -> None:
    """EXPERIMENTAL: a new embedding-only voice, the weighted average of voices' speaker embeddings and x-vectors."""
    if len(voices) < 2:
        raise typer.BadParameter("a blend needs at least two voices")
    w = _parse_mix(mix, len(voices)) if mix is not None else None
    info = open_library(library).blend(voices, w, name=name, base=base, tags=tag or ())
    typer.echo(f"added {clean(info.name)}: EXPERIMENTAL embedding-space blend of {clean(', '.join(voices))}"
               + (f" (S3Gen reference from {clean(info.base)})" if info.base else ""), err=True)


