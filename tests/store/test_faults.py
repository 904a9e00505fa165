"""Generated library faults: damaged catalogues, bad rows, full and read-only file systems, stray files.

Every case asserts a typed error (API) or one clear line and a non-zero exit (CLI), no traceback, no content
file lost, nothing left behind, and -- once the fault is undone -- a library that still checks clean.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from voicebank import errors
from voicebank.library import Library
from voicebank.store.catalogue import CATALOGUE_NAME

from faults import (
    OTHER_VOICE_FILE,
    VOICE_FILE,
    FakeEngine,
    assert_nothing_lost,
    assert_one_line_error,
    blobs,
    build_library,
    clip,
    fill,
    needs_mount,
    run_cli,
    tmpfs,
    tree,
)


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)
    monkeypatch.delenv("VOICEBANK_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "lib"
    build_library(root)
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    dst = tmp_path / "lib"
    shutil.copytree(pristine, dst)
    return dst


@pytest.fixture
def built(where, pristine):
    """``where`` holding alice, bob and carol (a copy of ``pristine`` for a directory)."""
    if where.shared:
        build_library(where.catalogue, blobs=where.blobs)
    else:
        shutil.copytree(pristine, where.root)
    return where


def sql(root: Path, *statements: str) -> None:
    conn = sqlite3.connect(root / CATALOGUE_NAME)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    for s in statements:
        conn.execute(s)
    conn.commit()
    conn.close()


def cut(n: int | None = None, *, fraction: float | None = None) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / CATALOGUE_NAME
        size = path.stat().st_size
        keep = size - n if n is not None else int(size * (fraction or 0))
        with open(path, "r+b") as f:
            f.truncate(keep)

    return damage


# --- damage to the catalogue file: every command refuses, nothing is created over it or deleted -----------

FILE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "emptied": cut(fraction=0.0),
    "cut-by-one-byte": cut(1),
    "cut-by-a-page": cut(4096),
    "cut-in-half": cut(fraction=0.5),
    "cut-to-50-bytes": lambda r: cut(r.joinpath(CATALOGUE_NAME).stat().st_size - 50)(r),
    "deleted": lambda r: (r / CATALOGUE_NAME).unlink(),
    "not-a-database": lambda r: (r / CATALOGUE_NAME).write_bytes(b"SQLite format 2\0" + b"\x17" * 8000),
    "a-directory": lambda r: ((r / CATALOGUE_NAME).unlink(), (r / CATALOGUE_NAME).mkdir()),
    "dropped-voices": lambda r: sql(r, "DROP TABLE voices"),
    "dropped-voice_files": lambda r: sql(r, "DROP TABLE voice_files"),
    "dropped-blobs": lambda r: sql(r, "DROP TABLE blobs"),
    "dropped-tags": lambda r: sql(r, "DROP TABLE tags"),
    "dropped-column": lambda r: sql(r, "ALTER TABLE voices DROP COLUMN consent"),
    "negative-schema-version": lambda r: sql(r, "PRAGMA user_version = -3"),
    "reset-schema-version": lambda r: sql(r, "PRAGMA user_version = 0"),
}

COMMANDS = [["list"], ["show", "alice"], ["add", "CLIP", "--name", "dave"], ["export", "alice", "-o", "OUT.npy"],
            ["rm", "bob"], ["rename", "bob", "robert"], ["import", str(OTHER_VOICE_FILE), "--name", "erin"],
            ["library", "check"], ["library", "check", "--delete-orphans"], ["library", "stale"]]


def fill_in(args: list[str], root: Path, tmp_path: Path) -> list[str]:
    out = []
    for a in args:
        if a == "CLIP":
            import soundfile as sf

            from audio_fixtures import speechlike

            path = tmp_path / "dave.wav"
            sf.write(path, speechlike(2.0, 16000, seed=9), 16000)
            a = str(path)
        elif a == "OUT.npy":
            a = str(tmp_path / "out" / "alice.npy")
        out.append(a)
    weights = ["--weights", str(tmp_path / "no-weights")] if args[0] in ("add", "export", "library") else []
    parents = ["--parents"] if args[0] == "export" else []  # OUT's missing directory is not the error here
    return [*out, "--library", str(root), *weights, *parents]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[:2]))
@pytest.mark.parametrize("damage", sorted(FILE_DAMAGE))
def test_a_damaged_catalogue_is_refused_by_every_command(root, tmp_path, capsys, damage, command):
    # directory only: the catalogue file's damage and its tree (the shared damaged tables: the API test below)
    FILE_DAMAGE[damage](root)
    before_blobs, before_tree = blobs(root), tree(root)
    rc, out, err = run_cli(capsys, fill_in(command, root, tmp_path))
    assert_one_line_error(rc, err, "catalogue", "damaged", "voicebank library check")
    assert "consistent" not in out
    assert_nothing_lost(root, before_blobs)
    after = tree(root)
    # the catalogue is neither recreated nor rewritten, and nothing else changes
    assert {k: v for k, v in after.items() if not k.startswith(CATALOGUE_NAME + "-")} == \
        {k: v for k, v in before_tree.items() if not k.startswith(CATALOGUE_NAME + "-")}
    assert not (tmp_path / "out").exists()


SQL_DAMAGE: dict[str, str] = {
    "dropped-voices": "DROP TABLE voices CASCADE",
    "dropped-voice_files": "DROP TABLE voice_files CASCADE",
    "dropped-blobs": "DROP TABLE blobs CASCADE",
    "dropped-tags": "DROP TABLE tags CASCADE",
    "dropped-column": "ALTER TABLE voices DROP COLUMN consent",
    "negative-schema-version": "UPDATE voicebank_meta SET version = -3",
    "reset-schema-version": "UPDATE voicebank_meta SET version = 0",
}
"""The damage of :data:`FILE_DAMAGE` that a shared catalogue can suffer too, in PostgreSQL."""


@pytest.mark.parametrize("damage", sorted(set(FILE_DAMAGE) - set(SQL_DAMAGE)))
def test_api_raises_catalogue_damaged_and_deletes_nothing(root, damage):  # directory only: damage to the file
    FILE_DAMAGE[damage](root)
    before = blobs(root)
    with pytest.raises(errors.CatalogueDamagedError, match=r"is damaged: .*voicebank library check"):
        with Library(root, engine=FakeEngine()) as lib:
            lib.list()
            lib.check(repair=True, delete_orphans=True)
    assert_nothing_lost(root, before)


@pytest.mark.parametrize("damage", sorted(SQL_DAMAGE))
def test_api_raises_catalogue_damaged_on_damaged_tables_and_deletes_nothing(built, damage):
    built.sql(SQL_DAMAGE[damage]) if built.shared else FILE_DAMAGE[damage](built.root)
    before = built.list_objects()
    with pytest.raises(errors.CatalogueDamagedError, match=r"is damaged: .*voicebank library check"):
        with built.library(engine=FakeEngine()) as lib:
            lib.list()
            lib.check(repair=True, delete_orphans=True)
    built.assert_nothing_lost(before)


# --- one bad row: library-wide commands report it and go on -------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """Damage a shared catalogue cannot suffer: PostgreSQL's types or constraints refuse ``sql`` with ``error`` (a
    ``psycopg.errors`` class name) where SQLite, its CHECKs ignored and its types loose, takes it."""

    sql: str
    error: str


def damage_catalogue(where, sqlite: str, postgres: str | Refused | None = None) -> bool:
    """Run ``sqlite`` (a directory) or ``postgres`` (a shared library; ``None``: the same SQL) behind the store's
    back; ``False`` when the damage is :class:`Refused` -- asserted refused, and the library left as it was."""
    statement = postgres if where.shared and postgres is not None else sqlite
    if not isinstance(statement, Refused):
        where.sql(statement)
        return True
    import psycopg

    before = where.list_objects()
    with pytest.raises(getattr(psycopg.errors, statement.error)):
        where.sql(statement.sql)
    with where.library(engine=FakeEngine()) as lib:
        assert lib.check().ok and lib.names() == ["alice", "bob", "carol"]
    where.assert_nothing_lost(before)
    return False


ROW_DAMAGE: dict[str, str] = {
    "invalid-mode": "UPDATE voices SET mode = 'bogus' WHERE name = 'bob'",
    "invalid-json-provenance": "UPDATE voices SET provenance = '{not json' WHERE name = 'bob'",
    "json-not-an-object": "UPDATE voices SET inspection = '[1, 2]' WHERE name = 'bob'",
    "path-like-variant": "UPDATE voices SET variant = '../../etc/passwd' WHERE name = 'bob'",
    "infinite-duration": "UPDATE voices SET duration = 1e999 WHERE name = 'bob'",
    "absurd-sample-rate": "UPDATE voices SET sample_rate = -5 WHERE name = 'bob'",
    "text-sample-rate": "UPDATE voices SET sample_rate = 'fast' WHERE name = 'bob'",
    "unknown-file-variant": "UPDATE voice_files SET variant = 'klingon' WHERE voice_id = "
                            "(SELECT id FROM voices WHERE name = 'bob')",
}
ROW_DAMAGE_PG: dict[str, str | Refused] = {
    "invalid-mode": Refused(ROW_DAMAGE["invalid-mode"], "CheckViolation"),  # a CHECK PostgreSQL always enforces
    "infinite-duration": "UPDATE voices SET duration = 'Infinity' WHERE name = 'bob'",  # 1e999: out of range
    "text-sample-rate": Refused(ROW_DAMAGE["text-sample-rate"], "InvalidTextRepresentation"),  # a BIGINT column
}
"""The shared catalogue's SQL where it differs from :data:`ROW_DAMAGE`'s (a TEXT JSON column takes any text)."""


@pytest.mark.parametrize("damage", sorted(ROW_DAMAGE))
def test_one_bad_row_is_reported_and_the_rest_still_work(built, capsys, damage):
    if not damage_catalogue(built, ROW_DAMAGE[damage], ROW_DAMAGE_PG.get(damage)):
        return
    before = built.list_objects()
    rc, out, err = run_cli(capsys, built.cli("list"))
    assert rc == 0 and "alice" in out and "carol" in out and "bob" in err and "warning" in err
    rc, out, err = run_cli(capsys, built.cli("list", "--json"))
    assert rc == 0 and "alice" in out
    rc, out, err = run_cli(capsys, built.cli("show", "bob"))
    assert_one_line_error(rc, err, "catalogue", "damaged", "bob")
    rc, out, err = run_cli(capsys, built.cli("show", "alice"))
    assert rc == 0 and out.startswith("alice")
    rc, out, err = run_cli(capsys, built.cli("library", "check", "--delete-orphans"))
    assert rc == 1 and "bob" in out and "library is consistent" not in out
    with built.library(engine=FakeEngine()) as lib:
        assert [s.name for s in lib.stale()] == []  # the other voices were looked at, bob skipped
        assert sorted(v.name for v in lib.list()) == ["alice", "carol"]
        report = lib.check(delete_orphans=True)
        assert not report.ok and [p.voice for p in report.problems] == ["bob"]
    built.assert_nothing_lost(before)
    # bob can be removed; then the library checks clean and nothing of the others was lost
    rc, out, err = run_cli(capsys, built.cli("rm", "bob"))
    assert rc == 0
    with built.library(engine=FakeEngine()) as lib:
        assert lib.check().ok and lib.names() == ["alice", "carol"]
        assert lib.get("carol").gen.prompt_feat.shape[1] > 0


VECTOR_DAMAGE: dict[str, str] = {
    "two-bytes": "x'0000'",
    "odd-length": "zeroblob(1023)",
    "one-float-too-many": "zeroblob(1028)",
    "text": "'not a vector'",
    "integer": "42",
    "empty": "x''",
}
VECTOR_DAMAGE_PG: dict[str, str | Refused] = {
    "two-bytes": "'\\x0000'::bytea",
    "odd-length": "decode(repeat('00', 1023), 'hex')",
    "one-float-too-many": "decode(repeat('00', 1028), 'hex')",
    "text": Refused("'not a vector'::text", "DatatypeMismatch"),  # a BYTEA column takes no text, no integer
    "integer": Refused("42", "DatatypeMismatch"),
    "empty": "'\\x'::bytea",
}
""":data:`VECTOR_DAMAGE` in PostgreSQL (a :class:`Refused`'s ``sql`` is the value here)."""


@pytest.mark.parametrize("column", ["speaker_emb", "xvector"])
@pytest.mark.parametrize("damage", sorted(VECTOR_DAMAGE))
def test_a_malformed_stored_vector_is_a_problem_of_that_voice_only(built, capsys, damage, column):
    statement, pg = f"UPDATE voices SET {column} = {{}} WHERE name = 'bob'", VECTOR_DAMAGE_PG[damage]
    postgres = Refused(statement.format(pg.sql), pg.error) if isinstance(pg, Refused) else statement.format(pg)
    if not damage_catalogue(built, statement.format(VECTOR_DAMAGE[damage]), postgres):
        return
    before = built.list_objects()
    for args in (["list"], ["search", "alice"], ["compare", "alice", "carol"], ["show", "bob"], ["library", "stale"]):
        rc, out, err = run_cli(capsys, built.cli(*args))
        assert rc == 0 and "unexpected" not in err and "Traceback" not in err, (args, err)
    rc, out, err = run_cli(capsys, built.cli("library", "check"))
    assert rc == 1 and "bob" in out and "malformed" in out, out
    with built.library(engine=FakeEngine()) as lib:
        assert sorted(v.name for v in lib.list()) == ["alice", "bob", "carol"]
        assert [p.voice for p in lib.check().problems] == ["bob"]
    built.assert_nothing_lost(before)


@pytest.mark.parametrize("raw", ["\x1b]0;pwned\x07", "\x1b[2J", "\u202e", "\x9b31m", "\x08\x08"])
def test_names_from_a_tampered_catalogue_are_printed_escaped(built, capsys, raw):
    built.sql(f"UPDATE voices SET name = 'bob{raw}' WHERE name = 'bob'")
    assert f"bob{raw}" in [r[0] for r in built.sql("SELECT name FROM voices")]
    for args in (["list"], ["search", "alice"], ["search", "alice", "--json"], ["compare", "alice", "carol"],
                 ["library", "check"], ["blend", "alice", "carol", "--name", "mix"]):
        _rc, out, err = run_cli(capsys, built.cli(*args))
        bad = [c for c in out + err if c != "\n" and unicodedata.category(c)[0] == "C"]
        assert not bad, (args, bad, out, err)


# --- check never deletes content files unless asked ---------------------------------------------------------


def test_check_and_repair_keep_unreferenced_files_unless_asked(built, capsys):
    orphan = built.put_stray("ab/ab" + "0" * 62 + ".wav", b"not referenced")
    for args in (["library", "check"], ["library", "check", "--repair"]):
        rc, out, _err = run_cli(capsys, built.cli(*args))
        assert rc == 0 and built.has_object(orphan) and "unreferenced file kept" in out and "--delete-orphans" in out
    rc, out, _err = run_cli(capsys, built.cli("library", "check", "--delete-orphans"))
    assert rc == 0 and not built.has_object(orphan) and "removed unreferenced file" in out


def test_a_lost_catalogue_is_not_replaced_by_an_empty_one(built, capsys):
    built.lose_catalogue()
    before = built.list_objects()
    for args in (["list"], ["library", "check", "--delete-orphans"]):
        rc, _out, err = run_cli(capsys, built.cli(*args))
        assert_one_line_error(rc, err, "missing while the library holds", "voicebank library check")
    assert not built.catalogue_exists()
    built.assert_nothing_lost(before)


@pytest.mark.parametrize("damage", sorted(FILE_DAMAGE))
def test_repair_rebuilds_a_damaged_catalogue_from_the_content_files(root, capsys, damage):
    # directory only: a shared catalogue is restored from a database backup, never rebuilt from its objects
    from voicebank.voice.voice import Voice

    FILE_DAMAGE[damage](root)
    before = blobs(root)
    rc, out, err = run_cli(capsys, ["library", "check", "--repair", "--library", root])
    assert rc == 0, err
    assert "set aside" in out and out.count("recovered: ") == 3, out
    assert_nothing_lost(root, before)
    kept = [p for p in root.iterdir() if p.name.startswith(CATALOGUE_NAME + ".damaged-")]
    assert kept or damage == "deleted"  # the damaged catalogue is kept for inspection, never deleted
    with Library(root, engine=FakeEngine()) as lib:
        report = lib.check()
        assert report.ok and len(lib) == 3 and not report.unreferenced
        conditionals = [v for v in lib.list() if v.mode == "conditionals"]
        assert len(conditionals) == 1 and len([v for v in lib.list() if v.mode == "audio"]) == 2
        got = lib.get(conditionals[0].name)
        assert got.gen.prompt_feat.equal(Voice.load(VOICE_FILE).gen.prompt_feat)
        if damage in ("cut-by-one-byte", "dropped-tags", "dropped-column"):  # the names could be salvaged
            assert sorted(lib.names()) == ["alice", "bob", "carol"]


def test_a_new_library_still_starts_empty(where):
    with where.library(engine=FakeEngine()) as lib:
        assert lib.names() == [] and lib.check().ok


def test_an_empty_catalogue_file_is_a_new_library(tmp_path):  # directory only: a SQLite file
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / CATALOGUE_NAME).write_bytes(b"")  # a creation interrupted before the first byte
    with Library(tmp_path / "empty", engine=FakeEngine()) as lib:
        assert lib.names() == []


