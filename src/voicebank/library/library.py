"""The voice library: named voices kept in one of three modes, in a catalogue plus content-addressed files.

The three ways to keep a voice (the seed document's options 3, 2 and 1):

* ``audio``: the decoded reference (mono float32 at its own sample rate, in a float WAV: lossless).
  :meth:`Library.get` extracts the conditionals from it, exactly as extraction from the original file
  would, and caches them.
* ``conditionals``: the ready voice file (per variant), plus the decoded audio unless told not to keep
  it.  :meth:`Library.get` just loads it: no weights needed.
* ``embedding``: only the 256-d speaker embedding and the 192-d CAM++ x-vector.  :meth:`Library.get`
  rebuilds full conditionals by borrowing the S3Gen reference (prompt tokens and mel) and T3's prompt
  tokens from a *base* voice; the result is a hybrid and says so in ``VoiceMetadata.hybrid``.

Every voice also keeps its speaker embedding and x-vector in the catalogue, for comparison, search and
duplicate detection.

Consistency rules (so that a crash or ``kill -9`` at any moment leaves a consistent library):

1. Files are written temp-then-rename (:mod:`.blobs`), and only while holding the catalogue's write lock,
   in the same transaction that inserts the rows referencing them.  A crash before the commit leaves at
   most an unreferenced file, never a row without its file.
2. A file is deleted only after the transaction that dropped its last reference has committed, in a
   second write transaction that checks again that nothing references it.
3. :meth:`Library.check` removes unreferenced files and temp files of writers that are gone.
"""

from __future__ import annotations

import builtins
import difflib
import getpass
import json
import logging
import math
import os
import sqlite3
import struct
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..audio import AudioSource, _known_extensions, check_samples, describe, probe, read_audio
from ..errors import (
    BaseVoiceError,
    CatalogueError,
    DuplicateAudioError,
    InvalidVoiceNameError,
    LibraryError,
    NoAudioKeptError,
    ReferenceRejectedError,
    VoicebankError,
    VoiceExistsError,
    VoiceFileError,
    VoiceNotFoundError,
)
from ..weights import VARIANTS, check_variant
from .blobs import BlobStore
from .catalogue import CATALOGUE_NAME, Catalogue
from .inspection import Inspection, inspect_samples
from .results import (
    MODES,
    AddResult,
    CheckProblem,
    CheckReport,
    Comparison,
    Match,
    Mode,
    ReextractResult,
    StaleVoice,
    StoredFile,
    VoiceInfo,
)

if TYPE_CHECKING:
    import torch

    from ..conditionals import Voice
    from ..extractor import Extractor

log = logging.getLogger(__name__)

ENV_LIBRARY = "VOICEBANK_LIBRARY"
DEFAULT_EXAGGERATION = 0.5
DUPLICATE_THRESHOLD = 0.80
"""Speaker-embedding cosine at or above which a new voice is reported as possibly the same speaker as a stored
one.  With a trained voice encoder same-speaker pairs of real speech score about 0.88 on average and different
speakers about 0.55 (equal error rate near 0.76: see ``tests/test_realspeech.py``)."""
MAX_NAME_LENGTH = 128
SPEAKER_EMB_DIM = 256
XVECTOR_DIM = 192
AUDIO_SUFFIX = ".wav"
VOICE_SUFFIX = ".safetensors"

Progress = Callable[[int], None]


# --- paths ---------------------------------------------------------------------------------------------


def default_library_path() -> Path:
    """``$VOICEBANK_LIBRARY``, else the platform's user data directory for voicebank."""
    env = os.environ.get(ENV_LIBRARY)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("voicebank"))


def resolve_library_path(path: str | os.PathLike[str] | None) -> Path:
    """``path`` if given, else :func:`default_library_path`."""
    return Path(path).expanduser() if path is not None else default_library_path()


def check_name(name: str) -> str:
    """Return ``name`` if it can name a voice, else raise :class:`~voicebank.errors.InvalidVoiceNameError`."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidVoiceNameError(f"voice name {name!r} is empty; pass a name such as 'alice'")
    if name != name.strip():
        raise InvalidVoiceNameError(f"voice name {name!r} starts or ends with white space; remove it")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidVoiceNameError(f"voice name {name[:20]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name) or "/" in name or "\\" in name:
        raise InvalidVoiceNameError(f"voice name {name!r} holds a control character or a path separator; use "
                                    "letters, digits, spaces, '-', '_' or '.'")
    if name.startswith("-"):
        raise InvalidVoiceNameError(f"voice name {name!r} starts with '-', which reads as a command-line option")
    return name


def default_name(source: AudioSource) -> str:
    """The name a clip gets when none is given: its file stem."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stem
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return Path(name).stem
    raise InvalidVoiceNameError(f"{describe(source)}: in-memory audio has no file name; pass name=")


