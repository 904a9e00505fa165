"""The library's storage layer without models: schema and migrations, blobs, names, paths, inspection.  Tests that
take ``where`` run on a library directory (SQLite and files) and on a shared library (PostgreSQL and S3)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from store_backends import new_voice
from voicebank import errors
from voicebank.library import (
    Library,
    check_name,
    collect_audio,
    default_library_path,
    inspect_reference,
    inspect_samples,
)
from voicebank.store import catalogue
from voicebank.store.blobs import BlobStore, sha256_bytes

from audio_fixtures import GOLDEN_INPUTS, REALSPEECH, speechlike

SR = 16_000


# --- catalogue ---------------------------------------------------------------------------------------


def test_new_library_has_the_schema_and_opens_again(where):
    lib = where.library()
    assert lib.catalogue.user_version() == catalogue.schema_version() == 2
    assert {"voices", "tags", "blobs", "voice_files", "cohorts", "vector_log"} <= where.tables()
    assert len(lib) == 0 and lib.list() == [] and lib.names() == []
    lib.close()
    # opening again is a no-op for the schema
    again = where.library()
    assert again.catalogue.user_version() == 2
    again.close()


def test_new_library_directory_has_wal_and_directories(tmp_path):  # SQLite's pragmas and the directory's folders
    lib = Library(tmp_path / "lib")
    conn = lib.catalogue.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (lib.path / "blobs").is_dir() and (lib.path / "tmp").is_dir()
    lib.close()


def test_migration_runs_once_and_keeps_data(where, monkeypatch):
    lib = where.library()
    with lib.catalogue.write() as conn:
        conn.execute("INSERT INTO voices (name, mode, variant, added_at) VALUES ('kept', 'embedding', 'english', 'x')")
    lib.close()
    where.add_migration(monkeypatch, "ALTER TABLE voices ADD COLUMN rating INTEGER NOT NULL DEFAULT 3")
    lib2 = where.library()
    assert lib2.catalogue.user_version() == 3
    with lib2.catalogue.read() as conn:
        assert [tuple(r) for r in conn.execute("SELECT name, rating FROM voices")] == [("kept", 3)]
    lib2.close()
    lib3 = where.library()
    assert lib3.catalogue.user_version() == 3  # not applied twice (ALTER would fail)
    lib3.close()


def test_catalogue_from_a_newer_voicebank_is_refused(where):
    where.library().close()
    where.set_schema_version(99)
    with pytest.raises(errors.CatalogueError, match=r"schema version 99.*upgrade voicebank"):
        where.library()


def test_damaged_catalogue_is_a_clear_error(tmp_path):  # directory only: a damaged SQLite file
    (tmp_path / catalogue.CATALOGUE_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(errors.CatalogueError, match=r"catalogue\.sqlite3 is damaged: .*; run voicebank library check"):
        Library(tmp_path)


def test_library_path_that_is_a_file(tmp_path):  # directory only: a shared library's location is a URL
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(errors.LibraryError, match="not a directory"):
        Library(f)


def test_the_library_from_the_environment(where, monkeypatch):
    monkeypatch.setenv("VOICEBANK_LIBRARY", where.catalogue)
    if where.blobs is not None:
        monkeypatch.setenv("VOICEBANK_BLOBS", where.blobs)
    else:
        monkeypatch.delenv("VOICEBANK_BLOBS", raising=False)
    lib = Library()
    assert str(lib.path) == where.catalogue and lib.names() == []
    lib.close()


def test_default_path_env_and_platformdirs(tmp_path, monkeypatch):  # the default is a directory
    monkeypatch.setenv("VOICEBANK_LIBRARY", str(tmp_path / "env-lib"))
    assert default_library_path() == tmp_path / "env-lib"
    monkeypatch.delenv("VOICEBANK_LIBRARY")
    from platformdirs import user_data_dir

    assert default_library_path() == type(default_library_path())(user_data_dir("voicebank"))


# --- blobs -------------------------------------------------------------------------------------------


def test_blobs_are_content_addressed_and_verified(where):
    store = where.open()
    blobs = store.blobs
    digest, path = blobs.write(b"hello voice", ".wav")
    assert digest == sha256_bytes(b"hello voice")
    assert blobs.verify(digest, ".wav", 11) is None
    ((listed, suffix, _),) = list(blobs.files())
    assert (listed, suffix) == (digest, ".wav")
    if not where.shared:  # the directory's layout: blobs/<ab>/<sha256><suffix>, written through tmp/
        assert path == where.root / "blobs" / digest[:2] / f"{digest}.wav" and path.read_bytes() == b"hello voice"
        assert list((where.root / "tmp").iterdir()) == []  # the temp file was renamed, not copied
    where.put_object(digest, ".wav", b"hello vOice")
    assert "damaged" in (blobs.verify(digest, ".wav", 11) or "")
    where.put_object(digest, ".wav", b"short")
    assert "bytes, expected 11" in (blobs.verify(digest, ".wav", 11) or "")
    assert blobs.unlink(digest, ".wav") and list(blobs.files()) == []
    if not where.shared:
        assert not path.exists() and not path.parent.exists()
    assert "missing" in (blobs.verify(digest, ".wav") or "")
    assert not blobs.unlink(digest, ".wav")
    store.close()


def test_stale_temp_files_are_those_of_dead_writers(tmp_path):  # directory only: an S3 PUT leaves no temp object
    store = BlobStore(tmp_path)
    store.ensure_dirs()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan = tmp_path / "tmp" / f"{dead.stdout.strip()}.abc.tmp"
    orphan.write_bytes(b"half")
    live = tmp_path / "tmp" / f"{os.getpid()}.def.tmp"
    live.write_bytes(b"being written")
    junk = tmp_path / "tmp" / "nopid.tmp"
    junk.write_bytes(b"?")
    assert store.stale_temp_files() == sorted([orphan, junk])
    old = os.path.getmtime(live) - 2 * 86400
    os.utime(live, (old, old))
    assert live in store.stale_temp_files()


# --- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "  ", " alice", "al/ice", "a\\b", "tab\there", "-rf", "x" * 129, "nul\x00", ".",
                                 ".."])
def test_bad_names_are_refused(bad):
    with pytest.raises(errors.InvalidVoiceNameError):
        check_name(bad)


@pytest.mark.parametrize("good", ["alice", "Alice Smith", "narrator-2", "voix_française", "p240.v2", "语音"])
def test_good_names(good):
    assert check_name(good) == good


def test_collect_audio_expands_directories(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/a.wav", "d/sub/b.flac", "d/notes.txt", "d/.hidden.wav"):
        (tmp_path / rel).write_bytes(b"x")
    explicit = tmp_path / "whatever.bin"
    got = collect_audio([tmp_path / "d", explicit])
    assert got == [tmp_path / "d" / "a.wav", tmp_path / "d" / "sub" / "b.flac", explicit]


# --- inspection --------------------------------------------------------------------------------------


def codes(report, level=None):
    return {f.code for f in report.findings if level is None or f.level == level}


def test_real_references_are_good():
    for path in [*sorted(GOLDEN_INPUTS.iterdir()), *sorted((REALSPEECH / "vctk_librispeech_mp3").glob("*.mp3"))]:
        report = inspect_reference(path)
        assert report.usable and not report.warnings, (path.name, report.findings)
        assert report.loudness_lufs is not None and -50 < report.loudness_lufs < -10
        assert report.snr_db is not None and report.snr_db > 15
        assert 0 < report.peak <= 1 and report.clipped_fraction == 0
    long = inspect_reference(GOLDEN_INPUTS / "long_22s.flac")
    assert codes(long, "info") == {"beyond_gen_window"} and long.duration == pytest.approx(22.75)
    stereo = inspect_reference(GOLDEN_INPUTS / "stereo_44k1.wav")
    assert stereo.channels == 2 and stereo.sample_rate == 44_100 and "mixed_to_mono" in codes(stereo, "info")
    short = inspect_reference(GOLDEN_INPUTS / "p240_24k.mp3")
    assert "turbo_too_short" in codes(short, "info")
    assert "too_short_for_turbo" in codes(inspect_reference(GOLDEN_INPUTS / "p240_24k.mp3", variants=["turbo"]),
                                          "error")


def test_poor_references_warn():
    clean = speechlike(4.0, SR, seed=1)
    assert not inspect_samples(clean, SR).warnings
    rng = np.random.default_rng(0)
    cases = {
        "clipped": np.clip(clean * 8, -1, 1),
        "over_full_scale": clean * 3,
        "quiet": clean * 10 ** (-30 / 20),
        "noisy": clean + 0.1 * rng.standard_normal(clean.shape[0]).astype(np.float32),
        "leading_silence": np.concatenate([np.zeros(3 * SR, np.float32), clean]),
        "trailing_silence": np.concatenate([clean, np.zeros(3 * SR, np.float32)]),
        "short": clean[: int(1.2 * SR)],
        "little_speech": np.concatenate([np.zeros(SR, np.float32), clean[: SR // 2], np.zeros(SR, np.float32)]),
    }
    for code, wav in cases.items():
        report = inspect_samples(wav.astype(np.float32), SR)
        assert report.usable, (code, report.findings)
        assert code in codes(report, "warning"), (code, report.findings)
    narrow = inspect_samples(speechlike(4.0, 8000, seed=2), 8000)
    assert "low_sample_rate" in codes(narrow, "warning")


def test_unusable_references_are_errors():
    assert "silent" in codes(inspect_samples(np.zeros(3 * SR, np.float32), SR), "error")
    assert "silent" in codes(inspect_samples(np.full(3 * SR, 1e-6, np.float32), SR), "error")
    assert "too_short" in codes(inspect_samples(speechlike(0.3, SR), SR), "error")
    nan = speechlike(2.0, SR)
    nan[100] = np.nan
    assert codes(inspect_samples(nan, SR), "error") == {"non_finite"}
    assert codes(inspect_samples(np.zeros(0, np.float32), SR), "error") == {"empty"}
    report = inspect_samples(speechlike(4.0, SR), SR, variants=("english", "turbo"))
    assert "too_short_for_turbo" in codes(report, "error") and not report.usable
    d = report.to_dict()
    assert d["findings"][0]["level"] == "error" and d["duration"] == 4.0 and "peak_dbfs" in d


def test_inspect_reference_raises_only_for_undecodable_files(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(errors.AudioDecodeError):
        inspect_reference(bad)
    with pytest.raises(errors.AudioNotFoundError):
        inspect_reference(tmp_path / "missing.wav")


def test_gen_reference_seconds_matches_the_extractor():
    from voicebank.audio.inspection import GEN_REFERENCE_SECONDS as INSPECTION_GEN
    from voicebank.chatterbox import GEN_REFERENCE_SECONDS

    assert INSPECTION_GEN == GEN_REFERENCE_SECONDS


def test_generation_changes_with_every_commit_from_anywhere(where):
    store = where.open()
    g0 = store.generation()
    assert store.generation() == g0  # reading changes nothing
    with store.catalogue.write() as conn:  # this object's own write
        conn.execute("UPDATE voices SET consent = consent")
    g1 = store.generation()
    assert g1 != g0
    other = where.open()  # another connection (and pool), as another process or host would be
    other.insert(new_voice("elsewhere", 1))
    other.close()
    g2 = store.generation()
    assert g2 != g1
    if not where.shared:  # SQLite counts any commit by any connection (PRAGMA data_version), each connection anew
        raw = sqlite3.connect(where.root / catalogue.CATALOGUE_NAME)
        raw.execute("CREATE TABLE scratch (x)")
        raw.commit()
        raw.close()
        g3 = store.generation()
        assert g3 != g2
        store.close()  # a new connection afterwards never hands back an old token
        assert store.generation() != g3
    store.close()


def test_a_refusal_leaves_no_read_open_on_the_connection(where):
    """A refusal raised while a query was being read (the look-alike scan) must not leave that statement
    pending: while the exception lives (kept by a caller, a log, a traceback), SQLite would keep the
    connection's read snapshot and this thread would not see later commits from anywhere."""
    store = where.open()
    with store.catalogue.write() as conn:
        for name in ("alice", "bob", "carol"):
            conn.execute("INSERT INTO voices (name, mode, variant, added_at, skeleton) "
                         "VALUES (?, 'embedding', 'english', 'x', ?)", (name, name))
    with pytest.raises(errors.VoiceExistsError) as kept:
        store.refuse_taken("\u0430lice", None, "upload")  # a Cyrillic a: looks like "alice"
    where.sql("INSERT INTO voices (name, mode, variant, added_at) VALUES ('dave', 'embedding', 'english', 'x')")
    assert "dave" in [i.name for i in store.list()], kept.value
    store.close()


def test_a_new_catalogue_uses_large_pages(tmp_path):  # directory only: SQLite's page size
    """A voice's row is about 2 kB: on SQLite's default 4 kB pages it would take one page alone."""
    import sqlite3

    from voicebank.store.catalogue import CATALOGUE_NAME, PAGE_SIZE
    from voicebank.store.store import VoiceStore

    VoiceStore(tmp_path / "lib").close()
    conn = sqlite3.connect(tmp_path / "lib" / CATALOGUE_NAME)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16_384