# --- directory faults ------------------------------------------------------------------------------------


def audio_file(where, name: str = "alice"):
    with where.library(engine=FakeEngine()) as lib:
        return next(f for f in lib.show(name).files if f.role == "audio")


def assert_a_blob_fault_is_typed(where, tmp_path, capsys, *, missing: bool) -> None:
    """Export and get fail naming the voice and the repair, check lists it, and the other voices still work."""
    out_file = tmp_path / "out.wav"
    rc, out, err = run_cli(capsys, where.cli("export", "alice", "-o", out_file))
    assert_one_line_error(rc, err, "alice", "voicebank library check --repair")
    assert "system error" not in err.lower() and not out_file.exists()
    out_file = tmp_path / "out.safetensors"
    rc, out, err = run_cli(capsys, where.cli("export", "alice", "-o", out_file, "--weights", tmp_path / "nw"))
    assert_one_line_error(rc, err, "alice", "voicebank library check --repair")
    assert "system error" not in err.lower() and not out_file.exists()
    with where.library(engine=FakeEngine()) as lib, pytest.raises(errors.LibraryError, match="check --repair") as e:
        lib.get("alice")
    if missing or not where.shared:  # the service answers voice_content_missing (an object store's read verifies
        assert isinstance(e.value, errors.ContentMissingError) == missing  # its sha256: damaged is missing there)
    rc, out, err = run_cli(capsys, where.cli("library", "check"))
    assert rc == 1 and "alice" in out
    for args in (["rename", "bob", "robert"], ["rm", "robert"], ["import", OTHER_VOICE_FILE, "--name", "erin"]):
        rc, out, err = run_cli(capsys, where.cli(*args))
        assert rc == 0, err
    rc, out, err = run_cli(capsys, where.cli("rm", "alice"))
    assert rc == 0 or "voicebank: error:" in err