def collect_audio(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand directories (recursively) into the audio files they hold, sorted; files are kept as given."""
    exts = {f".{e}" for e in _known_extensions()}
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in exts
                              and not f.name.startswith(".")))
        else:
            out.append(path)
    return out


# --- internal ------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """Everything computed for one clip before the transaction that stores it."""

    source: str
    name: str
    sha256: str
    mode: Mode
    variant: str
    native: np.ndarray
    sample_rate: int
    channels: int
    inspection: Inspection
    speaker_emb: np.ndarray | None
    xvector: np.ndarray
    fingerprint: str
    voices: dict[str, Voice] = field(default_factory=dict)
    keep_audio: bool = True
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _AddOptions:
    mode: Mode
    variants: tuple[str, ...]
    exaggeration: float
    tags: tuple[str, ...]
    consent: str
    added_by: str
    keep_audio: bool
    base: str | None
    force: bool


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        return ""


def _vec_bytes(x: np.ndarray | None) -> bytes | None:
    return None if x is None else np.ascontiguousarray(np.asarray(x, dtype="<f4").reshape(-1)).tobytes()


def _vec(raw: bytes | None, dim: int) -> np.ndarray | None:
    if raw is None:
        return None
    arr = np.frombuffer(raw, dtype="<f4")
    if arr.shape != (dim,) or not np.isfinite(arr).all():
        return None
    return arr.astype(np.float32)


def _wav_bytes(native: np.ndarray, sample_rate: int) -> bytes:
    """Mono float32 samples as a 32-bit IEEE-float WAV: lossless (every float32 comes back bit for bit) and
    byte-for-byte deterministic, so equal audio is one content-addressed file.

    Written by hand because libsndfile adds a PEAK chunk with a timestamp to float WAVs.
    """
    data = np.ascontiguousarray(np.asarray(native, dtype="<f4").reshape(-1)).tobytes()
    n_frames = len(data) // 4
    fmt = struct.pack("<HHIIHH", 3, 1, int(sample_rate), int(sample_rate) * 4, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"fact" + struct.pack("<II", 4, n_frames)
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    from ..similarity import cosine

    return cosine(a, b)


def _embedding_variant(variant: str) -> str:
    """The variant whose pipeline gives a voice's speaker embedding: VC has none, so English's."""
    return "english" if variant == "vc" else variant


def _check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise ValueError(f"unknown storage mode {mode!r}: choose one of {', '.join(MODES)}")
    return cast(Mode, mode)


def _check_variants(variant: str | Sequence[str]) -> tuple[str, ...]:
    items = [variant] if isinstance(variant, str) else list(variant)
    if not items:
        raise ValueError(f"give at least one variant: {', '.join(VARIANTS)}")
    out: list[str] = []
    for v in items:
        v = check_variant(v)
        if v not in out:
            out.append(v)
    return tuple(out)


# --- the library ---------------------------------------------------------------------------------------


class Library:
    """A voice library on disk: ``catalogue.sqlite3`` plus ``blobs/`` (content-addressed) and ``tmp/``.

    ``path``: the library directory (created if missing); default ``$VOICEBANK_LIBRARY``, else the
    platform's user data directory (``platformdirs.user_data_dir("voicebank")``).

    ``weights``, ``device``, ``allow_download``: how :class:`~voicebank.extractor.Extractor` s are built when
    extraction is needed (adding, ``get`` of an ``audio`` voice, re-extraction, comparing clips).
    ``extractors``: ready extractors to use, by variant (they are shared, not copied).

    Safe to share between threads; several processes may use the same library at once.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, weights: str | os.PathLike[str] | None = None,
                 device: str = "cpu", allow_download: bool = False,
                 extractors: Mapping[str, Extractor] | None = None,
                 duplicate_threshold: float = DUPLICATE_THRESHOLD) -> None:
        self.path = resolve_library_path(path)
        if self.path.exists() and not self.path.is_dir():
            raise LibraryError(f"{self.path}: not a directory; pass a directory for the voice library")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"{self.path}: cannot create the voice library here ({e}); pass another directory "
                               f"with --library or ${ENV_LIBRARY}") from e
        self.blobs = BlobStore(self.path)
        self.blobs.ensure_dirs()
        self.catalogue = Catalogue(self.path / CATALOGUE_NAME)
        self.catalogue.connection()  # create / migrate now, so errors surface here
        self.duplicate_threshold = float(duplicate_threshold)
        self._weights = weights
        self._device = device
        self._allow_download = allow_download
        self._extractors: dict[str, Extractor] = dict(extractors or {})
        self._fingerprints: dict[str, str] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Library({str(self.path)!r})"

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the catalogue connections (the library can still be used: they reopen on demand)."""
        self.catalogue.close()

    # --- models ----------------------------------------------------------------------------------------

    def extractor(self, variant: str = "english") -> Extractor:
        """The extractor for ``variant`` (built on first use from the library's weights settings)."""
        from ..extractor import Extractor

        v = check_variant(variant)
        with self._lock:
            ex = self._extractors.get(v)
            if ex is None:
                ex = Extractor(self._weights, variant=v, device=self._device, allow_download=self._allow_download)
                self._extractors[v] = ex
            return ex

    def weights_fingerprint(self, variant: str = "english") -> str:
        """Fingerprint of the weights ``variant`` extracts with now (loads them)."""
        with self._lock:
            fp = self._fingerprints.get(variant)
        if fp is None:
            fp = self.extractor(variant).weights_fingerprint
            with self._lock:
                self._fingerprints[variant] = fp
        return fp

    def _known_fingerprint(self, variant: str) -> str | None:
        with self._lock:
            return self._fingerprints.get(variant)

    def _embeddings(self, native: np.ndarray, sample_rate: int, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """``(speaker_emb (256,), xvector (192,))`` float32 of decoded audio, as :meth:`Extractor.extract` computes
        them for ``variant``, without running the speech tokenizer (the costly part)."""
        from ..reference import prepare_reference

        v = check_variant(_embedding_variant(variant))
        ex = self.extractor(v)
        speaker, xvector = ex.embeddings_of(prepare_reference((native, sample_rate), v, compute_sha256=False))
        self.weights_fingerprint(v)
        return speaker, xvector

    def _conditionals(self, native: np.ndarray, sample_rate: int, channels: int, variant: str, *, sha256: str,
                      name: str, exaggeration: float) -> Voice:
        """Conditionals of decoded audio, equal to ``Extractor.extract(original_file)``."""
        from ..reference import prepare_reference

        v = check_variant(variant)
        ex = self.extractor(v)
        ref = prepare_reference((native, sample_rate), v, compute_sha256=False)
        ref = replace(ref, source_sha256=sha256, name=name, source_channels=channels)
        voice = ex.conditionals_of([ref], exaggeration=exaggeration)[0]
        with self._lock:
            self._fingerprints.setdefault(variant, voice.metadata.weights_fingerprint)
        return voice

    # --- reading ---------------------------------------------------------------------------------------

    def _row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM voices WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [r[0] for r in conn.execute("SELECT name FROM voices")]
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see `voicebank list`"
            raise VoiceNotFoundError(f"no voice named {name!r} in the library at {self.path}{hint}")
        return row

    def _info(self, conn: sqlite3.Connection, row: sqlite3.Row) -> VoiceInfo:
        files = []
        for f in conn.execute("SELECT vf.role, vf.variant, vf.blob, vf.weights_fingerprint, b.size, b.suffix "
                              "FROM voice_files vf JOIN blobs b ON b.sha256 = vf.blob WHERE vf.voice_id = ? "
                              "ORDER BY vf.role, vf.variant", (row["id"],)):
            files.append(StoredFile(f["role"], f["variant"], f["blob"], int(f["size"]),
                                    self.blobs.path(f["blob"], f["suffix"]), f["weights_fingerprint"]))
        tags = tuple(r[0] for r in conn.execute("SELECT tag FROM tags WHERE voice_id = ? ORDER BY tag", (row["id"],)))
        base = None
        if row["base_id"] is not None:
            b = conn.execute("SELECT name FROM voices WHERE id = ?", (row["base_id"],)).fetchone()
            base = b[0] if b else None
        variants = [row["variant"]]
        for f in files:
            if f.role in ("conditionals", "cache") and f.variant not in variants:
                variants.append(f.variant)
        return VoiceInfo(
            name=row["name"], mode=row["mode"], variant=row["variant"], variants=tuple(variants),
            exaggeration=row["exaggeration"], source_sha256=row["source_sha256"], source_name=row["source_name"],
            duration=row["duration"], sample_rate=row["sample_rate"], channels=row["channels"],
            loudness_lufs=row["loudness_lufs"], weights_fingerprint=row["weights_fingerprint"], base=base,
            origin=row["origin"], experimental=bool(row["experimental"]), tags=tags, added_by=row["added_by"],
            added_at=row["added_at"], consent=row["consent"], provenance=json.loads(row["provenance"] or "{}"),
            inspection=json.loads(row["inspection"] or "{}"), files=tuple(files))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        conn = self.catalogue.connection()
        return conn.execute("SELECT 1 FROM voices WHERE name = ?", (name,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self.catalogue.connection().execute("SELECT COUNT(*) FROM voices").fetchone()[0])

    def names(self) -> builtins.list[str]:
        """Every voice name, sorted."""
        return [r[0] for r in self.catalogue.connection().execute("SELECT name FROM voices ORDER BY name")]

    def show(self, name: str) -> VoiceInfo:
        """Everything the library holds about ``name``.  Raises :class:`~voicebank.errors.VoiceNotFoundError`."""
        with self.catalogue.read() as conn:
            return self._info(conn, self._row(conn, name))

    def list(self, *, tag: str | None = None, mode: str | None = None) -> builtins.list[VoiceInfo]:
        """Every voice (optionally only those with ``tag`` or in ``mode``), sorted by name."""
        sql = "SELECT * FROM voices"
        args: builtins.list[Any] = []
        where = []
        if tag is not None:
            where.append("id IN (SELECT voice_id FROM tags WHERE tag = ?)")
            args.append(tag)
        if mode is not None:
            where.append("mode = ?")
            args.append(_check_mode(mode))
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.catalogue.read() as conn:
            return [self._info(conn, row) for row in conn.execute(sql + " ORDER BY name", args).fetchall()]

    # --- adding ----------------------------------------------------------------------------------------

    def add(self, source: AudioSource, name: str | None = None, *, mode: Mode = "audio",
            variant: str | Sequence[str] = "english", exaggeration: float = DEFAULT_EXAGGERATION,
            tags: Iterable[str] = (), consent: str = "", added_by: str | None = None, keep_audio: bool = True,
            base: str | None = None, force: bool = False) -> AddResult:
        """Add one reference clip as voice ``name`` (default: the file stem), in one transaction.

        ``mode``: ``audio`` (keep the decoded clip; conditionals are extracted on :meth:`get`),
        ``conditionals`` (extract now and keep the voice file per variant, plus the audio unless
        ``keep_audio=False``), or ``embedding`` (keep only the speaker embedding and x-vector; :meth:`get` then
        needs a ``base`` voice, which can be set here).  ``variant``: one variant or several (conditionals
        mode extracts each; the first is the voice's primary variant).

        The clip is inspected first (:func:`~voicebank.library.inspection.inspect_samples`): unusable clips
        are refused, poor ones too unless ``force``.  Refusals raise and write nothing:
        :class:`~voicebank.errors.VoiceExistsError` (name taken), :class:`~voicebank.errors.DuplicateAudioError`
        (same audio already stored), :class:`~voicebank.errors.ReferenceRejectedError`,
        :class:`~voicebank.errors.AudioError`.  A stored voice whose speaker embedding is close to the new one
        is not an error: it is reported in ``AddResult.similar`` and ``warnings``.
        """
        opts = self._options(mode, variant, exaggeration, tags, consent, added_by, keep_audio, base, force)
        name, digest = self._precheck(source, name)
        return self._commit(self._prepare(source, name, digest, opts), opts)

    def add_many(self, sources: Iterable[AudioSource], *, names: Sequence[str | None] | None = None,
                 mode: Mode = "audio", variant: str | Sequence[str] = "english",
                 exaggeration: float = DEFAULT_EXAGGERATION, tags: Iterable[str] = (), consent: str = "",
                 added_by: str | None = None, keep_audio: bool = True, base: str | None = None, force: bool = False,
                 workers: int = 2, progress: Progress | None = None) -> builtins.list[AddResult]:
        """Add many clips; one :class:`AddResult` per source, in input order.  Never raises for one bad clip.

        Decoding, inspection and extraction run on ``workers`` threads (torch releases the GIL); each clip
        is then stored in its own transaction, in input order, so an interrupted batch keeps every clip stored
        so far, and running it again skips them (``skipped``: same audio already stored).  ``progress(1)`` is
        called as each clip finishes.  Each worker's torch ops use torch's intra-op threads: with several
        workers, ``torch.set_num_threads(cores // workers)`` avoids oversubscribing the cores (the CLI does).
        """
        srcs = builtins.list(sources)
        if names is not None and len(names) != len(srcs):
            raise ValueError(f"names has {len(names)} entries for {len(srcs)} sources")
        opts = self._options(mode, variant, exaggeration, tags, consent, added_by, keep_audio, base, force)
        results: builtins.list[AddResult | None] = [None] * len(srcs)
        known = self._embedding_matrix()

        def finish(i: int, fut: Future[_Prepared]) -> None:
            src = srcs[i]
            label = describe(src)
            try:
                prepared = fut.result()
                results[i] = self._commit(prepared, opts, known=known)
            except DuplicateAudioError as e:
                results[i] = AddResult(label, self._guess_name(src, names, i), "skipped", str(e))
            except VoicebankError as e:
                results[i] = AddResult(label, self._guess_name(src, names, i), "failed", str(e))
            except (OSError, ValueError, TypeError, RuntimeError) as e:  # unexpected; one clip must not stop a batch
                log.debug("%s: failed", label, exc_info=True)
                results[i] = AddResult(label, self._guess_name(src, names, i), "failed",
                                       f"{type(e).__name__}: {e}")
            if progress:
                progress(1)

        n_workers = max(1, int(workers))
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="voicebank-add") as pool:
            pending: dict[int, Future[_Prepared]] = {}
            next_i = 0
            done_i = 0
            while done_i < len(srcs):
                while next_i < len(srcs) and len(pending) < 2 * n_workers:
                    src = srcs[next_i]
                    try:  # cheap checks here (workers never touch the catalogue), the costly work on a worker
                        nm, digest = self._precheck(src, names[next_i] if names is not None else None)
                        pending[next_i] = pool.submit(self._prepare, src, nm, digest, opts)
                    except Exception as e:  # reported by finish(), like a worker's failure
                        failed: Future[_Prepared] = Future()
                        failed.set_exception(e)
                        pending[next_i] = failed
                    next_i += 1
                # commit in input order, so names and duplicate warnings do not depend on thread timing
                fut = pending.pop(done_i)
                finish(done_i, fut)
                done_i += 1
        return [r for r in results if r is not None]

    @staticmethod
    def _guess_name(src: AudioSource, names: Sequence[str | None] | None, i: int) -> str:
        if names is not None and names[i]:
            return str(names[i])
        try:
            return default_name(src)
        except InvalidVoiceNameError:
            return ""

    def _options(self, mode: str, variant: str | Sequence[str], exaggeration: float, tags: Iterable[str],
                 consent: str, added_by: str | None, keep_audio: bool, base: str | None, force: bool) -> _AddOptions:
        m = _check_mode(mode)
        variants = _check_variants(variant)
        ex = float(exaggeration)
        if not math.isfinite(ex):
            raise ValueError(f"exaggeration must be a finite number, got {exaggeration}")
        clean_tags = tuple(sorted({str(t).strip() for t in tags if str(t).strip()}))
        if m == "audio" and not keep_audio:
            raise ValueError("mode 'audio' keeps the audio by definition; keep_audio=False needs mode 'conditionals'")
        if base is not None and m != "embedding":
            raise ValueError("base= is for embedding-only voices (mode 'embedding')")
        if base is not None:
            self._check_base(base)
        # audio mode keeps the audio by definition, embedding mode never; conditionals mode unless told not to
        keep = m == "audio" or (m == "conditionals" and keep_audio)
        return _AddOptions(m, variants, ex, clean_tags, consent, _user() if added_by is None else added_by, keep,
                           base, force)

    def _precheck(self, source: AudioSource, name: str | None) -> tuple[str, str]:
        """``(name, sha256 of the source)``, or raise when the name or the audio is taken (no decoding)."""
        from ..reference import source_sha256

        name = check_name(name if name is not None else default_name(source))
        if isinstance(source, (str, os.PathLike)):
            probe(source)  # a missing, empty or undecodable file fails here with its typed AudioError
        digest = source_sha256(source)
        self._refuse_taken(self.catalogue.connection(), name, digest, describe(source))
        return name, digest

    def _prepare(self, source: AudioSource, name: str, digest: str, opts: _AddOptions) -> _Prepared:
        """Decode, inspect and extract one clip (no catalogue access, no writes).  Raises on refusal."""
        label = describe(source)
        native, sample_rate, channels = read_audio(source)
        check_samples(native, sample_rate, label)
        inspection = inspect_samples(native, sample_rate, channels=channels, source=label, variants=opts.variants)
        if inspection.errors:
            raise ReferenceRejectedError(f"{label}: refused: {'; '.join(f.message for f in inspection.errors)}",
                                         source=label, findings=tuple(f.message for f in inspection.errors))
        warnings = [f.message for f in inspection.warnings]
        if warnings and not opts.force:
            raise ReferenceRejectedError(f"{label}: poor reference: {'; '.join(warnings)}; pass --force (force=True) "
                                         "to add it anyway", source=label, findings=tuple(warnings))
        primary = opts.variants[0]
        prepared = _Prepared(label, name, digest, opts.mode, primary, native, sample_rate, channels, inspection,
                             None, np.zeros(XVECTOR_DIM, np.float32), "", keep_audio=opts.keep_audio,
                             warnings=[f"poor reference (forced): {w}" for w in warnings])
        if opts.mode == "conditionals":
            for v in opts.variants:
                prepared.voices[v] = self._conditionals(native, sample_rate, channels, v, sha256=digest, name=label,
                                                        exaggeration=opts.exaggeration)
            first = prepared.voices[primary]
            prepared.xvector = first.xvector.float().cpu().numpy()
            if first.t3 is not None:
                prepared.speaker_emb = first.speaker_embedding.float().cpu().numpy()
            else:
                prepared.speaker_emb, _ = self._embeddings(native, sample_rate, primary)
        else:
            prepared.speaker_emb, prepared.xvector = self._embeddings(native, sample_rate, primary)
        prepared.fingerprint = self.weights_fingerprint(_embedding_variant(primary))
        return prepared

    def _refuse_taken(self, conn: sqlite3.Connection, name: str, digest: str | None, label: str) -> None:
        # the audio first: a batch run again reports its stored clips as duplicates (skipped), not name clashes
        if digest:
            row = conn.execute("SELECT name FROM voices WHERE source_sha256 = ?", (digest,)).fetchone()
            if row is not None:
                raise DuplicateAudioError(f"{label}: the same audio is already in the library as {row[0]!r}",
                                          existing=row[0])
        if conn.execute("SELECT 1 FROM voices WHERE name = ?", (name,)).fetchone() is not None:
            raise VoiceExistsError(f"{label}: a voice named {name!r} is already in the library; choose another name "
                                   "(--name) or remove the old one first")

    def _embedding_matrix(self) -> dict[str, np.ndarray]:
        out = {}
        for name, raw in self.catalogue.connection().execute(
                "SELECT name, speaker_emb FROM voices WHERE speaker_emb IS NOT NULL"):
            vec = _vec(raw, SPEAKER_EMB_DIM)
            if vec is not None:
                out[name] = vec
        return out

    def _similar(self, speaker_emb: np.ndarray | None, known: Mapping[str, np.ndarray],
                 exclude: str = "") -> builtins.list[tuple[str, float]]:
        if speaker_emb is None or not known:
            return []
        from ..similarity import cosine_matrix

        names = [n for n in known if n != exclude]
        if not names:
            return []
        sims = cosine_matrix(speaker_emb[None, :], np.stack([known[n] for n in names]))[0]
        hits = [(n, float(s)) for n, s in zip(names, sims, strict=True) if s >= self.duplicate_threshold]
        return sorted(hits, key=lambda t: -t[1])[:5]

    def _similar_warnings(self, similar: Sequence[tuple[str, float]]) -> builtins.list[str]:
        """One warning naming the closest stored voice (and how many more are above the threshold)."""
        if not similar:
            return []
        (other, cos), more = similar[0], len(similar) - 1
        also = f"; {more} more above {self.duplicate_threshold:.2f}" if more else ""
        return [f"sounds like {other!r} (speaker cosine {cos:.3f}{also}): the same speaker under another name?"]

    def _put_blob(self, conn: sqlite3.Connection, data: bytes, suffix: str, kind: str, *,
                  rewrite: bool = False) -> str:
        """Store ``data`` (inside the caller's write transaction) and register it; returns its sha256.

        A file already registered is kept unless its size is wrong or ``rewrite`` (repairs) asks otherwise.
        """
        from .blobs import sha256_bytes

        digest = sha256_bytes(data)
        row = conn.execute("SELECT suffix FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        path = self.blobs.path(digest, suffix)
        if row is not None and row[0] == suffix and not rewrite and path.is_file() and path.stat().st_size == len(data):
            return digest
        self.blobs.write(data, suffix)
        conn.execute("INSERT OR REPLACE INTO blobs (sha256, kind, suffix, size, created_at) VALUES (?, ?, ?, ?, ?)",
                     (digest, kind, suffix, len(data), _now()))
        return digest

    def _commit(self, p: _Prepared, opts: _AddOptions, *, known: dict[str, np.ndarray] | None = None) -> AddResult:
        """Store a prepared clip: one transaction, files written under the write lock."""
        if known is None:
            known = self._embedding_matrix()
        similar = self._similar(p.speaker_emb, known)
        warnings = builtins.list(p.warnings) + self._similar_warnings(similar)
        audio_bytes = _wav_bytes(p.native, p.sample_rate) if p.keep_audio else None
        voice_bytes = {v: voice.to_bytes() for v, voice in p.voices.items()}
        with self.catalogue.write() as conn:
            self._refuse_taken(conn, p.name, p.sha256, p.source)
            base_id = self._base_id(conn, opts.base) if opts.base else None
            cur = conn.execute(
                "INSERT INTO voices (name, mode, variant, exaggeration, source_sha256, source_name, duration, "
                "sample_rate, channels, loudness_lufs, speaker_emb, xvector, weights_fingerprint, base_id, origin, "
                "added_by, added_at, consent, inspection) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (p.name, p.mode, p.variant, None if opts.variants == ("vc",) else opts.exaggeration,
                 p.sha256, Path(p.source).name if p.source and not p.source.startswith("<") else p.source,
                 round(p.native.shape[0] / p.sample_rate, 6), p.sample_rate, p.channels, p.inspection.loudness_lufs,
                 _vec_bytes(p.speaker_emb), _vec_bytes(p.xvector), p.fingerprint, base_id, "audio", opts.added_by,
                 _now(), opts.consent, json.dumps(p.inspection.to_dict())))
            voice_id = int(cur.lastrowid or 0)
            if audio_bytes is not None:
                digest = self._put_blob(conn, audio_bytes, AUDIO_SUFFIX, "audio")
                conn.execute("INSERT INTO voice_files (voice_id, role, variant, blob) VALUES (?, 'audio', '', ?)",
                             (voice_id, digest))
            for v, data in voice_bytes.items():
                digest = self._put_blob(conn, data, VOICE_SUFFIX, "voice")
                conn.execute("INSERT INTO voice_files (voice_id, role, variant, blob, weights_fingerprint) "
                             "VALUES (?, 'conditionals', ?, ?, ?)",
                             (voice_id, v, digest, p.voices[v].metadata.weights_fingerprint))
            conn.executemany("INSERT INTO tags (voice_id, tag) VALUES (?, ?)", [(voice_id, t) for t in opts.tags])
            info = self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (voice_id,)).fetchone())
        if p.speaker_emb is not None:
            known[p.name] = p.speaker_emb
        for w in warnings:
            log.info("%s: %s", p.source, w)
        return AddResult(p.source, p.name, "added", "", tuple(warnings), tuple(similar), info)

    def import_file(self, path: str | os.PathLike[str], name: str | None = None, *, tags: Iterable[str] = (),
                    consent: str = "", added_by: str | None = None, exaggeration: float | None = None) -> AddResult:
        """Add a voice file (voicebank ``.safetensors`` or upstream ``.pt``) as a ``conditionals`` voice without audio.

        The file is validated (an unsafe ``.pt`` is refused, never run).  Refused when the name is taken, the
        same voice file was imported before, or its source audio (by sha256) is already stored.
        """
        from ..conditionals import Voice

        path = Path(path)
        name = check_name(name if name is not None else path.stem)
        voice = Voice.load(path)
        meta = voice.metadata
        digest = meta.source_sha256 or None
        data = voice.to_bytes()
        from .blobs import sha256_bytes

        file_sha = sha256_bytes(data)
        ex = exaggeration if exaggeration is not None else meta.exaggeration
        speaker = voice.speaker_embedding.float().cpu().numpy() if voice.t3 is not None else None
        xvector = voice.xvector.float().cpu().numpy()
        known = self._embedding_matrix()
        similar = self._similar(speaker, known)
        warnings = self._similar_warnings(similar)
        if meta.hybrid:
            warnings.append(f"the imported voice is a hybrid ({meta.hybrid})")
        provenance = {"imported_from": path.name, "format": "voicebank" if path.suffix.lower() == VOICE_SUFFIX
                      else "upstream .pt", "hybrid": meta.hybrid}
        with self.catalogue.write() as conn:
            self._refuse_taken(conn, name, digest, str(path))
            row = conn.execute("SELECT v.name FROM voice_files vf JOIN voices v ON v.id = vf.voice_id "
                               "WHERE vf.blob = ? AND vf.role = 'conditionals'", (file_sha,)).fetchone()
            if row is not None:
                raise VoiceExistsError(f"{path}: this voice file is already in the library as {row[0]!r}")
            cur = conn.execute(
                "INSERT INTO voices (name, mode, variant, exaggeration, source_sha256, source_name, duration, "
                "sample_rate, speaker_emb, xvector, weights_fingerprint, origin, provenance, added_by, added_at, "
                "consent) VALUES (?, 'conditionals', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'import', ?, ?, ?, ?)",
                (name, meta.variant, ex if voice.t3 is not None else None, digest, path.name, meta.source_duration,
                 meta.source_sample_rate, _vec_bytes(speaker), _vec_bytes(xvector), meta.weights_fingerprint,
                 json.dumps(provenance), _user() if added_by is None else added_by, _now(), consent))
            voice_id = int(cur.lastrowid or 0)
            self._put_blob(conn, data, VOICE_SUFFIX, "voice")
            conn.execute("INSERT INTO voice_files (voice_id, role, variant, blob, weights_fingerprint) "
                         "VALUES (?, 'conditionals', ?, ?, ?)", (voice_id, meta.variant, file_sha,
                                                                  meta.weights_fingerprint))
            conn.executemany("INSERT INTO tags (voice_id, tag) VALUES (?, ?)",
                             [(voice_id, t) for t in sorted({str(t).strip() for t in tags if str(t).strip()})])
            info = self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (voice_id,)).fetchone())
        return AddResult(str(path), name, "added", "", tuple(warnings), tuple(similar), info)

    # --- getting conditionals --------------------------------------------------------------------------

    def get(self, name: str, *, variant: str | None = None, exaggeration: float | None = None,
            base: str | None = None, device: str | torch.device = "cpu") -> Voice:
        """Ready conditionals of voice ``name``, whatever its mode.

        ``variant``: default the voice's primary variant.  ``exaggeration``: default the voice's own.
        ``audio`` voices are extracted on first use and the result is cached in the library;
        ``conditionals`` voices are loaded (no weights needed); ``embedding`` voices are rebuilt as a hybrid
        with the S3Gen reference and T3 prompt tokens of ``base`` (default: the base set when adding), which
        ``VoiceMetadata.hybrid`` reports.
        """
        voice = self._get(name, variant=variant, base=base)
        with self.catalogue.read() as conn:
            row = self._row(conn, name)
        ex = exaggeration if exaggeration is not None else row["exaggeration"]
        if voice.t3 is not None and ex is not None and voice.metadata.exaggeration != float(ex):
            voice = voice.with_exaggeration(float(ex))
        return voice.to(device) if str(device) != "cpu" else voice

    def _get(self, name: str, *, variant: str | None, base: str | None) -> Voice:
        from ..conditionals import Voice

        with self.catalogue.read() as conn:
            row = self._row(conn, name)
            info = self._info(conn, row)
        v = check_variant(variant) if variant is not None else row["variant"]
        if info.mode == "embedding":
            return self._hybrid(row, info, v, base)
        stored = {(f.role, f.variant): f for f in info.files}
        f = stored.get(("conditionals", v)) or stored.get(("cache", v))
        current = self._known_fingerprint(v)
        if f is not None and f.role == "cache" and current is not None and f.weights_fingerprint != current:
            log.info("%s: cached %s conditionals are stale (weights %s, now %s); extracting again", name, v,
                     f.weights_fingerprint, current)
            f = None
        if f is not None:
            if f.role == "conditionals" and current is not None and f.weights_fingerprint not in ("", current):
                log.warning("%s: stored %s conditionals come from other weights (%s, now %s); "
                            "`voicebank library reextract %s` updates them", name, v, f.weights_fingerprint,
                            current, name)
            try:
                return Voice.load(f.path)
            except VoiceFileError as e:
                if f.role != "cache":
                    raise LibraryError(f"voice {name!r}: its {v} voice file is unreadable ({e}); run "
                                       "`voicebank library check --repair`") from e
                log.warning("%s: cached conditionals unreadable (%s); extracting again", name, e)
        if not info.has_audio:
            have = ", ".join(x for x in info.variants) or "none"
            raise NoAudioKeptError(f"voice {name!r} has conditionals for {have} only and keeps no audio to extract "
                                   f"{v}; add the clip again with --variant {v}")
        native, sample_rate = self._read_audio(info)
        voice = self._conditionals(native, sample_rate, row["channels"] or 1, v, sha256=row["source_sha256"] or "",
                                   name=name, exaggeration=row["exaggeration"] if row["exaggeration"] is not None
                                   else DEFAULT_EXAGGERATION)
        self._store_cache(row["id"], name, v, voice)
        return voice

    def _read_audio(self, info: VoiceInfo) -> tuple[np.ndarray, int]:
        import soundfile as sf

        f = next(f for f in info.files if f.role == "audio")
        try:
            data, sample_rate = sf.read(str(f.path), dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise LibraryError(f"voice {info.name!r}: its audio file {f.path} is unreadable ({e}); run "
                               "`voicebank library check`") from e
        return np.ascontiguousarray(data, dtype=np.float32), int(sample_rate)

    def _store_cache(self, voice_id: int, name: str, variant: str, voice: Voice) -> None:
        """Cache extracted conditionals of an ``audio`` voice (replacing an older cache of that variant)."""
        data = voice.to_bytes()
        dropped: builtins.list[str] = []
        try:
            with self.catalogue.write() as conn:
                if conn.execute("SELECT 1 FROM voices WHERE id = ? AND name = ?", (voice_id, name)).fetchone() is None:
                    return  # removed or renamed meanwhile: nothing to cache
                old = conn.execute("SELECT blob FROM voice_files WHERE voice_id = ? AND role = 'cache' AND variant = ?",
                                   (voice_id, variant)).fetchone()
                if old is not None:
                    dropped.append(old[0])
                    conn.execute("DELETE FROM voice_files WHERE voice_id = ? AND role = 'cache' AND variant = ?",
                                 (voice_id, variant))
                digest = self._put_blob(conn, data, VOICE_SUFFIX, "voice")
                conn.execute("INSERT INTO voice_files (voice_id, role, variant, blob, weights_fingerprint) "
                             "VALUES (?, 'cache', ?, ?, ?)", (voice_id, variant, digest,
                                                              voice.metadata.weights_fingerprint))
                dropped = self._drop_unreferenced(conn, dropped)
        except CatalogueError as e:  # the cache is an optimisation: never fail a get() for it
            log.warning("%s: could not cache the extracted conditionals (%s)", name, e)
            return
        self._unlink_dropped(dropped)

    def _check_base(self, base: str) -> None:
        with self.catalogue.read() as conn:
            self._base_id(conn, base)

    def _base_id(self, conn: sqlite3.Connection, base: str) -> int:
        row = self._row(conn, base)
        if row["mode"] == "embedding":
            raise BaseVoiceError(f"voice {base!r} keeps only an embedding, so it has no S3Gen reference to lend; "
                                 "choose an audio or conditionals voice as the base")
        return int(row["id"])

    def _hybrid(self, row: sqlite3.Row, info: VoiceInfo, variant: str, base: str | None) -> Voice:
        import torch

        from ..conditionals import Voice, VoiceMetadata

        base_name = base or info.base
        if base_name is None:
            raise BaseVoiceError(f"voice {info.name!r} keeps only a speaker embedding; getting conditionals borrows "
                                 "the S3Gen reference of a base voice: pass base= (--base NAME), or set one with "
                                 f"Library.update({info.name!r}, base=...)")
        with self.catalogue.read() as conn:
            self._base_id(conn, base_name)
        base_voice = self._get(base_name, variant=variant, base=None)
        speaker = _vec(row["speaker_emb"], SPEAKER_EMB_DIM)
        xvector = _vec(row["xvector"], XVECTOR_DIM)
        if xvector is None or (speaker is None and base_voice.t3 is not None):
            raise LibraryError(f"voice {info.name!r}: its stored embedding is damaged; run `voicebank library check`")
        t3 = None
        if base_voice.t3 is not None and speaker is not None:
            t3 = replace(base_voice.t3, speaker_emb=torch.from_numpy(speaker.copy()).reshape(1, SPEAKER_EMB_DIM))
        gen = replace(base_voice.gen, embedding=torch.from_numpy(xvector.copy()).reshape(1, XVECTOR_DIM))
        meta = VoiceMetadata(
            variant=variant, exaggeration=base_voice.metadata.exaggeration if t3 is not None else None,
            weights_fingerprint=row["weights_fingerprint"], source_sha256=row["source_sha256"] or "",
            source_duration=row["duration"], source_sample_rate=row["sample_rate"],
            hybrid=f"gen from {base_name}: speaker embedding and x-vector of {info.name!r}, S3Gen reference and T3 "
                   f"prompt tokens of {base_name!r}")
        return Voice(t3, gen, meta)

    # --- changing --------------------------------------------------------------------------------------

    def remove(self, name: str) -> builtins.list[str]:
        """Delete voice ``name``; its files go when no other voice uses them.

        Returns the embedding-only voices that had ``name`` as their base (they keep working with ``base=``).
        """
        with self.catalogue.write() as conn:
            row = self._row(conn, name)
            blobs = [r[0] for r in conn.execute("SELECT blob FROM voice_files WHERE voice_id = ?", (row["id"],))]
            dependents = [r[0] for r in conn.execute("SELECT name FROM voices WHERE base_id = ?", (row["id"],))]
            conn.execute("DELETE FROM voices WHERE id = ?", (row["id"],))
            dropped = self._drop_unreferenced(conn, blobs)
        self._unlink_dropped(dropped)
        for d in dependents:
            log.warning("voice %r used %r as its base; it now needs base= to be rebuilt", d, name)
        return dependents

    def _drop_unreferenced(self, conn: sqlite3.Connection, blobs: Iterable[str]) -> builtins.list[str]:
        """Within a write transaction: delete the catalogue rows of ``blobs`` no voice references any more."""
        dropped = []
        for digest in set(blobs):
            if conn.execute("SELECT 1 FROM voice_files WHERE blob = ?", (digest,)).fetchone() is None:
                conn.execute("DELETE FROM blobs WHERE sha256 = ?", (digest,))
                dropped.append(digest)
        return dropped

    def _unlink_dropped(self, dropped: Iterable[str]) -> None:
        """After the dropping transaction committed: delete the files, unless a writer registered them again."""
        dropped = builtins.list(dropped)
        if not dropped:
            return
        try:
            with self.catalogue.write() as conn:
                for digest in dropped:
                    if conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (digest,)).fetchone() is None:
                        for suffix in (AUDIO_SUFFIX, VOICE_SUFFIX):
                            self.blobs.unlink(digest, suffix)
        except CatalogueError as e:  # leftovers are harmless: check() removes them
            log.warning("could not delete unused files now (%s); `voicebank library check` removes them", e)

    def rename(self, old: str, new: str) -> VoiceInfo:
        """Rename a voice.  Raises :class:`~voicebank.errors.VoiceExistsError` when ``new`` is taken."""
        check_name(new)
        with self.catalogue.write() as conn:
            row = self._row(conn, old)
            if old != new and conn.execute("SELECT 1 FROM voices WHERE name = ?", (new,)).fetchone() is not None:
                raise VoiceExistsError(f"cannot rename {old!r}: a voice named {new!r} is already in the library")
            conn.execute("UPDATE voices SET name = ? WHERE id = ?", (new, row["id"]))
            return self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (row["id"],)).fetchone())

    def update(self, name: str, *, tags: Iterable[str] | None = None, consent: str | None = None,
               base: str | None = None, exaggeration: float | None = None) -> VoiceInfo:
        """Change a voice's tags (replacing them), consent note, base voice (embedding mode) or default exaggeration."""
        with self.catalogue.write() as conn:
            row = self._row(conn, name)
            if tags is not None:
                conn.execute("DELETE FROM tags WHERE voice_id = ?", (row["id"],))
                conn.executemany("INSERT INTO tags (voice_id, tag) VALUES (?, ?)",
                                 [(row["id"], t) for t in sorted({str(t).strip() for t in tags if str(t).strip()})])
            if consent is not None:
                conn.execute("UPDATE voices SET consent = ? WHERE id = ?", (consent, row["id"]))
            if base is not None:
                if row["mode"] != "embedding":
                    raise BaseVoiceError(f"voice {name!r} is a {row['mode']} voice; only embedding-only voices "
                                         "take a base")
                if base == name:
                    raise BaseVoiceError(f"voice {name!r} cannot be its own base")
                conn.execute("UPDATE voices SET base_id = ? WHERE id = ?", (self._base_id(conn, base), row["id"]))
            if exaggeration is not None:
                if not math.isfinite(float(exaggeration)):
                    raise ValueError(f"exaggeration must be a finite number, got {exaggeration}")
                conn.execute("UPDATE voices SET exaggeration = ? WHERE id = ?", (float(exaggeration), row["id"]))
            return self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (row["id"],)).fetchone())

    def export(self, name: str, path: str | os.PathLike[str], *, variant: str | None = None,
               exaggeration: float | None = None, base: str | None = None) -> Path:
        """Write voice ``name`` to ``path`` (atomically), by suffix:

        ``.safetensors``: voicebank voice file with ready conditionals (whatever the mode; a hybrid for
        embedding-only voices); ``.pt``: upstream ``Conditionals.save`` format; ``.wav``: the stored reference
        audio (float32 mono at its own rate); ``.npy``: the (256,) float32 speaker embedding.
        """
        from ..fileio import atomic_write

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".safetensors", ".pt"):
            return self.get(name, variant=variant, exaggeration=exaggeration, base=base).save(path)
        info = self.show(name)
        if suffix == ".wav":
            if not info.has_audio:
                raise NoAudioKeptError(f"voice {name!r} keeps no audio ({info.mode} mode); export .safetensors or .pt")
            src = next(f for f in info.files if f.role == "audio").path
            data = src.read_bytes()
            atomic_write(path, lambda f: f.write(data))
            return path
        if suffix == ".npy":
            with self.catalogue.read() as conn:
                emb = _vec(self._row(conn, name)["speaker_emb"], SPEAKER_EMB_DIM)
            if emb is None:
                raise LibraryError(f"voice {name!r} has no speaker embedding (a VC voice); export .safetensors instead")
            atomic_write(path, lambda f: np.save(f, emb))
            return path
        raise LibraryError(f"{path}: cannot export to {suffix or '(no suffix)'}; use .safetensors, .pt, .wav or .npy")

    # --- similarity ------------------------------------------------------------------------------------

    def _vectors(self, item: str | AudioSource, variant: str) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        """``(label, speaker_emb, xvector)`` of a voice name or an audio source."""
        if isinstance(item, str):
            conn = self.catalogue.connection()
            row = conn.execute("SELECT name, speaker_emb, xvector FROM voices WHERE name = ?", (item,)).fetchone()
            if row is not None:
                return row[0], _vec(row[1], SPEAKER_EMB_DIM), _vec(row[2], XVECTOR_DIM)
            if not Path(item).exists():
                names = [r[0] for r in conn.execute("SELECT name FROM voices")]
                close = difflib.get_close_matches(item, names, n=3)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                raise VoiceNotFoundError(f"{item!r} is neither a voice in the library at {self.path}{hint} nor an "
                                         "audio file; pass a voice name or a path to a clip")
        label = describe(item)
        native, sample_rate, _ = read_audio(item)
        check_samples(native, sample_rate, label)
        speaker, xvector = self._embeddings(native, sample_rate, variant)
        return label, speaker, xvector

    def compare(self, a: str | AudioSource, b: str | AudioSource, *, variant: str = "english") -> Comparison:
        """Cosine similarity of two voices or clips (a name is looked up first; otherwise it is read as a file)."""
        la, sa, xa = self._vectors(a, variant)
        lb, sb, xb = self._vectors(b, variant)
        if sa is None or sb is None:
            if xa is None or xb is None:
                raise LibraryError(f"cannot compare {la!r} and {lb!r}: an embedding is missing")
            cos = _cosine(xa, xb)
            return Comparison(la, lb, cos, cos, self.duplicate_threshold)
        xcos = _cosine(xa, xb) if xa is not None and xb is not None else None
        return Comparison(la, lb, _cosine(sa, sb), xcos, self.duplicate_threshold)

    def search(self, query: str | AudioSource, *, k: int = 5, tag: str | None = None,
               variant: str = "english") -> builtins.list[Match]:
        """The ``k`` stored voices closest to ``query`` (a voice name or a clip), best first, the query excluded."""
        from ..similarity import cosine_matrix

        label, speaker, xvector = self._vectors(query, variant)
        sql = "SELECT name, speaker_emb, xvector FROM voices"
        args: builtins.list[Any] = []
        if tag is not None:
            sql += " WHERE id IN (SELECT voice_id FROM tags WHERE tag = ?)"
            args.append(tag)
        rows = [(n, _vec(s, SPEAKER_EMB_DIM), _vec(x, XVECTOR_DIM))
                for n, s, x in self.catalogue.connection().execute(sql, args) if n != label]
        use_speaker = speaker is not None
        q = speaker if use_speaker else xvector
        cands: builtins.list[tuple[str, np.ndarray, np.ndarray | None]] = []
        for n, s, x in rows:
            vec = s if use_speaker else x
            if vec is not None:
                cands.append((n, vec, x))
        if not cands or q is None:
            return []
        sims = cosine_matrix(q[None, :], np.stack([vec for _, vec, _ in cands]))[0]
        out = []
        for (n, _, x), score in zip(cands, sims, strict=True):
            xs = _cosine(xvector, x) if xvector is not None and x is not None else None
            out.append(Match(n, float(score), xs))
        out.sort(key=lambda m: -m.score)
        return out[: max(0, int(k))]

    nearest = search
    """Alias of :meth:`search`."""

    def blend(self, names: Sequence[str], weights: Sequence[float] | None = None, *, name: str,
              base: str | None = None, tags: Iterable[str] = (), consent: str = "",
              added_by: str | None = None) -> VoiceInfo:
        """EXPERIMENTAL: a new embedding-only voice whose speaker embedding and x-vector are the weighted average
        of those of ``names`` (each L2-normalised first, the result re-normalised; the x-vector keeps the
        weighted mean norm of its inputs).

        An embedding-space blend is not a recording of anybody: how it sounds is not validated.  The voice is
        marked experimental.  ``base`` (default: the heaviest-weighted input that has an S3Gen reference)
        lends the S3Gen reference when the blend is turned into conditionals.
        """
        from ..similarity import blend as blend_vectors

        check_name(name)
        if len(names) < 2:
            raise ValueError("a blend needs at least two voices")
        w = [1.0] * len(names) if weights is None else [float(x) for x in weights]
        if len(w) != len(names):
            raise ValueError(f"{len(w)} weights for {len(names)} voices; give one weight per voice")
        with self.catalogue.read() as conn:
            rows = [self._row(conn, n) for n in names]
        speakers: builtins.list[np.ndarray] = []
        xvectors: builtins.list[np.ndarray] = []
        for r in rows:
            s, x = _vec(r["speaker_emb"], SPEAKER_EMB_DIM), _vec(r["xvector"], XVECTOR_DIM)
            if s is None or x is None:
                raise LibraryError(f"voice {r['name']!r} has no speaker embedding to blend (a VC-only voice)")
            speakers.append(s)
            xvectors.append(x)
        fps = {r["weights_fingerprint"] for r in rows if r["weights_fingerprint"]}
        if len(fps) > 1:
            raise LibraryError(f"voices {', '.join(repr(n) for n in names)} come from different weights; re-extract "
                               "the stale ones (`voicebank library reextract`) before blending")
        variants = {r["variant"] for r in rows}
        if len(variants) > 1:
            raise LibraryError(f"voices {', '.join(repr(n) for n in names)} are of different variants "
                               f"({', '.join(sorted(variants))}); blend voices of one variant")
        speaker = blend_vectors(speakers, w)
        xv = blend_vectors(xvectors, w)
        norm = sum(wi * float(np.linalg.norm(x)) for wi, x in zip(w, xvectors, strict=True)) / float(sum(w))
        xvector = (xv * np.float32(norm)).astype(np.float32)
        if base is None:
            order = sorted(range(len(rows)), key=lambda i: -w[i])
            for i in order:
                if rows[i]["mode"] != "embedding":
                    base = rows[i]["name"]
                    break
        provenance = {"experimental": "embedding-space blend; not validated",
                      "blend": [[n, wi] for n, wi in zip(names, w, strict=True)]}
        with self.catalogue.write() as conn:
            self._refuse_taken(conn, name, None, name)
            base_id = self._base_id(conn, base) if base else None
            cur = conn.execute(
                "INSERT INTO voices (name, mode, variant, exaggeration, speaker_emb, xvector, weights_fingerprint, "
                "base_id, origin, experimental, provenance, added_by, added_at, consent) "
                "VALUES (?, 'embedding', ?, ?, ?, ?, ?, ?, 'blend', 1, ?, ?, ?, ?)",
                (name, rows[0]["variant"], rows[0]["exaggeration"], _vec_bytes(speaker), _vec_bytes(xvector),
                 next(iter(fps), ""), base_id, json.dumps(provenance), _user() if added_by is None else added_by,
                 _now(), consent))
            voice_id = int(cur.lastrowid or 0)
            all_tags = {str(t).strip() for t in tags if str(t).strip()} | {"experimental"}
            conn.executemany("INSERT INTO tags (voice_id, tag) VALUES (?, ?)",
                             [(voice_id, t) for t in sorted(all_tags)])
            info = self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (voice_id,)).fetchone())
        log.warning("voice %r is an EXPERIMENTAL embedding-space blend of %s", name, ", ".join(names))
        return info

    # --- maintenance -----------------------------------------------------------------------------------

    def check(self, *, repair: bool = False, verify_hashes: bool = True) -> CheckReport:
        """Verify the library and clean what is provably garbage.

        Always: SQLite's integrity check; removes temp files of writers that are gone and files no voice
        references (both left by a crash); verifies every referenced file exists with the right size and
        (``verify_hashes``) sha256, every stored embedding is well-formed and every voice has what its mode
        needs.  With ``repair``: drops damaged cached conditionals (they are extracted again on use),
        re-extracts a damaged voice file from the kept audio, and drops damaged kept audio of a
        ``conditionals`` voice (which stays usable).  What cannot be repaired is reported with the fix.
        """
        problems: builtins.list[CheckProblem] = []
        conn = self.catalogue.connection()
        integrity = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in integrity] != ["ok"]:
            problems.append(CheckProblem("", f"catalogue integrity check failed: {integrity[0][0]}",
                                         "restore the catalogue from a backup, or move it away and re-add the voices"))
        removed_temp = []
        for tmp in self.blobs.stale_temp_files():
            try:
                tmp.unlink()
                removed_temp.append(self.blobs.relative(tmp))
            except FileNotFoundError:
                pass
        # unreferenced files: under the write lock, so no writer is between writing a file and registering it
        removed_orphans: builtins.list[str] = []
        with self.catalogue.write() as wconn:
            self._drop_unreferenced(wconn, [r[0] for r in wconn.execute("SELECT sha256 FROM blobs")])
            registered = {r[0]: r[1] for r in wconn.execute("SELECT sha256, suffix FROM blobs")}
            for digest, suffix, path in builtins.list(self.blobs.files()):
                if not digest or registered.get(digest) != suffix:
                    path.unlink(missing_ok=True)
                    removed_orphans.append(self.blobs.relative(path))
                    if path.parent != self.blobs.blob_dir:
                        try:
                            path.parent.rmdir()
                        except OSError:
                            pass
        # referenced files and voices
        with self.catalogue.read() as rconn:
            blobs = rconn.execute("SELECT sha256, suffix, size FROM blobs").fetchall()
            refs = rconn.execute("SELECT v.name, v.id, vf.role, vf.variant, vf.blob FROM voice_files vf "
                                 "JOIN voices v ON v.id = vf.voice_id").fetchall()
            voices = rconn.execute("SELECT * FROM voices").fetchall()
        damage: dict[str, str] = {}
        for digest, suffix, size in blobs:
            if verify_hashes:
                problem = self.blobs.verify(digest, suffix, size)
            elif not self.blobs.path(digest, suffix).is_file():
                problem = f"{self.blobs.relative(self.blobs.path(digest, suffix))} is missing"
            else:
                problem = None
            if problem:
                damage[digest] = problem
        for name, voice_id, role, variant, digest in refs:
            if digest not in damage:
                continue
            what = f"{role} file" + (f" ({variant})" if variant else "")
            problems.append(self._repair_file(name, voice_id, role, variant, digest, damage[digest], what, repair))
        for row in voices:
            name = row["name"]
            roles = {(r[2], r[3]) for r in refs if r[1] == row["id"]}
            if (row["xvector"] is not None and _vec(row["xvector"], XVECTOR_DIM) is None) or (
                    row["speaker_emb"] is not None and _vec(row["speaker_emb"], SPEAKER_EMB_DIM) is None):
                problems.append(CheckProblem(name, "stored embedding is malformed",
                                             f"voicebank library reextract {name}"))
            if row["mode"] == "audio" and not any(r == "audio" for r, _ in roles):
                problems.append(CheckProblem(name, "audio voice without its audio file",
                                             f"voicebank rm {name!r} and add the clip again"))
            if row["mode"] == "conditionals" and not any(r == "conditionals" for r, _ in roles):
                problems.append(CheckProblem(name, "conditionals voice without a voice file",
                                             f"voicebank rm {name!r} and add the clip again"))
            if row["mode"] == "embedding" and _vec(row["xvector"], XVECTOR_DIM) is None:
                problems.append(CheckProblem(name, "embedding voice without an embedding",
                                             f"voicebank rm {name!r} and add the clip again"))
        return CheckReport(len(voices), len(blobs), tuple(problems), tuple(removed_temp), tuple(removed_orphans))

    def _repair_file(self, name: str, voice_id: int, role: str, variant: str, digest: str, problem: str, what: str,
                     repair: bool) -> CheckProblem:
        if role == "cache":
            if repair:
                self._drop_file(voice_id, role, variant)
            return CheckProblem(name, f"cached conditionals: {problem}", "voicebank library check --repair (they are "
                                "extracted again on use)", repair)
        if role == "audio":
            with self.catalogue.read() as conn:
                mode = self._row(conn, name)["mode"]
            if mode == "conditionals":
                if repair:
                    self._drop_file(voice_id, role, variant)
                return CheckProblem(name, f"kept audio: {problem}", "voicebank library check --repair (drops the "
                                    "audio; the voice file still works)", repair)
            return CheckProblem(name, f"audio: {problem}", f"the voice is lost: voicebank rm {name!r} and add the "
                                "clip again")
        # a stored voice file: re-extract from the kept audio when there is some
        if repair:
            try:
                info = self.show(name)
                if info.has_audio:
                    self._reextract_one(name, only_variant=variant)
                    return CheckProblem(name, f"{what}: {problem}", "re-extracted from the kept audio", True)
            except VoicebankError as e:
                return CheckProblem(name, f"{what}: {problem}", f"re-extraction failed ({e}); voicebank rm {name!r} "
                                    "and add the clip again")
        return CheckProblem(name, f"{what}: {problem}", "voicebank library check --repair re-extracts it when the "
                            f"audio was kept; else voicebank rm {name!r} and add it again")

    def _drop_file(self, voice_id: int, role: str, variant: str) -> None:
        with self.catalogue.write() as conn:
            row = conn.execute("SELECT blob FROM voice_files WHERE voice_id = ? AND role = ? AND variant = ?",
                               (voice_id, role, variant)).fetchone()
            if row is None:
                return
            conn.execute("DELETE FROM voice_files WHERE voice_id = ? AND role = ? AND variant = ?",
                         (voice_id, role, variant))
            dropped = self._drop_unreferenced(conn, [row[0]])
        self._unlink_dropped(dropped)

    def stale(self, *, names: Iterable[str] | None = None) -> builtins.list[StaleVoice]:
        """Voice parts whose weights fingerprint differs from the weights loaded now (loads them).

        Parts with no recorded fingerprint (upstream ``.pt`` imports) are not reported.
        """
        wanted = set(names) if names is not None else None
        with self.catalogue.read() as conn:
            rows = conn.execute("SELECT id, name, variant, weights_fingerprint FROM voices ORDER BY name").fetchall()
            files = conn.execute("SELECT voice_id, role, variant, weights_fingerprint FROM voice_files "
                                 "WHERE role != 'audio'").fetchall()
        out = []
        for row in rows:
            if wanted is not None and row["name"] not in wanted:
                continue
            if row["weights_fingerprint"]:
                cur = self.weights_fingerprint(_embedding_variant(row["variant"]))
                if row["weights_fingerprint"] != cur:
                    out.append(StaleVoice(row["name"], row["variant"], "embedding", row["weights_fingerprint"], cur))
            for f in files:
                if f["voice_id"] == row["id"] and f["weights_fingerprint"]:
                    cur = self.weights_fingerprint(f["variant"])
                    if f["weights_fingerprint"] != cur:
                        out.append(StaleVoice(row["name"], f["variant"], f["role"], f["weights_fingerprint"], cur))
        return out

    def reextract(self, names: Iterable[str] | None = None, *, progress: Progress | None = None,
                  ) -> builtins.list[ReextractResult]:
        """Re-extract voices in place from their kept audio with the weights loaded now.

        ``names``: default every stale voice (see :meth:`stale`).  Embeddings and stored voice files are
        replaced, cached conditionals dropped, in one transaction per voice.  A voice without kept audio
        fails with the reason.
        """
        if names is None:
            targets = sorted({s.name for s in self.stale()})
        else:
            targets = builtins.list(dict.fromkeys(names))
        results = []
        for name in targets:
            try:
                changed = self._reextract_one(name)
                results.append(ReextractResult(name, "updated" if changed else "current"))
            except VoicebankError as e:
                results.append(ReextractResult(name, "failed", str(e)))
            if progress:
                progress(1)
        return results

    def _reextract_one(self, name: str, *, only_variant: str | None = None) -> bool:
        info = self.show(name)
        if not info.has_audio:
            raise NoAudioKeptError(f"voice {name!r} keeps no audio ({info.mode} mode), so it cannot be re-extracted; "
                                   "add the clip again")
        native, sample_rate = self._read_audio(info)
        with self.catalogue.read() as conn:
            row = self._row(conn, name)
        ex = row["exaggeration"] if row["exaggeration"] is not None else DEFAULT_EXAGGERATION
        variants = [f.variant for f in info.files if f.role == "conditionals"]
        if only_variant is not None:
            variants = [v for v in variants if v == only_variant]
        voices = {v: self._conditionals(native, sample_rate, row["channels"] or 1, v, sha256=row["source_sha256"] or "",
                                        name=name, exaggeration=ex) for v in variants}
        speaker: np.ndarray | None
        if info.variant in voices and voices[info.variant].t3 is not None:
            speaker = voices[info.variant].speaker_embedding.float().numpy()
            xvector = voices[info.variant].xvector.float().numpy()
        else:
            speaker, xvector = self._embeddings(native, sample_rate, info.variant)
        fp = self.weights_fingerprint(_embedding_variant(info.variant))
        payload = {v: voice.to_bytes() for v, voice in voices.items()}
        with self.catalogue.write() as conn:
            row2 = self._row(conn, name)
            if row2["id"] != row["id"]:
                raise VoiceNotFoundError(f"voice {name!r} was replaced while re-extracting; run it again")
            old = [r[0] for r in conn.execute("SELECT blob FROM voice_files WHERE voice_id = ? AND role != 'audio'",
                                              (row["id"],))]
            conn.execute("UPDATE voices SET speaker_emb = ?, xvector = ?, weights_fingerprint = ? WHERE id = ?",
                         (_vec_bytes(speaker), _vec_bytes(xvector), fp, row["id"]))
            if only_variant is None:
                conn.execute("DELETE FROM voice_files WHERE voice_id = ? AND role = 'cache'", (row["id"],))
            for v, data in payload.items():
                digest = self._put_blob(conn, data, VOICE_SUFFIX, "voice", rewrite=True)
                conn.execute("INSERT OR REPLACE INTO voice_files (voice_id, role, variant, blob, weights_fingerprint) "
                             "VALUES (?, 'conditionals', ?, ?, ?)",
                             (row["id"], v, digest, voices[v].metadata.weights_fingerprint))
            dropped = self._drop_unreferenced(conn, old)
        self._unlink_dropped(dropped)
        return True


