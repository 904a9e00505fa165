"""Audio front end: librosa-identical decoding/resampling, every input kind, and every refusal."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import soundfile as sf

from voicebank import errors
from voicebank.audio import MAX_SECONDS, Waveform, load_audio, probe, read_audio, resample
from voicebank.audio.decode import wav_bytes

from audio_fixtures import GOLDEN_INPUTS, speechlike
from golden_cases import case_name

GOLDEN_FILES = sorted(GOLDEN_INPUTS.iterdir())


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_golden_wav24_and_wav16_are_bit_identical_to_librosa(path, golden_intermediates):
    ref = golden_intermediates(case_name(path.name))
    wav24 = load_audio(path)
    assert wav24.dtype == np.float32
    np.testing.assert_array_equal(wav24, ref["wav24"].numpy())
    np.testing.assert_array_equal(resample(wav24, 24000, 16000), ref["wav16"].numpy())


def test_path_file_object_bytes_and_array_agree():
    path = GOLDEN_INPUTS / "stereo_44k1.wav"
    from_path = load_audio(path)
    raw = path.read_bytes()
    np.testing.assert_array_equal(load_audio(io.BytesIO(raw)), from_path)
    np.testing.assert_array_equal(load_audio(raw), from_path)
    samples, sr = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(load_audio((samples, sr)), from_path)
    np.testing.assert_array_equal(load_audio(Waveform(samples, sr)), from_path)
    # channels-first arrays are accepted too
    np.testing.assert_array_equal(load_audio((samples.T.copy(), sr)), from_path)


def test_integer_arrays_are_scaled_like_soundfile():
    samples, sr = sf.read(GOLDEN_INPUTS / "aishell_4s.wav", dtype="int16")
    floats, _ = sf.read(GOLDEN_INPUTS / "aishell_4s.wav", dtype="float32")
    np.testing.assert_array_equal(load_audio((samples, sr), 16000), load_audio((floats, sr), 16000))


FORMATS = [
    ("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"), ("flac", "PCM_16"), ("flac", "PCM_24"),
    ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III"),
]


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize(("ext", "subtype"), FORMATS, ids=lambda x: str(x))
def test_every_claimed_format_and_rate_decodes(tmp_path, ext, subtype, sr):
    channels = 2 if sr in (44100, 48000) else 1
    sig = speechlike(1.5, sr, seed=sr, channels=channels)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, sig, sr, subtype=subtype)
    out = load_audio(path)
    info = probe(path)
    assert info.sample_rate == sr and info.channels == channels
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.shape[0] - int(np.ceil(info.frames * 24000 / sr))) == 0
    assert np.isfinite(out).all() and 0.1 < np.abs(out).max() <= 1.0
    # the decoded samples, given as an array, give the same result as the file
    decoded, native_sr, n_ch = read_audio(path)
    assert native_sr == sr and n_ch == channels
    np.testing.assert_array_equal(load_audio((decoded, native_sr)), out)


def test_matches_librosa_when_installed(tmp_path):
    librosa = pytest.importorskip("librosa")
    for sr, subtype in ((22050, "PCM_24"), (44100, "FLOAT"), (8000, "PCM_16")):
        path = tmp_path / f"c{sr}.wav"
        sf.write(path, speechlike(2.0, sr, seed=3, channels=2), sr, subtype=subtype)
        ours = load_audio(path)
        theirs, _ = librosa.load(path, sr=24000)
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(resample(ours, 24000, 16000),
                                      librosa.resample(theirs, orig_sr=24000, target_sr=16000))


# --- refusals ---------------------------------------------------------------------------------------


def _wav_bytes(samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(errors.AudioNotFoundError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(errors.AudioNotFoundError, match="not a file"):
        load_audio(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(errors.EmptyAudioError):
        load_audio(p)


def test_corrupt_file_with_audio_extension(tmp_path):
    p = tmp_path / "corrupt.flac"
    p.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    with pytest.raises(errors.AudioDecodeError, match="corrupt"):
        load_audio(p)


def test_text_file_named_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 50)
    with pytest.raises(errors.AudioDecodeError):
        load_audio(p)


def test_unsupported_format(tmp_path):
    p = tmp_path / "clip.m4a"
    p.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 500)
    with pytest.raises(errors.UnsupportedAudioFormatError, match=r"\.m4a"):
        load_audio(p)


def test_truncated_file_is_refused_or_decodes_what_is_there(tmp_path):
    full = (GOLDEN_INPUTS / "long_22s.flac").read_bytes()
    p = tmp_path / "cut.flac"
    p.write_bytes(full[:300])
    with pytest.raises(errors.AudioError):
        load_audio(p)


def test_header_only_wav_is_empty(tmp_path):
    p = tmp_path / "zero.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(errors.EmptyAudioError):
        load_audio(p)


def test_all_silent_clip(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(16000 * 2, dtype=np.float32), 16000)
    with pytest.raises(errors.SilentAudioError, match="silent"):
        load_audio(p)


def test_non_finite_samples_in_float_wav(tmp_path):
    sig = speechlike(1.0, 16000)
    sig[100] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, sig, 16000, subtype="FLOAT")
    with pytest.raises(errors.NonFiniteAudioError):
        load_audio(p)
    sig[100] = np.inf
    with pytest.raises(errors.NonFiniteAudioError):
        load_audio((sig, 16000))


def test_too_short_clip():
    with pytest.raises(errors.AudioTooShortError):
        load_audio((speechlike(0.2, 16000), 16000))


def test_absurd_length_is_refused_before_reading(tmp_path, monkeypatch):
    sr = 8000
    p = tmp_path / "long.wav"
    with sf.SoundFile(p, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        block = (speechlike(10.0, sr) * 0.5).astype(np.float32)
        for _ in range(int(MAX_SECONDS / 10) + 1):
            f.write(block)
    read_called = []
    original = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: read_called.append(1) or original(*a, **k))
    with pytest.raises(errors.AudioTooLongError, match="longer than"):
        load_audio(p)
    assert not read_called, "samples were read although the header already said the clip is too long"


def test_errors_share_one_base_and_name_the_input(tmp_path):
    with pytest.raises(errors.VoicebankError) as info:
        load_audio(tmp_path / "x.wav")
    assert "x.wav" in str(info.value)
    assert info.value.source.endswith("x.wav")


def test_bad_array_shapes_and_dtypes():
    with pytest.raises(errors.AudioDecodeError):
        load_audio((np.zeros((2, 3, 4), dtype=np.float32), 16000))
    with pytest.raises(errors.AudioDecodeError):
        load_audio((np.array(["a", "b"]), 16000))
    with pytest.raises(errors.AudioDecodeError):
        load_audio((speechlike(1.0, 16000), 0))


def test_the_float_wav_a_library_keeps_reads_back_bit_for_bit():
    samples = speechlike(1.5, 22050, seed=3)
    data = wav_bytes(samples, 22050)
    assert data == wav_bytes(samples.copy(), 22050)  # deterministic: one content address per clip
    wav, sr, _ = read_audio(data)
    assert sr == 22050 and wav.dtype == np.float32 and np.array_equal(wav.view(np.uint32), samples.view(np.uint32))
    info = sf.info(io.BytesIO(data))
    assert (info.subtype, info.channels, info.frames) == ("FLOAT", 1, samples.shape[0])