@pytest.mark.parametrize("fault", ["blob-missing", "blob-garbage", "blob-empty"])
def test_blob_faults_are_typed_and_point_to_repair(built, tmp_path, capsys, fault):
    f = audio_file(built)
    if fault == "blob-missing":
        built.delete_object(f.sha256, f.path.suffix)
    else:
        built.put_object(f.sha256, f.path.suffix, b"" if fault == "blob-empty" else b"\x00garbage" * 100)
    assert_a_blob_fault_is_typed(built, tmp_path, capsys, missing=fault == "blob-missing")
    if fault != "blob-missing" and any(f.sha256 in name for name in built.list_objects()):
        built.delete_object(f.sha256, f.path.suffix)
    with built.library(engine=FakeEngine()) as lib:
        lib.remove("alice") if "alice" in lib else None
        assert lib.check().ok and lib.names() == ["carol", "erin"]


@pytest.mark.parametrize("fault", ["blob-is-a-directory", "blob-dir-is-a-file"])
def test_blob_path_faults_are_typed_and_point_to_repair(root, tmp_path, capsys, fault):
    # directory only: an object store has no directories to stand where a file belongs
    from store_backends import Location

    where = Location(str(root), None)
    path = audio_file(where).path
    if fault == "blob-is-a-directory":
        path.unlink()
        path.mkdir()
    else:
        shutil.rmtree(path.parent)
        path.parent.write_bytes(b"stray")
    assert_a_blob_fault_is_typed(where, tmp_path, capsys, missing=True)
    if path.parent.is_file() or path.is_dir():
        shutil.rmtree(path) if path.is_dir() else path.parent.unlink()
    with Library(root, engine=FakeEngine()) as lib:
        lib.remove("alice") if "alice" in lib else None
        assert lib.check().ok and lib.names() == ["carol", "erin"]


