"""The store tests' two backends behind one object: ``where`` (a fixture, imported by tests/store/conftest.py) is a
new library directory (SQLite and files) or a new shared library (an empty PostgreSQL database and S3 bucket from
cluster_fixtures), with backend-neutral ways to reach behind the store's back: raw SQL on another connection, the
content objects listed, damaged or deleted, the schema version set, a migration added.  Also the voices and
checks the store tests share (``new_voice``, ``objects``, ``assert_consistent``)."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicebank.library import Library
from voicebank.store import VoiceStore
from voicebank.store.catalogue import CATALOGUE_NAME
from voicebank.store.records import NewVoice
from voicebank.store.shared import open_store


@dataclass(frozen=True)
class Location:
    """Where one test's library lives: ``catalogue`` (a directory, or a ``postgresql://`` URL) and ``blobs`` (the
    shared library's ``s3://`` URL; ``None`` for a directory)."""

    catalogue: str
    blobs: str | None

    @property
    def shared(self) -> bool:
        return self.blobs is not None

    @property
    def root(self) -> Path:
        """The library directory (directory backend only)."""
        assert not self.shared, "a shared library has no directory"
        return Path(self.catalogue)

    def open(self) -> VoiceStore:
        return open_store(self.catalogue, blobs=self.blobs)

    def library(self, **kwargs: Any) -> Library:
        return Library(self.catalogue, blobs=self.blobs, **kwargs)

    def cli(self, *args: object) -> list[str]:
        """``voicebank ARGS`` on this library (``--blobs`` goes before the command)."""
        return [*(["--blobs", self.blobs] if self.blobs else []), *map(str, args), "--library", self.catalogue]

    # --- the catalogue behind the store's back -----------------------------------------------------------

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own (another process's, as far as the store can tell), and
        commit; SQLite's CHECK constraints are off for it (damage a writer could never commit)."""
        if self.shared:
            import psycopg

            with psycopg.connect(self.catalogue) as conn:
                cur = conn.execute(statement.replace("?", "%s"), params)
                return list(cur.fetchall()) if cur.description else []
        conn = sqlite3.connect(self.root / CATALOGUE_NAME)
        try:
            conn.execute("PRAGMA ignore_check_constraints = ON")
            rows = list(conn.execute(statement, params))
            conn.commit()
            return rows
        finally:
            conn.close()

    def tables(self) -> set[str]:
        if self.shared:
            return {r[0] for r in self.sql("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = current_schema()")}
        return {r[0] for r in self.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def set_schema_version(self, version: int) -> None:
        """What a newer (or broken) voicebank would leave as the catalogue's schema version."""
        if self.shared:
            self.sql("UPDATE voicebank_meta SET version = ?", (version,))
        else:
            self.sql(f"PRAGMA user_version = {int(version)}")

    def add_migration(self, monkeypatch: pytest.MonkeyPatch, *steps: str) -> None:
        """A next schema version of SQLite ``steps`` (translated for PostgreSQL as the shared catalogue's are)."""
        from voicebank.store import catalogue

        monkeypatch.setattr(catalogue, "MIGRATIONS", [*catalogue.MIGRATIONS, steps])
        if self.shared:
            from voicebank.store import pgcatalogue, pgschema

            translated = [out for step in steps for out in pgschema.postgres(step)]
            monkeypatch.setattr(pgcatalogue, "MIGRATIONS", [*pgcatalogue.MIGRATIONS, translated])

    def catalogue_exists(self) -> bool:
        return bool(self.tables()) if self.shared else (self.root / CATALOGUE_NAME).exists()

    def lose_catalogue(self) -> None:
        """The catalogue lost while the content stays (its file deleted; its database emptied)."""
        if self.shared:
            for table in self.tables():
                self.sql(f"DROP TABLE IF EXISTS {table} CASCADE")
        else:
            (self.root / CATALOGUE_NAME).unlink()

    @contextlib.contextmanager
    def write_lock_held(self) -> Iterator[None]:
        """Another writer holds the catalogue's write lock (an open write transaction) while the block runs."""
        if self.shared:
            import psycopg

            from voicebank.store.pgcatalogue import WRITE_LOCK

            with psycopg.connect(self.catalogue) as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                try:
                    yield
                finally:
                    conn.rollback()
            return
        holder = sqlite3.connect(self.root / CATALOGUE_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    # --- the content files or objects --------------------------------------------------------------------

    def _s3(self) -> Any:
        from voicebank.store.s3blobs import S3BlobStore

        assert self.blobs is not None
        return S3BlobStore(self.blobs)

    def list_objects(self) -> dict[str, str]:
        """``name -> sha256 of its bytes`` of every content file (relative path) or object (key) there is."""
        if self.shared:
            s3 = self._s3()
            out = {}
            for _digest, _suffix, key in s3.files():
                body = s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"]
                out[key] = hashlib.sha256(body.read()).hexdigest()
            return out
        blobs = self.root / "blobs"
        return {p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(blobs.rglob("*")) if p.is_file()} if blobs.is_dir() else {}

    def temp_files(self) -> list[str]:
        """Temp files left behind (an object store has none)."""
        tmp = None if self.shared else self.root / "tmp"
        return [p.name for p in tmp.iterdir()] if tmp is not None and tmp.is_dir() else []

    def assert_nothing_lost(self, before: dict[str, str]) -> None:
        """Every content file or object that was there is there, intact; none appeared; no temp file is left."""
        after = self.list_objects()
        assert after == before, f"content changed: lost {set(before) - set(after)}, new {set(after) - set(before)}"
        assert not self.temp_files(), f"temp files left behind: {self.temp_files()}"

    def _forget_cached(self, sha256: str, suffix: str) -> None:
        """Drop this host's read copy of an object (as if another host read it)."""
        store = self.open()
        try:
            store.blobs.path(sha256, suffix).unlink(missing_ok=True)
        finally:
            store.close()

    def put_object(self, sha256: str, suffix: str, data: bytes) -> None:
        """Write ``data`` where the content of ``sha256`` belongs (damage, or a stray object)."""
        if self.shared:
            s3 = self._s3()
            s3.client.put_object(Bucket=s3.bucket, Key=s3.key(sha256, suffix), Body=data)
            self._forget_cached(sha256, suffix)
            return
        path = self.root / "blobs" / sha256[:2] / f"{sha256}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def put_stray(self, relative: str, data: bytes) -> str:
        """A file or object at ``blobs/<relative>`` that no voice references; returns its name as listed."""
        if self.shared:
            s3 = self._s3()
            key = f"{s3.prefix}blobs/{relative}"
            s3.client.put_object(Bucket=s3.bucket, Key=key, Body=data)
            return key
        path = self.root / "blobs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"blobs/{relative}"

    def has_object(self, name: str) -> bool:
        return name in self.list_objects()

    def delete_object(self, sha256: str, suffix: str) -> None:
        """The content of ``sha256`` lost behind the store's back."""
        if self.shared:
            s3 = self._s3()
            s3.client.delete_object(Bucket=s3.bucket, Key=s3.key(sha256, suffix))
            self._forget_cached(sha256, suffix)
            return
        (self.root / "blobs" / sha256[:2] / f"{sha256}{suffix}").unlink()


@pytest.fixture(params=["directory", "shared"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """Each test runs on a new library directory and on a new shared library (an empty database and bucket)."""
    if request.param == "directory":
        return Location(str(tmp_path / "lib"), None)
    shared = request.getfixturevalue("shared_location")
    return Location(shared.catalogue, shared.blobs)


def new_voice(name: str, seed: int, *, audio_bytes: int = 4000, tags: tuple[str, ...] = ()) -> NewVoice:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal(256).astype(np.float32)
    return NewVoice(name=name, mode="audio", variant="english", exaggeration=0.5, speaker_emb=emb / np.linalg.norm(emb),
                    xvector=rng.standard_normal(192).astype(np.float32), weights_fingerprint="fake",
                    source_sha256=f"{seed:064x}", audio=rng.bytes(audio_bytes), tags=tags)


def objects(store: VoiceStore) -> set[str]:
    """The digests of every content file or object the store holds."""
    return {digest for digest, _, _ in store.blobs.files()}


def assert_consistent(store: VoiceStore) -> None:
    """Every voice's files are there and intact, and nothing is registered that is damaged."""
    _, damage = store.damaged_files()
    assert damage == {}, damage
    for v in store.all_voices():
        for f in v.info.files:
            assert len(store.read_file(f, voice=v.info.name)) == f.size
