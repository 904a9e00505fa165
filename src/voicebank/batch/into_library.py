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

from ..errors import DuplicateAudioError, VoicebankError, VoiceExistsError
from ..options import check_variant
from ..progress import Progress
from .dataset import read_table

if TYPE_CHECKING:
    from ..library import AddResult, Library

_COLUMNS = ["path", "source_sha256", "duration", "sample_rate", "speaker_emb", "xvector", "voice", "mode", "variant",
            "weights_fingerprint", "error_type", "error"]


def dataset_rows(out_dir: str | os.PathLike[str], *, variant: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a dataset folder, a Parquet batch at a time (``variant``: only that variant's)."""
    table = read_table(out_dir, columns=_COLUMNS)
    for batch in table.to_batches():
        for row in batch.to_pylist():
            if variant is None or row["variant"] == variant:
                yield row


def import_rows(library: Library, rows: Iterable[dict[str, Any]], *, where: str = "dataset",
                tags: Iterable[str] = (), consent: str = "", added_by: str | None = None,
                progress: Progress | None = None) -> list[AddResult]:
    """Each row (the dataset's columns) into ``library``: one :class:`~voicebank.library.AddResult` per row,
    ``added``, ``skipped`` (already there, or a row the batch could not compute) or ``failed``, never raising
    for one row."""
    from ..library import AddResult
    from ..voice.voice import Voice

    tags = tuple(tags)
    out: list[AddResult] = []
    for row in rows:
        path = str(row.get("path") or "")
        name = Path(path).stem or "voice"
        try:
            if row.get("error") is not None:
                out.append(AddResult(path, name, "skipped", f"the batch could not compute it: "
                                     f"{row.get('error_type') or 'error'}: {row['error']}"))
            elif row.get("mode") == "conditionals" and row.get("voice") is not None:
                voice = Voice.from_bytes(row["voice"], where=f"{where}: {path}")
                out.append(library.import_voice(voice, name, source=path, tags=tags, consent=consent,
                                                added_by=added_by))
            elif row.get("speaker_emb") is not None and row.get("xvector") is not None:
                out.append(library.import_embedding(
                    name, np.asarray(row["speaker_emb"], dtype=np.float32),
                    np.asarray(row["xvector"], dtype=np.float32), source=path,
                    variant=check_variant(row.get("variant") or "english"),
                    weights_fingerprint=row.get("weights_fingerprint") or "", source_sha256=row.get("source_sha256"),
                    duration=row.get("duration"), sample_rate=row.get("sample_rate"), tags=tags, consent=consent,
                    added_by=added_by))
            else:
                out.append(AddResult(path, name, "failed", "the row holds neither a voice nor embeddings"))
        except (VoiceExistsError, DuplicateAudioError) as e:
            out.append(AddResult(path, name, "skipped", str(e)))
        except VoicebankError as e:
            out.append(AddResult(path, name, "failed", str(e)))
        if progress:
            progress(1)
    return out


def import_dataset(library: Library, out_dir: str | os.PathLike[str], *, variant: str | None = None,
                   tags: Iterable[str] = (), consent: str = "", added_by: str | None = None,
                   progress: Progress | None = None) -> list[AddResult]:
    """Every row of the dataset folder ``out_dir`` into ``library`` (see the module docstring); ``variant``: only
    that variant's rows (a dataset made for several variants holds a row per clip and variant, and the second
    row of a clip is skipped as the same audio)."""
    if variant is not None:
        variant = check_variant(variant)
    library.store.check_writable()  # read-only or locked: say so before reading the dataset
    return import_rows(library, dataset_rows(out_dir, variant=variant), where=str(out_dir), tags=tags,
                       consent=consent, added_by=added_by, progress=progress)


__all__ = ["dataset_rows", "import_dataset", "import_rows"]