def test_add_refuses_a_blob_path_taken_by_a_directory_and_leaves_nothing(tmp_path):  # directory only: see above
    from voicebank.audio import Clip
    from voicebank.audio.decode import wav_bytes
    from voicebank.store.blobs import sha256_bytes

    root = tmp_path / "lib"
    build_library(root)
    c = Clip.read(clip(5))
    target = root / "blobs" / sha256_bytes(wav_bytes(c.samples, c.sample_rate))[:2]
    target.mkdir(exist_ok=True)
    (target / (sha256_bytes(wav_bytes(c.samples, c.sample_rate)) + ".wav")).mkdir()
    before = blobs(root)
    with Library(root, engine=FakeEngine()) as lib, pytest.raises(errors.LibraryWriteError, match="directory"):
        lib.add(c, name="eve")
    assert_nothing_lost(root, before)
    with Library(root, engine=FakeEngine()) as lib:
        assert "eve" not in lib and lib.names() == ["alice", "bob", "carol"]


def test_a_stray_file_where_tmp_belongs_is_a_typed_error(root, capsys):  # directory only: tmp/ is the directory's
    shutil.rmtree(root / "tmp")
    (root / "tmp").write_bytes(b"stray")
    rc, _out, err = run_cli(capsys, ["import", VOICE_FILE, "--name", "erin", "--library", root])
    assert_one_line_error(rc, err, str(root))
    (root / "tmp").unlink()
    with Library(root, engine=FakeEngine()) as lib:
        assert lib.check().ok and lib.names() == ["alice", "bob", "carol"]


