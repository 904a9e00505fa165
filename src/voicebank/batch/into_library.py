"""A ``voicebank batch`` dataset into a voice library: every successful row becomes a voice, in either mode.

A ``conditionals`` row becomes a ``conditionals`` voice (its ready voice file, validated); an ``embedding`` row an
``embedding`` voice (its speaker embedding and x-vector).  Rows go straight from the Parquet parts to the library,
with no file in between, and each is named after its clip's file stem.  Importing is resumable and exactly
once: a row whose name or source audio is already in the library is skipped, so running it again after an
interruption adds only what is missing.  Rows the batch could not compute (an ``error``) are skipped with
their reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidOptionError, VoicebankError
from ..library.names import check_name, current_user
from ..options import check_variant
from ..progress import Progress
from .dataset import open_parts, stream_batches

if TYPE_CHECKING:
    from ..library import AddResult, Library

_COLUMNS = ["path", "source_sha256", "duration", "sample_rate", "speaker_emb", "xvector", "voice", "mode", "variant",
            "weights_fingerprint", "error_type", "error"]
_VECTORS = ("speaker_emb", "xvector")


CHUNK_ROWS = 1000
"""Rows committed per transaction by :func:`import_rows`."""


def dataset_rows(out_dir: str | os.PathLike[str], *, variant: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a dataset folder, streamed a Parquet batch at a time (``variant``: only that variant's), with the
    vectors as float32 arrays.  Every part file is opened first, so a truncated one is refused before any row is
    read."""
    for batch in stream_batches(open_parts(out_dir), columns=_COLUMNS):
        columns = {name: batch.column(name) for name in _COLUMNS}
        plain = {name: col.to_pylist() for name, col in columns.items() if name not in _VECTORS}
        vectors = {name: _vectors(columns[name]) for name in _VECTORS}
        for i in range(batch.num_rows):
            if variant is None or plain["variant"][i] == variant:
                row = {name: values[i] for name, values in plain.items()}
                for name, (arr, valid) in vectors.items():
                    row[name] = arr[i] if valid[i] else None
                yield row


