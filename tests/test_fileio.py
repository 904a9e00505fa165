"""What voicebank writes appears whole, durably, and with the mode the umask gives any new file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from voicebank.fileio import atomic_write
from voicebank.store.blobs import BlobStore

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_follows_the_umask(tmp_path, umask):
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"data"))
    assert target.read_bytes() == b"data"
    assert mode(target) == 0o666 & ~umask  # 0644 under umask 022, as `open` would give


def test_library_content_files_follow_the_umask(tmp_path, umask):
    blobs = BlobStore(tmp_path / "blobs")
    blobs.ensure_dirs()
    _, path = blobs.write(b"voice bytes", ".safetensors")
    assert mode(path) == 0o666 & ~umask


def test_batch_parts_follow_the_umask(tmp_path, umask):
    pa = pytest.importorskip("pyarrow")
    from voicebank.batch.dataset import write_part

    part = write_part(tmp_path / "ds", pa.table({"x": np.arange(3)}))
    assert mode(part) == 0o666 & ~umask


def test_voice_files_follow_the_umask(tmp_path, umask, golden_weights_dir):
    from voicebank.engine import shared_engine

    from golden_cases import INPUTS

    voice = shared_engine(golden_weights_dir).extract(INPUTS / "short_3s_22k.wav")
    for name in ("v.safetensors", "v.pt"):
        voice.save(tmp_path / name)
        assert mode(tmp_path / name) == 0o666 & ~umask, name
