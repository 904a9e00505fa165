"""Weights fingerprints remembered across processes: the same values, never for a changed file, best effort."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

import voicebank.engine.engine as engine_module
from voicebank.engine import Engine
from voicebank.models.checkpoints import S3GEN_PREFIXES, file_fingerprints
from voicebank.models.fingerprint_cache import FILE_NAME, MAX_FILES, FingerprintCache
from voicebank.settings import Settings

GROUPS = [S3GEN_PREFIXES, ("tokenizer.",), ("speaker_encoder.",)]


def _settle(path: Path) -> None:
    """Give ``path`` a modification time a minute in the past (fresh files are not remembered)."""
    past = time.time() - 60
    os.utime(path, (past, past))


@pytest.fixture
def weights(tmp_path, golden_weights_dir) -> Path:
    out = tmp_path / "weights"
    shutil.copytree(golden_weights_dir, out)
    for f in out.iterdir():
        _settle(f)
    return out


def _counting(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = engine_module.file_fingerprints

    def counted(path, groups):
        calls.append(Path(path))
        return real(path, groups)

    monkeypatch.setattr(engine_module, "file_fingerprints", counted)
    return calls


def test_a_new_process_reuses_the_fingerprints_of_unchanged_files(tmp_path, weights, monkeypatch):
    cache = tmp_path / "cache"
    calls = _counting(monkeypatch)
    first = {v: Engine(weights, settings=Settings(cache_dir=cache)).weights_fingerprint(v)
             for v in ("english", "vc")}
    assert len(calls) == 2 and (cache / FILE_NAME).is_file()
    calls.clear()
    again = {v: Engine(weights, settings=Settings(cache_dir=cache)).weights_fingerprint(v)
             for v in ("english", "vc")}
    assert again == first and calls == []
    # the same values as computing them, and the same as an engine without any cache file
    assert FingerprintCache(cache).get(weights / "s3gen.safetensors", GROUPS) == \
        file_fingerprints(weights / "s3gen.safetensors", GROUPS)
    other = Engine(weights, settings=Settings(cache_dir=tmp_path / "elsewhere"))
    assert {v: other.weights_fingerprint(v) for v in ("english", "vc")} == first


@pytest.mark.parametrize("change", ["same size, mtime put back", "replaced by another file", "touched"])
def test_a_changed_file_is_fingerprinted_again(tmp_path, weights, change):
    cache = tmp_path / "cache"
    s3gen = weights / "s3gen.safetensors"
    before = Engine(weights, settings=Settings(cache_dir=cache)).weights_fingerprint()
    if change == "same size, mtime put back":
        st = s3gen.stat()
        data = bytearray(s3gen.read_bytes())
        data[-10] ^= 0xFF  # inside the last tensor's final window
        s3gen.write_bytes(bytes(data))
        os.utime(s3gen, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert s3gen.stat().st_size == st.st_size and s3gen.stat().st_mtime_ns == st.st_mtime_ns
    elif change == "replaced by another file":
        data = bytearray(s3gen.read_bytes())
        data[-10] ^= 0xFF
        new = weights / "new.safetensors"
        new.write_bytes(bytes(data))
        _settle(new)
        new.replace(s3gen)
    else:
        _settle(s3gen)
    after = Engine(weights, settings=Settings(cache_dir=cache)).weights_fingerprint()
    expected = file_fingerprints(s3gen, GROUPS)
    assert FingerprintCache(cache).get(s3gen, GROUPS) in (None, expected)
    if change == "touched":
        assert after == before
    else:
        assert after != before


def test_a_file_written_moments_ago_is_not_remembered(tmp_path, golden_weights_dir):
    fresh = tmp_path / "ve.safetensors"
    shutil.copyfile(golden_weights_dir / "ve.safetensors", fresh)
    cache = FingerprintCache(tmp_path / "cache")
    cache.put(fresh, [None], file_fingerprints(fresh, [None]))
    assert cache.get(fresh, [None]) is None
    _settle(fresh)
    cache.put(fresh, [None], file_fingerprints(fresh, [None]))
    assert cache.get(fresh, [None]) == file_fingerprints(fresh, [None])


@pytest.mark.parametrize("content", [b"", b"\x00garbage", b"[1, 2]", b'{"version": 99, "files": {}}',
                                     b'{"version": 1, "files": {"x": 3}}', "not json \u00e9".encode()])
def test_a_damaged_cache_file_is_ignored_and_replaced(tmp_path, weights, content):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FILE_NAME).write_bytes(content)
    expected = Engine(weights, settings=Settings(cache_dir=tmp_path / "none")).weights_fingerprint()
    assert Engine(weights, settings=Settings(cache_dir=cache)).weights_fingerprint() == expected
    assert json.loads((cache / FILE_NAME).read_text())["version"] == 1


def test_a_tampered_entry_for_this_file_is_not_used(tmp_path, weights):
    cache = tmp_path / "cache"
    ve = weights / "ve.safetensors"
    good = FingerprintCache(cache)
    good.put(ve, [None], ["0123456789abcdef"])
    assert good.get(ve, [None]) == ["0123456789abcdef"]  # what a tamperer could store is trusted ...
    data = json.loads((cache / FILE_NAME).read_text())
    data["files"][str(ve.absolute())]["fingerprints"]["*"] = "not a fingerprint"
    (cache / FILE_NAME).write_text(json.dumps(data))
    assert good.get(ve, [None]) is None  # ... but not anything that is not a fingerprint


def test_an_unwritable_cache_directory_changes_nothing(tmp_path, weights):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    engine = Engine(weights, settings=Settings(cache_dir=blocker / "cache"))
    expected = Engine(weights, settings=Settings(cache_dir=tmp_path / "c")).weights_fingerprint()
    assert engine.weights_fingerprint() == expected
    assert not list(tmp_path.glob("**/.fingerprints-*"))


def test_the_cache_keeps_a_bounded_number_of_files(tmp_path, golden_weights_dir):
    cache = FingerprintCache(tmp_path / "cache")
    for i in range(MAX_FILES + 5):
        f = tmp_path / f"w{i}.safetensors"
        f.write_bytes(b"x" * (i + 1))
        _settle(f)
        cache.put(f, [None], [f"{i:016x}"])
    files = json.loads((tmp_path / "cache" / FILE_NAME).read_text())["files"]
    assert len(files) == MAX_FILES
    assert cache.get(tmp_path / f"w{MAX_FILES + 4}.safetensors", [None]) == [f"{MAX_FILES + 4:016x}"]
    assert cache.get(tmp_path / "w0.safetensors", [None]) is None


def test_the_cache_directory_follows_the_settings(tmp_path):
    assert Settings.from_env({"VOICEBANK_CACHE_DIR": str(tmp_path)}).cache_path == tmp_path
    assert Settings.from_env({}).cache_path.name == "voicebank"


def test_no_cache_directory_at_all_changes_nothing(tmp_path, weights, monkeypatch):
    expected = Engine(weights, settings=Settings(cache_dir=tmp_path / "c")).weights_fingerprint()

    def no_home(self):
        raise RuntimeError("no home directory")

    monkeypatch.setattr(Settings, "cache_path", property(no_home))
    assert Engine(weights).weights_fingerprint() == expected
