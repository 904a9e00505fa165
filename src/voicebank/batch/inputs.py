"""What a batch job reads: folders, globs and manifests (txt, csv, parquet) expanded into audio paths."""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable
from pathlib import Path

from .dataset import BatchError, require_pyarrow

MANIFEST_SUFFIXES = (".txt", ".csv", ".parquet")
"""A file with one of these suffixes is a list of audio paths, not audio."""


def audio_extensions() -> set[str]:
    """File suffixes (lower case, with the dot) taken as audio when a folder is searched."""
    import soundfile as sf

    exts = {f".{k.lower()}" for k in sf.available_formats()}
    return exts | {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}


def _folder(path: Path, exts: set[str]) -> list[str]:
    return sorted(str(f) for f in path.rglob("*")
                  if f.suffix.lower() in exts and not f.name.startswith(".") and f.is_file())


def _manifest(path: Path) -> list[str]:
    """Paths listed in a manifest; relative ones are relative to the manifest's folder."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            entries = [line.strip() for line in path.read_text().splitlines()]
            entries = [e for e in entries if e and not e.startswith("#")]
        elif suffix == ".csv":
            with path.open(newline="") as f:
                rows = list(csv.reader(f))
            if not rows:
                return []
            header = [h.strip().lower() for h in rows[0]]
            if "path" in header:
                col = header.index("path")
                entries = [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]
            else:  # no header: the first column holds the paths
                entries = [r[0].strip() for r in rows if r and r[0].strip()]
        else:
            require_pyarrow()
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            if "path" not in table.column_names:
                raise BatchError(f"{path}: a Parquet manifest needs a 'path' column; it has "
                                 f"{', '.join(table.column_names)}")
            entries = [str(p) for p in table.column("path").to_pylist() if p]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BatchError(f"{path}: cannot read the manifest ({e})") from e
    except Exception as e:
        if type(e).__module__.startswith("pyarrow"):
            raise BatchError(f"{path}: not a readable Parquet manifest ({e})") from e
        raise
    return [os.path.join(path.parent, e) if not os.path.isabs(e) else e for e in entries]


def resolve_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Absolute audio paths of ``inputs``, in order, each once.

    Each input is a folder (searched recursively for audio files), a manifest (``.txt``: one path a line,
    ``#`` comments; ``.csv``: a ``path`` column, or the first column without a header; ``.parquet``: a
    ``path`` column), a glob (``data/**/*.flac``), or an audio file.  A file that does not exist is kept: it
    becomes a row with an error, like any other unusable input.  A glob that matches nothing, or inputs that
    give no paths at all, are a :class:`~voicebank.batch.dataset.BatchError`.
    """
    exts = audio_extensions()
    out: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            out.extend(_folder(path, exts))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            out.extend(_manifest(path))
        elif not path.exists() and glob.has_magic(text):
            matched = sorted(glob.glob(text, recursive=True))
            if not matched:
                raise BatchError(f"{text}: the pattern matches no files")
            for m in matched:
                out.extend(_folder(Path(m), exts) if os.path.isdir(m) else [m])
        else:
            out.append(text)
    seen: set[str] = set()
    paths = []
    for p in out:
        a = os.path.abspath(p)
        if a not in seen:
            seen.add(a)
            paths.append(a)
    if not paths:
        raise BatchError(f"no audio files in {', '.join(os.fspath(i) for i in inputs) or '(no inputs)'}")
    return paths