def _vectors(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size list column as ``(rows (n, dim) float32, valid (n,) bool)``, without a Python list per row."""
    n, dim = len(column), column.type.list_size
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.zeros((n, dim), dtype=np.float32)
    if valid.any():
        flat = column.filter(column.is_valid()).flatten().to_numpy(zero_copy_only=False)
        rows[valid] = np.asarray(flat, dtype=np.float32).reshape(-1, dim)
    return rows, valid


def dataset_fingerprints(out_dir: str | os.PathLike[str], *, variant: str | None = None) -> dict[str, set[str]]:
    """``variant -> weights fingerprints`` of a dataset's computed rows (``variant``: only that variant's); three
    columns read."""
    found: dict[str, set[str]] = {}
    for batch in stream_batches(open_parts(out_dir), columns=["variant", "weights_fingerprint", "error"],
                                batch_size=65_536):
        for v, fp, err in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
            if err is None and fp and (variant is None or v == variant):
                found.setdefault(str(v), set()).add(str(fp))
    return found


def refuse_other_weights(library: Library, out_dir: str | os.PathLike[str], *, variant: str | None = None) -> None:
    """Raise :class:`~voicebank.errors.InvalidOptionError` when rows of a variant were computed with weights that
    none of the library's voices of that variant came from (their embeddings could not be compared): nothing is
    imported."""
    stored = library.store.fingerprints_in_use()
    for v, fps in sorted(dataset_fingerprints(out_dir, variant=variant).items()):
        ours = stored.get(v, set())
        for fp in sorted(fps - ours) if ours else []:
            raise InvalidOptionError(
                f"{out_dir}: its {v} rows were computed with weights {fp[:12]} but the library's {v} voices with "
                f"{', '.join(sorted(f[:12] for f in ours))}; embeddings of different weights cannot be compared. "
                "Import it into a library made with the same weights, or run the batch again with the library's "
                "weights")


def import_rows(library: Library, rows: Iterable[dict[str, Any]], *, where: str = "dataset",
                tags: Iterable[str] = (), consent: str = "", added_by: str | None = None,
                check_duplicates: bool = True, chunk: int = CHUNK_ROWS,
                progress: Progress | None = None) -> list[AddResult]:
    """Each row (the dataset's columns) into ``library``, ``chunk`` rows per transaction: one
    :class:`~voicebank.library.AddResult` per row, ``added``, ``skipped`` (already there, a row repeated in the
    dataset, or a row the batch could not compute) or ``failed``, never raising for one row.  An interrupted
    import keeps every chunk committed so far; running it again skips them.  ``check_duplicates=False``: no
    look-alike search (see :meth:`Library.commit_many <voicebank.Library.commit_many>`)."""
    tags = tuple(tags)
    user = current_user() if added_by is None else added_by
    out: list[AddResult] = []
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            out.extend(_import_chunk(library, batch, where, tags, consent, user, check_duplicates))
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        out.extend(_import_chunk(library, batch, where, tags, consent, user, check_duplicates))
        if progress:
            progress(len(batch))
    return out


def _import_chunk(library: Library, rows: list[dict[str, Any]], where: str, tags: tuple[str, ...], consent: str,
                  added_by: str, check_duplicates: bool) -> list[AddResult]:
    from ..library import AddResult
    from ..library.bulk import Pending, commit_many
    from ..library.imports import embedding_record, voice_record

    paths = [str(row.get("path") or "") for row in rows]
    names = [Path(p).stem or "voice" for p in paths]
    taken_names, taken_audio = library.store.taken(names, [r["source_sha256"] for r in rows if r.get("source_sha256")])
    results: list[AddResult | None] = [None] * len(rows)
    pending: list[tuple[int, Pending]] = []
    for i, (row, path, name) in enumerate(zip(rows, paths, names, strict=True)):
        try:
            if row.get("error") is not None:
                results[i] = AddResult(path, name, "skipped", f"the batch could not compute it: "
                                       f"{row.get('error_type') or 'error'}: {row['error']}")
            elif row.get("source_sha256") in taken_audio:
                results[i] = AddResult(path, name, "skipped", f"{path}: the same audio is already in the library")
            elif name in taken_names:
                results[i] = AddResult(path, name, "skipped", f"{path}: a voice named {name!r} is already in the "
                                       "library")
            elif row.get("mode") == "conditionals" and row.get("voice") is not None:
                from ..voice.voice import Voice  # torch: only for datasets of conditionals

                voice = Voice.from_bytes(row["voice"], where=f"{where}: {path}").check(path)
                pending.append((i, voice_record(voice, check_name(name), label=path,
                                                provenance={"imported_from": path}, tags=tags, consent=consent,
                                                added_by=added_by)))
            elif row.get("speaker_emb") is not None and row.get("xvector") is not None:
                pending.append((i, embedding_record(
                    check_name(name), np.asarray(row["speaker_emb"], dtype=np.float32),
                    np.asarray(row["xvector"], dtype=np.float32), label=path,
                    variant=row.get("variant") or "english", weights_fingerprint=row.get("weights_fingerprint") or "",
                    source_sha256=row.get("source_sha256"), duration=row.get("duration"),
                    sample_rate=row.get("sample_rate"), provenance={"imported_from": path}, tags=tags,
                    consent=consent, added_by=added_by)))
            else:
                results[i] = AddResult(path, name, "failed", "the row holds neither a voice nor embeddings")
        except VoicebankError as e:
            results[i] = AddResult(path, name, "failed", str(e))
    committed = commit_many(library.store, library.scoring, library.engine, [p for _, p in pending],
                            threshold=library.duplicate_threshold, check_duplicates=check_duplicates,
                            details=False)
    for (i, _), result in zip(pending, committed, strict=True):
        results[i] = result
    return [r for r in results if r is not None]


def import_dataset(library: Library, out_dir: str | os.PathLike[str], *, variant: str | None = None,
                   tags: Iterable[str] = (), consent: str = "", added_by: str | None = None,
                   check_duplicates: bool = True, progress: Progress | None = None) -> list[AddResult]:
    """Every row of the dataset folder ``out_dir`` into ``library`` (see the module docstring); ``variant``: only
    that variant's rows (a dataset made for several variants holds a row per clip and variant, and the second
    row of a clip is skipped as the same audio).  Refused before anything is imported when a part file is
    unreadable or the rows come from weights none of the library's voices came from."""
    if variant is not None:
        variant = check_variant(variant)
    library.store.check_writable()  # read-only or locked: say so before reading the dataset
    refuse_other_weights(library, out_dir, variant=variant)
    return import_rows(library, dataset_rows(out_dir, variant=variant), where=str(out_dir), tags=tags,
                       consent=consent, added_by=added_by, check_duplicates=check_duplicates, progress=progress)


__all__ = ["CHUNK_ROWS", "dataset_fingerprints", "dataset_rows", "import_dataset", "import_rows",
           "refuse_other_weights"]