# --- real small and read-only file systems -----------------------------------------------------------------


@needs_mount
@pytest.mark.parametrize("leave", [0, 4096, 40_000, 120_000])
@pytest.mark.parametrize("what", ["add", "add-conditionals-file", "import"])
def test_full_disk_add_and_import_fail_cleanly(tmp_path, capsys, what, leave):  # directory only: a real tmpfs
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        root = mnt / "lib"
        build_library(root)
        lib = Library(root, engine=FakeEngine())
        lib.list()  # the catalogue's -wal and -shm files exist, as in a running service
        fill(mnt, leave)
        before = blobs(root)
        with pytest.raises(errors.LibraryError, match="full"):
            if what == "add":
                lib.add(clip(7, seconds=4.0), name="dave")  # a 256 kB kept WAV
            elif what == "import":
                lib.import_file(OTHER_VOICE_FILE, "dave")
            else:
                rc, _out, err = run_cli(capsys, ["import", OTHER_VOICE_FILE, "--library", root])
                raise errors.LibraryError(assert_one_line_error(rc, err, "full"))
        lib.close()
        assert_nothing_lost(root, before)
        (mnt / "filler").unlink()
        with Library(root, engine=FakeEngine()) as again:
            assert again.check().ok and again.names() == ["alice", "bob", "carol"]


