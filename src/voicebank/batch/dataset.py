"""The batch output: a folder of Parquet part files, written whole or not at all, read back as voices.

Columns (one row per input clip and variant):

==================== ================================= ==================================================
``path``             string                            the input as given (``<bytes #i>`` for bare bytes)
``source_sha256``    string                            sha256 of the input file's bytes (null: unreadable)
``duration``         float64                           seconds of audio
``sample_rate``      int32                             the file's own sample rate
``speaker_emb``      fixed_size_list<float32, 256>     ``t3.speaker_emb`` (null for vc and for errors)
``xvector``          fixed_size_list<float32, 192>     ``gen.embedding`` (CAM++)
``voice``            binary                            conditionals mode: the voicebank ``.safetensors`` file
``mode``             string                            ``embedding`` or ``conditionals``
``variant``          string                            Chatterbox variant
``weights_fingerprint`` string                         of the weights the row was computed with
``voicebank_version`` string
``error_type``       string                            the error's class name (null when the row succeeded)
``error``            string                            the error's message
``worker``           string                            who computed it: ``ray:<node id>/<pid>`` or ``<host>/<pid>``
==================== ================================= ==================================================

Part files are named ``part-*.parquet``.  Each is written under a hidden temp name in the same folder,
fsynced and renamed, so a reader (pyarrow, Spark, DuckDB, Ray) never sees half a file; temp files of a
writer that died are removed by the next run (:func:`clean_temp_files`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError, VoicebankError
from ..fileio import fsync_directory, publish_mode

if TYPE_CHECKING:
    import pyarrow as pa

    from ..voice import Voice

log = logging.getLogger(__name__)

PART_GLOB = "part-*.parquet"
TEMP_PREFIX = ".tmp-part-"
LOCK_NAME = ".voicebank-batch.lock"
KEY_COLUMNS = ("path", "source_sha256", "weights_fingerprint", "mode", "variant")
"""What identifies a result: re-running skips inputs whose key is already in the output."""


class BatchError(VoicebankError):
    """A batch job that cannot run: bad inputs, an output folder in use or unreadable, a missing executor."""


def require_pyarrow() -> Any:
    """``import pyarrow`` or a :class:`~voicebank.errors.MissingDependencyError` naming the extra."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:
        raise MissingDependencyError("batch extraction writes Parquet with pyarrow: "
                                     "pip install 'voicebank[batch]'") from e
    return pyarrow


def schema() -> pa.Schema:
    """The Arrow schema of the batch output (see the module docstring)."""
    pa = require_pyarrow()
    from ..chatterbox import SPEAKER_EMB_DIM, XVECTOR_DIM

    return pa.schema([
        ("path", pa.string()),
        ("source_sha256", pa.string()),
        ("duration", pa.float64()),
        ("sample_rate", pa.int32()),
        ("speaker_emb", pa.list_(pa.float32(), SPEAKER_EMB_DIM)),
        ("xvector", pa.list_(pa.float32(), XVECTOR_DIM)),
        ("voice", pa.binary()),
        ("mode", pa.string()),
        ("variant", pa.string()),
        ("weights_fingerprint", pa.string()),
        ("voicebank_version", pa.string()),
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("worker", pa.string()),
    ])


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """An Arrow table of result rows (dicts with the schema's columns; vectors as float32 arrays or lists)."""
    pa = require_pyarrow()
    import numpy as np

    sch = schema()
    columns: dict[str, Any] = {}
    for f in sch:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_fixed_size_list(f.type):
            dim = f.type.list_size
            mask = np.array([v is None for v in values], dtype=bool)
            flat = np.zeros((len(values), dim), dtype=np.float32)
            for i, v in enumerate(values):
                if v is not None:
                    flat[i] = np.asarray(v, dtype=np.float32).reshape(dim)
            arr = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa.float32()), dim,
                                                    mask=pa.array(mask))
            columns[f.name] = arr
        else:
            columns[f.name] = pa.array(values, type=f.type)
    return pa.Table.from_arrays(list(columns.values()), schema=sch)