# --- module-level convenience --------------------------------------------------------------------------

_OPEN: dict[tuple[str, str, str], Library] = {}
_OPEN_LOCK = threading.Lock()


def open_library(path: str | os.PathLike[str] | None = None, *, weights: str | os.PathLike[str] | None = None,
                 device: str = "cpu") -> Library:
    """A shared :class:`Library` per (path, weights, device) in this process, so models load once."""
    key = (str(resolve_library_path(path).resolve()), str(weights or ""), str(device))
    with _OPEN_LOCK:
        lib = _OPEN.get(key)
        if lib is None:
            lib = Library(key[0], weights=weights, device=device)
            _OPEN[key] = lib
        return lib


def get(name: str, *, library: str | os.PathLike[str] | None = None, weights: str | os.PathLike[str] | None = None,
        variant: str | None = None, exaggeration: float | None = None, base: str | None = None,
        device: str = "cpu") -> Voice:
    """Ready conditionals of voice ``name`` from the library (default: ``$VOICEBANK_LIBRARY`` or the user data dir).

    >>> voice = voicebank.get("alice")          # doctest: +SKIP
    >>> voice.apply_to(tts_model)               # doctest: +SKIP
    """
    return open_library(library, weights=weights, device="cpu").get(
        name, variant=variant, exaggeration=exaggeration, base=base, device=device)


__all__ = [
    "DUPLICATE_THRESHOLD",
    "ENV_LIBRARY",
    "MODES",
    "AddResult",
    "CheckProblem",
    "CheckReport",
    "Comparison",
    "Library",
    "Match",
    "Mode",
    "ReextractResult",
    "StaleVoice",
    "StoredFile",
    "VoiceInfo",
    "check_name",
    "collect_audio",
    "default_library_path",
    "get",
    "open_library",
    "resolve_library_path",
]