@needs_mount
@pytest.mark.parametrize("fmt", ["npy", "wav", "safetensors", "pt"])
def test_full_disk_export_fails_cleanly(tmp_path, capsys, fmt):  # the export's file system, not the library's
    root = tmp_path / "lib"
    build_library(root)
    with tmpfs(tmp_path / "mnt", "256k") as mnt:
        fill(mnt)
        out = mnt / f"carol.{fmt}"
        name = "carol" if fmt != "wav" else "alice"
        rc, _stdout, err = run_cli(capsys, ["export", name, "-o", out, "--library", root])
        assert_one_line_error(rc, err, "full")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]


def test_a_write_failing_half_way_removes_the_files_it_wrote(built, monkeypatch):
    """Conditionals mode writes the kept audio, then the voice file: the second fails (a full disk; an object
    store refusing the PUT), so the first must go too and the library is as before."""
    import errno

    from voicebank.voice.voice import Voice

    class Extracting(FakeEngine):
        def extract(self, source, variant="english", *, exaggeration=0.5):
            return Voice.load(OTHER_VOICE_FILE)

    calls = []
    before = built.list_objects()
    with built.library(engine=Extracting()) as lib:
        kind = type(lib.store.blobs)
        real = kind.write

        def failing(self, data, suffix):
            calls.append(suffix)
            if len(calls) == 2:
                if built.shared:
                    raise errors.LibraryWriteError(f"cannot write {self!r}: the object store is full (QuotaExceeded)")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, data, suffix)

        monkeypatch.setattr(kind, "write", failing)
        with pytest.raises(errors.LibraryWriteError, match="full"):
            lib.add(clip(11), name="dave", mode="conditionals")
        assert calls == [".wav", ".safetensors"]
        built.assert_nothing_lost(before)
        monkeypatch.setattr(kind, "write", real)
        assert lib.check().ok and "dave" not in lib


