"""A Clip is one read: decoded and hashed from the same bytes, equal to decoding the file directly."""

from __future__ import annotations

import builtins
import hashlib
import io

import numpy as np
import pytest

from voicebank import errors
from voicebank.audio import Clip, Waveform, read_audio
from voicebank.audio.reference import source_sha256

from audio_fixtures import GOLDEN_INPUTS

FILES = sorted(GOLDEN_INPUTS.iterdir())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_clip_equals_direct_decoding_and_hashes_the_file(path):
    clip = Clip.read(path)
    wav, sr, channels = read_audio(path)
    np.testing.assert_array_equal(clip.samples, wav)
    assert (clip.sample_rate, clip.channels) == (sr, channels)
    assert clip.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == source_sha256(path)
    assert clip.name == str(path)


def test_clip_reads_a_path_once(monkeypatch):
    path = GOLDEN_INPUTS / "mid_12s.flac"
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file) == str(path):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    Clip.read(path)
    assert len(opened) == 1


def test_bytes_file_objects_and_arrays():
    path = GOLDEN_INPUTS / "short_3s_22k.wav"
    data = path.read_bytes()
    by_path, by_bytes, by_file = Clip.read(path), Clip.read(data), Clip.read(io.BytesIO(data))
    assert by_bytes.sha256 == by_file.sha256 == by_path.sha256
    np.testing.assert_array_equal(by_bytes.samples, by_path.samples)
    arr = Clip.read(Waveform(by_path.samples, by_path.sample_rate))
    assert arr.sha256 == source_sha256((by_path.samples, by_path.sample_rate)) and arr.channels == 1
    assert Clip.read(arr) is arr


def test_unusable_input_is_refused_with_a_typed_error(tmp_path):
    with pytest.raises(errors.AudioNotFoundError):
        Clip.read(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(errors.EmptyAudioError):
        Clip.read(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(errors.AudioDecodeError):
        Clip.read(tmp_path / "junk.wav")
    with pytest.raises(errors.SilentAudioError):
        Clip.read((np.zeros(16000, np.float32), 16000))
