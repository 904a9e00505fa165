""":class:`VoiceStore`: the only code that speaks SQL or touches the library's content files.

A library directory holds ``catalogue.sqlite3`` (:mod:`.catalogue`) and content-addressed files under
``blobs/`` (:mod:`.blobs`).  The store reads and writes both in bytes and numpy arrays; it never imports torch
and knows nothing of models.  Consistency rules (so that a crash or ``kill -9`` at any moment leaves a
consistent library):

1. Files are written temp-then-rename, and only while holding the catalogue's write lock, in the same
   transaction that inserts the rows referencing them.  A crash before the commit leaves at most an
   unreferenced file, never a row without its file.
2. A file is deleted only after the transaction that dropped its last reference has committed, in a
   second write transaction that checks again that nothing references it.
3. :meth:`VoiceStore.remove_orphans` deletes unreferenced files and :meth:`VoiceStore.remove_stale_temp`
   temp files of writers that are gone.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..chatterbox import SPEAKER_EMB_DIM, VARIANTS, XVECTOR_DIM
from ..errors import (
    BaseVoiceError,
    CatalogueError,
    ContentMissingError,
    LibraryError,
    VoiceExistsError,
    VoiceNotFoundError,
)
from .blobs import BlobStore, read_content, sha256_bytes
from .catalogue import CATALOGUE_NAME, Catalogue, Generation
from .guard import close_names, damaged, dir_writable, json_object, name_skeleton, nfc, os_error, row_problem
from .records import NewVoice, StoredFile, StoredVoice, VoiceInfo, now, vec, vec_bytes
from .upkeep import Upkeep
from .vectors import rare_tag

log = logging.getLogger(__name__)

AUDIO_SUFFIX = ".wav"
VOICE_SUFFIX = ".safetensors"
CACHE_DIR = "cache"
"""Directory of the library for derived files that are not voices (the similarity cohort's embeddings)."""


class VoiceStore(Upkeep):
    """The catalogue and content files of one library directory (created if missing).

    Safe to share between threads; several processes may use the same directory at once (SQLite WAL with one
    writer at a time).
    """

    def __init__(self, path: str | os.PathLike[str], *, rebuilding: bool = False) -> None:
        """``rebuilding``: a new catalogue may be started beside existing content files (a rebuild, see
        :mod:`voicebank.store.recovery`); otherwise a lost or emptied catalogue is refused as damaged."""
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise LibraryError(f"{self.path}: not a directory; pass a directory for the voice library")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"{self.path}: cannot create the voice library here ({e}); pass another directory "
                               "with --library or $VOICEBANK_LIBRARY") from e
        self.blobs = BlobStore(self.path)
        self.catalogue = Catalogue(self.path / CATALOGUE_NAME,
                                   holds_content=None if rebuilding else self.blobs.holds_content)
        self._written = threading.local()
        self.catalogue.connection()  # create / migrate now, so errors surface here (a lost catalogue first)
        try:
            self.blobs.ensure_dirs()
        except OSError as e:
            if dir_writable(self.path) or not (self.blobs.blob_dir.is_dir() and self.blobs.tmp_dir.is_dir()):
                raise os_error(e, self.path, "set up") from e

    def __repr__(self) -> str:
        return f"VoiceStore({str(self.path)!r})"

    def close(self) -> None:
        """Close the catalogue connections (they reopen on demand)."""
        self.catalogue.close()

    # --- reading ---------------------------------------------------------------------------------------

    def _row(self, conn: sqlite3.Connection, name: str, suggest: bool = True) -> sqlite3.Row:
        name = nfc(name)
        row = conn.execute("SELECT * FROM voices WHERE name = ?", (name,)).fetchone()
        if row is None:
            close = close_names(conn, name) if suggest else []
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see `voicebank list`"
            raise VoiceNotFoundError(f"no voice named {name!r} in the library at {self.path}{hint}")
        return row

    def _info(self, conn: sqlite3.Connection, row: sqlite3.Row) -> VoiceInfo:
        problem = row_problem(row)
        if problem is not None:
            raise damaged(self.catalogue.path, f"the row of voice {str(row['name'])[:60]!r} is unusable: {problem}")
        files = []
        for f in conn.execute("SELECT vf.role, vf.variant, vf.blob, vf.weights_fingerprint, b.size, b.suffix "
                              "FROM voice_files vf JOIN blobs b ON b.sha256 = vf.blob WHERE vf.voice_id = ? "
                              "ORDER BY vf.role, vf.variant", (row["id"],)):
            if f["variant"] not in ("", *VARIANTS) or not isinstance(f["size"], int):
                raise damaged(self.catalogue.path, f"a file row of voice {str(row['name'])[:60]!r} is unusable")
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
            added_at=row["added_at"], consent=row["consent"], provenance=json_object(row["provenance"]),
            inspection=json_object(row["inspection"]), files=tuple(files))

    def _stored(self, conn: sqlite3.Connection, row: sqlite3.Row) -> StoredVoice:
        s, x = vec(row["speaker_emb"], SPEAKER_EMB_DIM), vec(row["xvector"], XVECTOR_DIM)
        return StoredVoice(int(row["id"]), self._info(conn, row), s, x,
                           speaker_emb_malformed=row["speaker_emb"] is not None and s is None,
                           xvector_malformed=row["xvector"] is not None and x is None)

    def _query(self, sql: str, args: Sequence[object] = ()) -> builtins.list[sqlite3.Row]:
        with self.catalogue.read() as conn:
            return conn.execute(sql, args).fetchall()

    def generation(self) -> Generation:
        """A token that changes whenever the catalogue may have changed (see :meth:`Catalogue.generation`)."""
        return self.catalogue.generation()

    def contains(self, name: str) -> bool:
        """Whether a voice is called ``name``."""
        return bool(self._query("SELECT 1 FROM voices WHERE name = ?", (nfc(name),)))

    def count(self) -> int:
        """How many voices there are."""
        return int(self._query("SELECT COUNT(*) FROM voices")[0][0])

    def names(self) -> builtins.list[str]:
        """Every voice name, sorted."""
        return [r[0] for r in self._query("SELECT name FROM voices ORDER BY name")]

    def _good(self, conn: sqlite3.Connection, rows: Iterable[sqlite3.Row], make: Callable[..., Any],
              on_bad: Callable[[str, str], None] | None) -> builtins.list[Any]:
        """``make(conn, row)`` of every usable row; a damaged row is reported (``on_bad(name, problem)``, default
        a warning) and skipped, so one bad row never stops a library-wide command."""
        out = []
        for row in rows:
            try:
                out.append(make(conn, row))
            except LibraryError as e:
                name = str(row["name"]) if "name" in row.keys() else "?"
                if on_bad is not None:
                    on_bad(name, str(e))
                else:
                    log.warning("skipped voice %r: %s", name[:60], e)
        return out

    def voice(self, name: str, *, suggest: bool = True) -> StoredVoice:
        """The voice called ``name``.  Raises :class:`~voicebank.errors.VoiceNotFoundError` (with suggestions of
        close names unless ``suggest`` is false)."""
        with self.catalogue.read() as conn:
            return self._stored(conn, self._row(conn, name, suggest))

    def info(self, name: str) -> VoiceInfo:
        """What the store holds about ``name``."""
        with self.catalogue.read() as conn:
            return self._info(conn, self._row(conn, name))

    def list(self, *, tag: str | None = None, mode: str | None = None, limit: int | None = None,
             after: str | None = None, on_bad: Callable[[str, str], None] | None = None) -> builtins.list[VoiceInfo]:
        """Voices sorted by name (optionally only those with ``tag`` or in ``mode``): at most ``limit`` of them
        (``None``: all), those named after ``after`` (``None``: from the first).  A page reads the name index
        from ``after`` on, so its cost does not grow with the library.  Damaged rows are reported to
        ``on_bad(name, problem)`` (default: a warning) and skipped."""
        sql, args = "SELECT * FROM voices", builtins.list[object]()
        where = []
        if tag is not None:  # a rare tag's voices from the tag index; else checked per row along the name index
            where.append("id IN (SELECT voice_id FROM tags WHERE tag = ?)" if rare_tag(self.catalogue, tag) else
                         "EXISTS (SELECT 1 FROM tags WHERE tags.voice_id = voices.id AND tags.tag = ?)")
            args.append(tag)
        if mode is not None:
            where.append("mode = ?")
            args.append(mode)
        if after is not None:
            where.append("name > ?")
            args.append(nfc(after))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY name"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self.catalogue.read() as conn:
            return self._good(conn, conn.execute(sql, args).fetchall(), self._info, on_bad)

    def all_voices(self, *, on_bad: Callable[[str, str], None] | None = None) -> builtins.list[StoredVoice]:
        """Every voice with its vectors, sorted by name (damaged rows reported and skipped, as :meth:`list`)."""
        with self.catalogue.read() as conn:
            return self._good(conn, conn.execute("SELECT * FROM voices ORDER BY name").fetchall(), self._stored,
                              on_bad)

    @property
    def cache_dir(self) -> Path:
        """``<library>/cache``: derived files that can be computed again (not created here; never checked)."""
        return self.path / CACHE_DIR

    def common_fingerprint(self) -> str | None:
        """The weights fingerprint most voices with a speaker embedding were extracted with (``None``: none)."""
        rows = self._query(
            "SELECT weights_fingerprint FROM voices WHERE speaker_emb IS NOT NULL AND weights_fingerprint != '' "
            "GROUP BY weights_fingerprint ORDER BY COUNT(*) DESC, weights_fingerprint LIMIT 1")
        return str(rows[0][0]) if rows else None

    def read_file(self, f: StoredFile, *, voice: str) -> bytes:
        """The bytes of one of ``voice``'s files.  A missing or unreadable file is a :class:`LibraryError` that
        says how to repair the library."""
        try:
            return read_content(f.path, f.size)
        except OSError as e:
            what = "is a link, which content files never are" if f.path.is_symlink() else \
                "is a directory, not a file" if f.path.is_dir() else "is missing" if not f.path.exists() else \
                f"is unreadable ({e.strerror or e})"
            error = LibraryError if what.startswith("is unreadable") else ContentMissingError
            raise error(f"voice {voice!r}: its {f.role} file {self.blobs.relative(f.path)} {what}; run "
                        "voicebank library check --repair") from e

    # --- writing -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that cleans up after itself: on any failure (a full disk, a read-only directory,
        a commit that fails) the content files it created are deleted again and an ``OSError`` becomes a
        :class:`~voicebank.errors.LibraryWriteError`, so a failed write changes nothing."""
        created: builtins.list[Path] = []
        self._written.paths = created
        try:
            with self.catalogue.write() as conn:
                yield conn
        except BaseException as e:
            for path in created:
                with contextlib.suppress(OSError):
                    path.unlink()
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
            if isinstance(e, OSError) and not isinstance(e, LibraryError):
                raise os_error(e, self.path) from e
            raise
        finally:
            self._written.paths = None

    def _put_blob(self, conn: sqlite3.Connection, data: bytes, suffix: str, kind: str, *,
                  rewrite: bool = False) -> str:
        """Store ``data`` (inside the caller's write transaction) and register it; returns its sha256.

        A file already registered is kept unless its size is wrong or ``rewrite`` (repairs) asks otherwise.
        """
        digest = sha256_bytes(data)
        row = conn.execute("SELECT suffix FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        path = self.blobs.path(digest, suffix)
        if row is not None and row[0] == suffix and not rewrite and path.is_file() and path.stat().st_size == len(data):
            return digest
        existed = path.is_file()
        self.blobs.write(data, suffix)
        created = getattr(self._written, "paths", None)
        if not existed and created is not None:
            created.append(path)
        conn.execute("INSERT OR REPLACE INTO blobs (sha256, kind, suffix, size, created_at) VALUES (?, ?, ?, ?, ?)",
                     (digest, kind, suffix, len(data), now()))
        return digest

    def insert(self, new: NewVoice, *, label: str = "", refuse_voice_file: str | None = None) -> VoiceInfo:
        """Add a voice, its tags and its files in one transaction (files written under the write lock).  Refused
        (nothing written) when the name or the source audio is taken, when ``base`` cannot lend a reference, or
        when ``refuse_voice_file`` (a voice file sha256) is already stored as conditionals."""
        with self._write() as conn:
            return self._insert(conn, new, label, refuse_voice_file)

    def insert_many(self, items: Sequence[tuple[NewVoice, str, str | None]], *, details: bool = True,
                    ) -> builtins.list[VoiceInfo | int | LibraryError]:
        """Add many voices in one transaction: ``items`` are ``(voice, label, refuse_voice_file)`` as for
        :meth:`insert`.  Returns, in order, each one's :class:`VoiceInfo` (its id with ``details=False``) or the
        :class:`~voicebank.errors.LibraryError` that refused it (also a name or audio taken by an earlier item):
        a refused voice writes nothing, the others are stored.  Any other failure raises and stores none."""
        out: builtins.list[VoiceInfo | int | LibraryError] = []
        with self._write() as conn:
            created: builtins.list[Path] = self._written.paths
            for new, label, refuse in items:
                mark = len(created)
                conn.execute("SAVEPOINT one_voice")
                try:
                    out.append(self._insert(conn, new, label, refuse, details=details))
                except LibraryError as e:
                    conn.execute("ROLLBACK TO one_voice")
                    for path in created[mark:]:  # its files: nothing references them now
                        with contextlib.suppress(OSError):
                            path.unlink()
                    del created[mark:]
                    out.append(e)
                conn.execute("RELEASE one_voice")
        return out

    def _insert(self, conn: sqlite3.Connection, new: NewVoice, label: str, refuse_voice_file: str | None, *,
                details: bool = True) -> Any:
        if nfc(new.name) != new.name:
            new = replace(new, name=nfc(new.name))
        self._refuse_taken(conn, new.name, new.source_sha256, label or new.name)
        if refuse_voice_file is not None:
            row = conn.execute("SELECT v.name FROM voice_files vf JOIN voices v ON v.id = vf.voice_id "
                               "WHERE vf.blob = ? AND vf.role = 'conditionals'", (refuse_voice_file,)).fetchone()
            if row is not None:
                raise VoiceExistsError(f"{label}: this voice file is already in the library as {row[0]!r}")
        base_id = self._base_id(conn, new.base) if new.base else None
        cur = conn.execute(
            "INSERT INTO voices (name, mode, variant, exaggeration, source_sha256, source_name, duration, "
            "sample_rate, channels, loudness_lufs, speaker_emb, xvector, weights_fingerprint, base_id, origin, "
            "experimental, provenance, added_by, added_at, consent, inspection, norm_mean, norm_std, norm_cohort, "
            "skeleton) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new.name, new.mode, new.variant, new.exaggeration, new.source_sha256, new.source_name, new.duration,
             new.sample_rate, new.channels, new.loudness_lufs, vec_bytes(new.speaker_emb),
             vec_bytes(new.xvector), new.weights_fingerprint, base_id, new.origin, int(new.experimental),
             json.dumps(new.provenance or {}), new.added_by, now(),
             new.consent, json.dumps(new.inspection or {}), *(new.norms or (None, None, None)),
             name_skeleton(new.name)))
        voice_id = int(cur.lastrowid or 0)
        if new.audio is not None:
            digest = self._put_blob(conn, new.audio, AUDIO_SUFFIX, "audio")
            conn.execute("INSERT INTO voice_files (voice_id, role, variant, blob) VALUES (?, 'audio', '', ?)",
                         (voice_id, digest))
        for v, (data, fp) in new.voice_files.items():
            digest = self._put_blob(conn, data, VOICE_SUFFIX, "voice")
            conn.execute("INSERT INTO voice_files (voice_id, role, variant, blob, weights_fingerprint) "
                         "VALUES (?, 'conditionals', ?, ?, ?)", (voice_id, v, digest, fp))
        conn.executemany("INSERT INTO tags (voice_id, tag) VALUES (?, ?)", [(voice_id, t) for t in new.tags])
        if not details:
            return voice_id
        return self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (voice_id,)).fetchone())

    def store_cache(self, voice_id: int, name: str, variant: str, data: bytes, fingerprint: str) -> None:
        """Cache extracted conditionals of an ``audio`` voice (replacing an older cache of that variant).

        The cache is an optimisation: a failure is logged, never raised.
        """
        dropped: builtins.list[str] = []
        try:
            with self._write() as conn:
                row = conn.execute("SELECT 1 FROM voices WHERE id = ? AND name = ?", (voice_id, nfc(name))).fetchone()
                if row is None:
                    return  # removed or renamed meanwhile: nothing to cache
                old = conn.execute("SELECT blob FROM voice_files WHERE voice_id = ? AND role = 'cache' AND variant = ?",
                                   (voice_id, variant)).fetchone()
                if old is not None:
                    dropped.append(old[0])
                    conn.execute("DELETE FROM voice_files WHERE voice_id = ? AND role = 'cache' AND variant = ?",
                                 (voice_id, variant))
                digest = self._put_blob(conn, data, VOICE_SUFFIX, "voice")
                conn.execute("INSERT INTO voice_files (voice_id, role, variant, blob, weights_fingerprint) "
                             "VALUES (?, 'cache', ?, ?, ?)", (voice_id, variant, digest, fingerprint))
                dropped = self._drop_unreferenced(conn, dropped)
        except (CatalogueError, OSError) as e:
            log.warning("%s: could not cache the extracted conditionals (%s)", name, e)
            return
        self._unlink_dropped(dropped)

    def remove(self, name: str) -> builtins.list[str]:
        """Delete voice ``name``; its files go when no other voice uses them.  Returns the voices that had it as
        their base."""
        with self._write() as conn:
            row = self._row(conn, name)
            blobs = [r[0] for r in conn.execute("SELECT blob FROM voice_files WHERE voice_id = ?", (row["id"],))]
            dependents = [r[0] for r in conn.execute("SELECT name FROM voices WHERE base_id = ?", (row["id"],))]
            conn.execute("DELETE FROM voices WHERE id = ?", (row["id"],))
            dropped = self._drop_unreferenced(conn, blobs)
        self._unlink_dropped(dropped)
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
        dropped = list(dropped)
        if not dropped:
            return
        try:
            with self._write() as conn:
                for digest in dropped:
                    if conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (digest,)).fetchone() is None:
                        for suffix in (AUDIO_SUFFIX, VOICE_SUFFIX):
                            self.blobs.unlink(digest, suffix)
        except (CatalogueError, OSError) as e:  # leftovers are harmless: check() removes them
            log.warning("could not delete unused files now (%s); `voicebank library check` removes them", e)

    def rename(self, old: str, new: str) -> VoiceInfo:
        """Rename a voice.  Raises :class:`~voicebank.errors.VoiceExistsError` when ``new`` is taken."""
        with self._write() as conn:
            row = self._row(conn, old)
            new = nfc(new)
            taken = conn.execute("SELECT 1 FROM voices WHERE name = ?", (new,)).fetchone() is not None
            if row["name"] != new and taken:
                raise VoiceExistsError(f"cannot rename {old!r}: a voice named {new!r} is already in the library")
            self._refuse_lookalike(conn, new, f"cannot rename {old!r}", but=row["name"])
            conn.execute("UPDATE voices SET name = ?, skeleton = ? WHERE id = ?", (new, name_skeleton(new), row["id"]))
            return self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (row["id"],)).fetchone())

    def update(self, name: str, *, tags: Sequence[str] | None = None, consent: str | None = None,
               base: str | None = None, exaggeration: float | None = None) -> VoiceInfo:
        """Replace a voice's tags, consent note, base voice (embedding mode) or default exaggeration."""
        with self._write() as conn:
            row = self._row(conn, name)
            if tags is not None:
                conn.execute("DELETE FROM tags WHERE voice_id = ?", (row["id"],))
                conn.executemany("INSERT INTO tags (voice_id, tag) VALUES (?, ?)", [(row["id"], t) for t in tags])
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
                conn.execute("UPDATE voices SET exaggeration = ? WHERE id = ?", (float(exaggeration), row["id"]))
            return self._info(conn, conn.execute("SELECT * FROM voices WHERE id = ?", (row["id"],)).fetchone())

    def replace_extraction(self, voice_id: int, name: str, *, speaker_emb: np.ndarray | None, xvector: np.ndarray,
                           fingerprint: str, voice_files: dict[str, tuple[bytes, str]],
                           drop_cache: bool = True) -> None:
        """Replace a voice's vectors and stored voice files (re-extraction) in one transaction."""
        with self._write() as conn:
            row = self._row(conn, name)
            if row["id"] != voice_id:
                raise VoiceNotFoundError(f"voice {name!r} was replaced while re-extracting; run it again")
            old = [r[0] for r in conn.execute("SELECT blob FROM voice_files WHERE voice_id = ? AND role != 'audio'",
                                              (voice_id,))]
            conn.execute("UPDATE voices SET speaker_emb = ?, xvector = ?, weights_fingerprint = ? WHERE id = ?",
                         (vec_bytes(speaker_emb), vec_bytes(xvector), fingerprint, voice_id))
            if drop_cache:
                conn.execute("DELETE FROM voice_files WHERE voice_id = ? AND role = 'cache'", (voice_id,))
            for v, (data, fp) in voice_files.items():
                digest = self._put_blob(conn, data, VOICE_SUFFIX, "voice", rewrite=True)
                conn.execute("INSERT OR REPLACE INTO voice_files (voice_id, role, variant, blob, weights_fingerprint) "
                             "VALUES (?, 'conditionals', ?, ?, ?)", (voice_id, v, digest, fp))
            dropped = self._drop_unreferenced(conn, old)
        self._unlink_dropped(dropped)

    def drop_file(self, voice_id: int, role: str, variant: str) -> None:
        """Forget one of a voice's files (and delete it when nothing else uses it)."""
        with self._write() as conn:
            row = conn.execute("SELECT blob FROM voice_files WHERE voice_id = ? AND role = ? AND variant = ?",
                               (voice_id, role, variant)).fetchone()
            if row is None:
                return
            conn.execute("DELETE FROM voice_files WHERE voice_id = ? AND role = ? AND variant = ?",
                         (voice_id, role, variant))
            dropped = self._drop_unreferenced(conn, [row[0]])
        self._unlink_dropped(dropped)

__all__ = ["AUDIO_SUFFIX", "VOICE_SUFFIX", "VoiceStore", "now", "vec", "vec_bytes"]
