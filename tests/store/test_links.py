"""A content file swapped for a link (to an endless device, or to a file outside the library) is refused, never
followed and never read to its end: by export, get, the service's audio route reader and library check."""

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