def part_files(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The complete part files of a dataset folder, sorted by name (which starts with the write time)."""
    return sorted(Path(out_dir).glob(PART_GLOB))


def write_part(out_dir: str | os.PathLike[str], table: pa.Table) -> Path:
    """Write ``table`` as a new part file of ``out_dir``, atomically: a hidden temp file, fsynced, renamed."""
    require_pyarrow()
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.parquet"
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
            publish_mode(f.fileno())
        os.replace(tmp, out / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(out)  # make the rename itself durable
    return out / name


def clean_temp_files(out_dir: str | os.PathLike[str]) -> int:
    """Remove the temp files of writers that died (call with the folder's lock held).  Returns how many."""
    n = 0
    for tmp in Path(out_dir).glob(f"{TEMP_PREFIX}*"):
        try:
            tmp.unlink()
            n += 1
        except FileNotFoundError:
            pass
    if n:
        log.info("%s: removed %d temp file(s) of an interrupted run", out_dir, n)
    return n


class OutputLock:
    """An exclusive lock on a dataset folder (one writer at a time), released when its process ends."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise BatchError(f"{self.path.parent}: another voicebank batch job is writing to this folder; "
                             "wait for it to finish or choose another -o") from e
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def read_table(out_dir: str | os.PathLike[str], *, columns: Sequence[str] | None = None) -> pa.Table:
    """Every row of a dataset folder as one Arrow table (``columns``: only those)."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    out = Path(out_dir)
    if not out.is_dir():
        raise BatchError(f"{out}: no such dataset folder")
    files = part_files(out)
    cols = list(columns) if columns is not None else None
    if not files:
        return schema().empty_table().select(cols) if cols else schema().empty_table()
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f, columns=cols))
        except (OSError, pa.ArrowInvalid) as e:
            raise BatchError(f"{f}: not a readable Parquet part file ({e}); move it out of the dataset") from e
    return pa.concat_tables(tables)


def open_parts(out_dir: str | os.PathLike[str]) -> list[tuple[Path, Any]]:
    """The part files of a dataset folder opened for streaming (``pyarrow.parquet.ParquetFile``, footers read), so
    that a truncated or foreign part is refused (:class:`BatchError`) before any row is used."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    out = Path(out_dir)
    if not out.is_dir():
        raise BatchError(f"{out}: no such dataset folder")
    parts = []
    for f in part_files(out):
        try:
            parts.append((f, pq.ParquetFile(f)))
        except (OSError, pa.ArrowInvalid) as e:
            raise BatchError(f"{f}: not a readable Parquet part file ({e}); move it out of the dataset") from e
    return parts


def stream_batches(parts: Sequence[tuple[Path, Any]], *, columns: Sequence[str],
                   batch_size: int = 1024) -> Iterator[pa.RecordBatch]:
    """The rows of opened parts (:func:`open_parts`) as record batches of at most ``batch_size`` rows, one part
    after another: memory stays that of one batch whatever the dataset's size."""
    pa = require_pyarrow()
    for path, part in parts:
        try:
            yield from part.iter_batches(batch_size=batch_size, columns=list(columns))
        except (OSError, pa.ArrowInvalid) as e:
            raise BatchError(f"{path}: not a readable Parquet part file ({e}); move it out of the dataset") from e


def done_keys(out_dir: str | os.PathLike[str]) -> set[tuple[Any, ...]]:
    """The keys (:data:`KEY_COLUMNS`) of the rows already in a dataset folder (failed rows included)."""
    if not Path(out_dir).is_dir() or not part_files(out_dir):
        return set()
    table = read_table(out_dir, columns=KEY_COLUMNS)
    cols = [table.column(c).to_pylist() for c in KEY_COLUMNS]
    return set(zip(*cols, strict=True))


def voice_from_bytes(data: bytes, *, where: str = "<dataset row>") -> Voice:
    """A :class:`~voicebank.voice.Voice` from the bytes of a voicebank ``.safetensors`` file, validated."""
    from ..voice import Voice

    return Voice.from_bytes(data, where=where)


def iter_voices(out_dir: str | os.PathLike[str], *, variant: str | None = None) -> Iterator[tuple[str, Voice]]:
    """``(path, Voice)`` for each successful conditionals row of a dataset folder, in file order.

    ``variant``: only that variant's rows.  An embedding-mode dataset holds no voices (a
    :class:`BatchError`): read its vectors with :func:`read_table` (columns ``speaker_emb``, ``xvector``).
    """
    table = read_table(out_dir, columns=["path", "voice", "mode", "variant", "error"])
    if table.num_rows and "conditionals" not in set(table.column("mode").to_pylist()):
        raise BatchError(f"{out_dir}: an embedding-mode dataset holds embeddings, not voices; read its vectors "
                         "with voicebank.batch.read_table, or run the batch with --mode conditionals")
    for batch in table.to_batches():
        for row in batch.to_pylist():
            if row["voice"] is None or row["error"] is not None:
                continue
            if variant is not None and row["variant"] != variant:
                continue
            yield row["path"], voice_from_bytes(row["voice"], where=f"{out_dir}: {row['path']}")


def read(out_dir: str | os.PathLike[str], *, variant: str | None = None) -> Iterator[Voice]:
    """The :class:`~voicebank.voice.Voice` of each successful conditionals row (see :func:`iter_voices`,
    which pairs each with its input path).  ``voice.save("x.pt")`` writes upstream's format."""
    for _, voice in iter_voices(out_dir, variant=variant):
        yield voice
