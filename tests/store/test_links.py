"""A content file swapped for a link (to an endless device, or to a file outside the library) is refused, never
followed and never read to its end: by export, get, the service's audio route reader and library check.

Directory only: an object store has no links and no directories where an object belongs."""

from __future__ import annotations

import os

import pytest

from voicebank import errors
from voicebank.library import Library
from voicebank.store.blobs import read_content, sha256_file

from faults import FakeEngine, build_library

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/zero") or os.name != "posix", reason="POSIX links")


def swap_for_link(path, target) -> None:
    path.unlink()
    os.symlink(target, path)


@pytest.mark.parametrize("target", ["/dev/zero", "outside"])
def test_a_content_file_swapped_for_a_link_is_refused(tmp_path, target):
    build_library(tmp_path / "lib")
    outside = tmp_path / "outside.wav"
    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        audio = next(f for f in lib.show("alice").files if f.role == "audio")
        outside.write_bytes(audio.path.read_bytes())  # even the same bytes, elsewhere, are not followed
        swap_for_link(audio.path, "/dev/zero" if target == "/dev/zero" else outside)
        with pytest.raises(errors.LibraryError, match="link"):
            lib.export("alice", tmp_path / "alice.wav")
        assert not (tmp_path / "alice.wav").exists()
        report = lib.check()
        linked = [p for p in report.problems if "link" in p.problem and p.voice == "alice"]
        assert not report.ok and linked, report.problems


def test_reading_never_goes_beyond_the_stored_size(tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(b"x" * 100)
    assert read_content(f, 100) == b"x" * 100
    with pytest.raises(OSError, match="more than 10"):
        read_content(f, 10)
    os.symlink("/dev/zero", tmp_path / "zero")
    for call in (lambda: read_content(tmp_path / "zero", 10), lambda: sha256_file(tmp_path / "zero")):
        with pytest.raises(OSError):
            call()


def test_a_content_file_replaced_by_a_directory_names_its_voice(tmp_path):
    build_library(tmp_path / "lib")
    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        audio = next(f for f in lib.show("alice").files if f.role == "audio")
        audio.path.unlink()
        audio.path.mkdir()
        report = lib.check()
        assert [p.voice for p in report.problems] == ["alice"], report.problems
        assert "directory" in report.problems[0].problem


def test_unknown_directories_in_the_content_folder_are_unreferenced_entries(tmp_path):
    build_library(tmp_path / "lib")
    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        (lib.store.blobs.blob_dir / "junk").mkdir()
        (lib.store.blobs.blob_dir / "ab" / "notes").mkdir(parents=True)
        ((lib.store.blobs.blob_dir / "ab" / "notes") / "x.txt").write_text("x")
        report = lib.check()
        assert report.ok, report.problems  # not damage: nothing a voice needs is missing
        assert {"blobs/junk/", "blobs/ab/notes/"} <= set(report.unreferenced), report.unreferenced
        cleaned = lib.check(delete_orphans=True)
        assert cleaned.ok and not (lib.store.blobs.blob_dir / "junk").exists()
        assert not (lib.store.blobs.blob_dir / "ab" / "notes").exists()
        assert lib.export("alice", tmp_path / "alice.wav").stat().st_size > 0  # the voices' files are untouched