@pytest.fixture
def read_only_view(tmp_path):
    """``(writable library, read-only bind mount of it)``, the -wal and -shm files present (a writer holds it)."""
    root = tmp_path / "lib"
    build_library(root)
    holder = Library(root, engine=FakeEngine())
    holder.list()
    view = tmp_path / "ro"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(root), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield root, view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)
        holder.close()


@needs_mount
def test_read_only_library_is_refused_before_any_work(read_only_view, tmp_path, capsys):
    # directory only: a read-only bind mount (the shared read-only role is not written yet)
    root, view = read_only_view
    assert (root / (CATALOGUE_NAME + "-wal")).exists() and (root / (CATALOGUE_NAME + "-shm")).exists()
    before = blobs(root)
    calls = []

    class Counting(FakeEngine):
        def embeddings(self, source, variant="english"):
            calls.append(1)
            return super().embeddings(source, variant)

    with pytest.raises(errors.LibraryError, match="read-only") as e:
        Library(view, engine=Counting()).add(clip(8), name="dave")
    assert "move" not in str(e.value) and not calls  # refused before anything was computed
    for args in (["rm", "bob"], ["rename", "bob", "robert"], ["import", OTHER_VOICE_FILE, "--name", "erin"],
                 ["add", VOICE_FILE.parents[1] / "inputs" / "short_3s_22k.wav"]):
        weights = ["--weights", tmp_path / "none"] if args[0] == "add" else []
        rc, out, err = run_cli(capsys, [*args, "--library", view, *weights])
        text = assert_one_line_error(rc, err)
        assert "read-only" in text and "move" not in text, (args, text)
    # reading still works, and a check that has nothing to change passes
    rc, out, err = run_cli(capsys, ["list", "--library", view])
    assert rc == 0 and "alice" in out
    rc, out, err = run_cli(capsys, ["library", "check", "--delete-orphans", "--library", view])
    assert rc == 0 and "library is consistent" in out
    assert_nothing_lost(root, before)
    with Library(root, engine=FakeEngine()) as again:
        assert again.check().ok and again.names() == ["alice", "bob", "carol"]


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr")
def test_immutable_catalogue_files_are_a_typed_error(root, capsys):  # directory only: file attributes (chattr)
    holder = Library(root, engine=FakeEngine())
    holder.list()
    files = [root / CATALOGUE_NAME, root / (CATALOGUE_NAME + "-wal"), root / (CATALOGUE_NAME + "-shm")]
    done = [f for f in files if f.exists() and subprocess.run(["chattr", "+i", str(f)], capture_output=True)
            .returncode == 0]
    if not done:
        holder.close()
        pytest.skip("chattr +i is not permitted here")
    try:
        before = blobs(root)
        for args in (["rm", "bob"], ["rename", "bob", "robert"], ["import", OTHER_VOICE_FILE, "--name", "erin"]):
            rc, _out, err = run_cli(capsys, [*args, "--library", root])
            text = assert_one_line_error(rc, err)
            assert "read-only" in text or "locked" in text, text
        calls = []

        class Counting(FakeEngine):
            def embeddings(self, source, variant="english"):
                calls.append(1)
                return super().embeddings(source, variant)

        with pytest.raises(errors.LibraryError):
            Library(root, engine=Counting()).add(clip(8), name="dave")
        assert not calls  # refused before anything was computed
        assert_nothing_lost(root, before)
    finally:
        for f in done:
            subprocess.run(["chattr", "-i", str(f)], check=False)
        holder.close()
    with Library(root, engine=FakeEngine()) as again:
        assert again.check().ok and again.names() == ["alice", "bob", "carol"]


def test_a_locked_catalogue_is_reported_before_extracting(built):
    calls = []

    class Counting(FakeEngine):
        def embeddings(self, source, variant="english"):
            calls.append(1)
            return super().embeddings(source, variant)

    with built.write_lock_held():
        lib = built.library(engine=Counting())
        lib.store.catalogue.timeout = 0.2
        lib.store.catalogue.close()
        with pytest.raises(errors.CatalogueError, match="locked"):
            lib.add(clip(9), name="dave")
        assert not calls
    assert lib.add(clip(9), name="dave").status == "added"
    lib.close()
