"""Generated bad audio: huge but finite samples and codecs libsndfile names but cannot decode are typed
errors (the API) and one line with exit 1 (the CLI); what is accepted never gives NaN downstream."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebank import errors
from voicebank.audio import Clip, load_audio
from voicebank.audio.decode import MAX_PEAK

from audio_fixtures import speechlike
from faults import assert_one_line_error, run_cli


def float_wav(tmp_path, peak: float, *, subtype: str = "FLOAT", name: str = "x.wav"):
    x = speechlike(2.0, 16000, seed=3).astype(np.float64)
    x = x / np.abs(x).max() * peak
    path = tmp_path / name
    sf.write(path, x, 16000, subtype=subtype)
    return path


@pytest.mark.parametrize("peak", [1e30, 3e38, 1e10, 1e4, MAX_PEAK * 1.01])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_huge_float_samples_are_refused(tmp_path, peak, subtype):
    if subtype == "FLOAT" and peak > 3.4e38:
        pytest.skip("not representable")
    path = float_wav(tmp_path, peak, subtype=subtype)
    for source in (path, path.read_bytes()):
        with pytest.raises(errors.AudioOutOfRangeError, match=r"far outside \[-1, 1\]"):
            Clip.read(source)
    with pytest.raises(errors.AudioError):
        load_audio(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exponent=st.floats(-3, 38), sign=st.sampled_from([1.0, -1.0]))
def test_any_amplitude_is_read_or_refused_with_a_typed_error(exponent, sign):
    x = speechlike(1.0, 16000, seed=4).astype(np.float64)
    x = (x / np.abs(x).max() * sign * 10.0**exponent).astype(np.float32)
    try:
        clip = Clip.read((x, 16000))
    except errors.AudioError as e:
        assert isinstance(e, (errors.AudioOutOfRangeError, errors.NonFiniteAudioError)), e
        assert 10.0**exponent > MAX_PEAK or not np.isfinite(x).all()
        return
    assert np.isfinite(clip.samples).all() and np.abs(clip.samples).max() <= MAX_PEAK


def codec_files(tmp_path):
    """WAVs whose codec libsndfile writes but cannot stream back."""
    out = {}
    for subtype in ("GSM610", "G721_32", "NMS_ADPCM_16"):
        path = tmp_path / f"{subtype}.wav"
        try:
            sf.write(path, speechlike(2.0, 8000, seed=5), 8000, format="WAV", subtype=subtype)
        except (ValueError, TypeError, RuntimeError, sf.LibsndfileError):
            continue
        out[subtype] = path
    return out


def test_undecodable_codecs_in_a_known_container_are_audio_decode_errors(tmp_path, capsys):
    files = codec_files(tmp_path)
    if not files:
        pytest.skip("this libsndfile writes none of the codecs")
    for subtype, path in files.items():
        try:
            clip = Clip.read(path)
        except errors.AudioDecodeError as e:
            assert subtype in str(e) and "WAV" in str(e)
        else:  # a libsndfile that can decode it: then the samples are fine
            assert np.isfinite(clip.samples).all()
            continue
        with pytest.raises(errors.AudioDecodeError):
            Clip.read(path.read_bytes())
        rc, _out, err = run_cli(capsys, ["inspect-audio", path])
        assert_one_line_error(rc, err, "cannot be decoded")


def test_the_cli_refuses_huge_samples_in_one_line(tmp_path, capsys):
    path = float_wav(tmp_path, 1e30)
    rc, out, err = run_cli(capsys, ["inspect-audio", path])
    assert_one_line_error(rc, err, "unusable")
    assert "far outside" in out
    rc, _out, err = run_cli(capsys, ["extract", path, "-o", tmp_path / "v.safetensors", "--weights", tmp_path / "nw"])
    assert rc == 1 and not (tmp_path / "v.safetensors").exists()


def test_accepted_loud_audio_gives_finite_embeddings_or_a_typed_error(golden_weights_dir):
    from voicebank import Engine

    engine = Engine(golden_weights_dir)
    x = speechlike(3.0, 16000, seed=6).astype(np.float32)
    for peak in (0.5, 50.0, MAX_PEAK):
        try:
            emb = engine.embed([(x / np.abs(x).max() * peak, 16000)])
        except errors.NonFiniteOutputError:
            continue
        assert np.isfinite(emb).all()


@pytest.mark.parametrize("rate", [0, -16000, 1, 999, 768_001, 10**9])
def test_absurd_sample_rates_are_audio_decode_errors(tmp_path, rate):
    x = speechlike(1.0, 16000, seed=7)
    with pytest.raises(errors.AudioDecodeError, match="sample rate"):
        Clip.read((x, rate))
    with pytest.raises(errors.AudioDecodeError, match="sample rate"):
        Clip.from_samples(x, rate)
    if rate > 0:
        path = tmp_path / "odd.wav"
        try:
            sf.write(path, x, rate)
        except (ValueError, RuntimeError, sf.LibsndfileError):
            return
        with pytest.raises(errors.AudioDecodeError):
            Clip.read(path)


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 16000.5, True, "fast", None, 1e400])
def test_a_sample_rate_that_is_not_a_whole_number_is_an_audio_decode_error(rate):
    x = speechlike(1.0, 16000, seed=7)
    for read in (lambda: Clip.read((x, rate)), lambda: load_audio((x, rate), 16000)):
        with pytest.raises(errors.AudioDecodeError, match="whole number of Hz"):
            read()


def test_whole_float_and_numpy_rates_are_accepted():
    x = speechlike(1.0, 16000, seed=7)
    for rate in (16000.0, np.int64(16000), np.float32(16000)):
        clip = Clip.read((x, rate))
        assert clip.sample_rate == 16000 and isinstance(clip.sample_rate, int)


def test_a_text_mode_file_object_says_to_open_it_in_binary(tmp_path):
    import io

    with pytest.raises(TypeError, match="binary mode"):
        Clip.read(io.StringIO("RIFF...."))


def test_a_long_file_is_refused_from_its_header_before_its_samples_are_read(tmp_path):
    """An 11-minute WAV (10 MB) is refused on its header: the refusal allocates well under the file's size."""
    import tracemalloc

    from voicebank.audio import Clip
    from voicebank.errors import AudioTooLongError

    path = tmp_path / "long.wav"
    rate = 8_000
    sf.write(path, (np.random.default_rng(0).standard_normal(rate * 660) * 0.1).astype(np.float32), rate,
             subtype="PCM_16")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLongError, match=r"660\.0 s is longer"):
            Clip.read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 10, (peak, size)
