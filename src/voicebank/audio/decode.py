"""Reading reference audio the way upstream Chatterbox does, without librosa.

Upstream calls ``librosa.load(path, sr=24000)``: decode with libsndfile to float32, average the
channels, and resample with soxr's HQ quality; then ``librosa.resample(wav24, 24000, 16000)`` (soxr HQ
again).  :func:`load_audio` and :func:`resample` do the same arithmetic with soundfile and soxr directly,
so the samples are identical to librosa's.

Bad input never turns into a crash or a NaN: every refusal is an :class:`~voicebank.errors.AudioError`
subclass whose message names the input and what to do.

The one writer, :func:`wav_bytes`, makes the float WAV a library keeps its decoded audio in; reading it back
gives every sample bit for bit.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

from ..chatterbox import S3GEN_SR
from ..errors import (
    AudioDecodeError,
    AudioNotFoundError,
    AudioOutOfRangeError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnsupportedAudioFormatError,
)

MAX_SECONDS = 600.0
"""Longest reference accepted (10 minutes); longer input is refused before it is read."""
MIN_SECONDS = 0.5
"""Shortest reference accepted; the models need a few frames (3-10 s of clean speech is best)."""
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000
"""Sample rates read (the rates a voice file's metadata may record)."""
MAX_PEAK = 1000.0
"""Float samples beyond this (+60 dBFS) are not a recording: refused (1e30 would overflow the features to NaN)."""
SILENCE_PEAK = 1e-5
"""A clip whose absolute peak is at or below this (-100 dBFS) is digital silence."""

AudioSource = Union[str, os.PathLike, BinaryIO, bytes, "Waveform", tuple[Any, int]]
"""What :func:`load_audio` accepts: a path, an open binary file, raw file bytes, a :class:`Waveform`,
or an ``(array, sample_rate)`` pair."""


@dataclass(frozen=True)
class Waveform:
    """Audio already in memory: ``samples`` of shape ``(n,)`` or ``(n, channels)`` at ``sample_rate`` Hz.

    Float samples are expected in [-1, 1]; integer samples are scaled as soundfile does (int16 / 32768).
    """

    samples: Any
    sample_rate: int


@dataclass(frozen=True)
class AudioInfo:
    """What the decoder says about a source before (or after) reading it."""

    source: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def describe(source: object) -> str:
    """A short human name for an audio source, used in messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Waveform) or isinstance(source, tuple):
        return "<array>"
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else "<file object>"


def _known_extensions() -> set[str]:
    import soundfile as sf

    exts = {k.lower() for k in sf.available_formats()}
    exts |= {"wav", "flac", "ogg", "oga", "mp3", "aif", "aiff", "opus", "wave"}
    return exts


def check_path(path: Path, name: str) -> None:
    """Refuse a path that is missing, not a file or empty, with the typed error that says so."""
    if not path.exists():
        raise AudioNotFoundError(f"{name}: no such file; check the path", source=name)
    if not path.is_file():
        raise AudioNotFoundError(f"{name}: not a file; pass an audio file (WAV, FLAC, MP3, OGG)", source=name)
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{name}: the file is empty (0 bytes); record or export the clip again",
                              source=name)


def _sound_file(target: Any, name: str, ext: str, *, from_file: bool):  # -> soundfile.SoundFile
    import soundfile as sf

    try:
        return sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        msg = _decoder_message(err)
        if ext and ext not in _known_extensions():
            raise UnsupportedAudioFormatError(
                f"{name}: .{ext} files are not supported ({msg}); convert to WAV, FLAC, MP3 or OGG/Vorbis",
                source=name) from err
        if from_file:
            raise AudioDecodeError(f"{name}: cannot decode audio ({msg}); the file may be corrupt or "
                                   "not audio at all: re-export it as WAV or FLAC", source=name) from err
        raise AudioDecodeError(f"{name}: cannot decode audio ({msg}); pass WAV, FLAC, MP3 or OGG/Vorbis data",
                               source=name) from err


def _decoder_message(err: BaseException) -> str:
    """libsndfile's own words for a failure, without soundfile's "Error opening <object at 0x...>" prefix (which
    would name a memory address instead of the file)."""
    text = getattr(err, "error_string", None) or str(err)
    return str(text).strip().rstrip(".") or type(err).__name__


def _open(source: object, name: str):  # -> soundfile.SoundFile
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        check_path(path, name)
        return _sound_file(str(path), name, path.suffix.lower().lstrip("."), from_file=True)
    fileobj: Any = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source
    if not hasattr(fileobj, "read"):
        raise TypeError(f"cannot read audio from a {type(source).__name__}: pass a path, a binary file "
                        "object, bytes, a Waveform or an (array, sample_rate) pair")
    return _sound_file(fileobj, name, "", from_file=False)


def decode_bytes(data: bytes, name: str, *, ext: str = "", from_file: bool = False,
                 max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int, int]:
    """Decode the bytes of an audio file to ``((n,) float32 mono, sample_rate, source_channels)``.

    ``ext``: the file's extension, used only to say when a format is not supported.  Channels are averaged
    as librosa does; the same samples as decoding the file from its path.
    """
    with _sound_file(io.BytesIO(data), name, ext, from_file=from_file) as f:
        return _read_all(f, name, max_seconds)


def _read_all(f: Any, name: str, max_seconds: float) -> tuple[np.ndarray, int, int]:
    import soundfile as sf

    sr, channels = int(f.samplerate), int(f.channels)
    _check_duration(int(f.frames), sr, name, max_seconds)
    try:
        data = f.read(dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioDecodeError(f"{name}: decoding failed part-way ({e}); the file may be truncated: "
                               "re-export it", source=name) from e
    except (ValueError, TypeError, MemoryError, OverflowError) as e:  # a codec libsndfile names but cannot stream
        raise AudioDecodeError(f"{name}: the {f.subtype} codec inside this {f.format} file cannot be decoded ({e}); "
                               "convert it to PCM WAV or FLAC", source=name) from e
    if data.ndim > 1:
        # librosa.to_mono: mean over channels of the (channels, n) layout
        data = np.mean(data.T, axis=0)
    return np.ascontiguousarray(data, dtype=np.float32), sr, channels


def probe(source: AudioSource) -> AudioInfo:
    """Read only the header of a file source (no samples) and describe it."""
    name = describe(source)
    if isinstance(source, Waveform) or isinstance(source, tuple):
        samples, sr = _waveform_parts(source, name)
        arr = np.asarray(samples)
        mono_first = arr.ndim == 2 and arr.shape[0] < arr.shape[1]
        frames = arr.shape[-1] if mono_first else arr.shape[0]
        channels = 1 if arr.ndim == 1 else min(arr.shape)
        return AudioInfo(name, sr, channels, int(frames), "ARRAY", str(arr.dtype))
    with _open(source, name) as f:
        return AudioInfo(name, int(f.samplerate), int(f.channels), int(f.frames), str(f.format), str(f.subtype))


def _waveform_parts(source: Waveform | tuple[Any, int], name: str) -> tuple[Any, int]:
    if isinstance(source, Waveform):
        samples, sr = source.samples, source.sample_rate
    elif len(source) != 2:
        raise TypeError("an in-memory clip is an (array, sample_rate) pair")
    else:
        samples, sr = source
    try:
        rate = float(sr)
    except (TypeError, ValueError, OverflowError):
        rate = math.nan
    if isinstance(sr, bool) or not math.isfinite(rate) or rate != int(rate):
        raise AudioDecodeError(f"{name}: the sample rate {sr!r} is not a whole number of Hz; pass an int such as "
                               "16000", source=name)
    return samples, int(rate)


def _array_to_mono(samples: Any, name: str) -> np.ndarray:
    """Mono float32 from an in-memory array of shape (n,), (n, channels) or (channels, n)."""
    if hasattr(samples, "detach"):  # torch tensor
        samples = samples.detach().cpu().numpy()
    arr = np.asarray(samples)
    if arr.dtype.kind in "iu":
        if arr.dtype == np.uint8:
            arr = (arr.astype(np.float32) - 128.0) / 128.0
        else:
            arr = arr.astype(np.float32) / float(2 ** (8 * arr.dtype.itemsize - 1))
    elif arr.dtype.kind != "f":
        raise AudioDecodeError(f"{name}: samples of dtype {arr.dtype} are not audio; pass float or integer PCM",
                               source=name)
    if arr.ndim == 0 or arr.ndim > 2:
        raise AudioDecodeError(f"{name}: expected samples of shape (n,) or (n, channels), got {arr.shape}",
                               source=name)
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2:
        channels_first = arr.shape[0] < arr.shape[1]
        arr = arr if channels_first else arr.T
        arr = np.mean(arr, axis=0) if arr.shape[0] > 1 else arr[0]
    return np.ascontiguousarray(arr)


def _check_rate(sr: int, name: str) -> None:
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(f"{name}: a sample rate of {sr} Hz is not audio voicebank reads ({MIN_SAMPLE_RATE}-"
                               f"{MAX_SAMPLE_RATE} Hz); resample the clip", source=name)


def _check_duration(frames: int, sr: int, name: str, max_seconds: float) -> None:
    _check_rate(sr, name)
    if frames <= 0:
        raise EmptyAudioError(f"{name}: the clip holds no audio samples; record or export it again", source=name)
    seconds = frames / sr
    if seconds > max_seconds:
        raise AudioTooLongError(
            f"{name}: {seconds:.1f} s is longer than the {max_seconds:.0f} s accepted; cut a 5-15 s "
            "excerpt of clean speech (only the first 10 s are used anyway)", source=name)


def check_samples(wav: np.ndarray, sample_rate: int, name: str) -> None:
    """Refuse non-finite, out-of-range, too short or silent mono audio (or an absurd rate) with a typed error."""
    _check_rate(sample_rate, name)
    if wav.size == 0:
        raise EmptyAudioError(f"{name}: the clip holds no audio samples; record or export it again", source=name)
    if not np.isfinite(wav).all():
        raise NonFiniteAudioError(f"{name}: the audio holds NaN or infinite samples; re-export it "
                                  "(float files must hold finite values in [-1, 1])", source=name)
    peak = float(np.max(np.abs(wav)))
    if peak > MAX_PEAK:
        raise AudioOutOfRangeError(f"{name}: sample values reach {peak:.3g}, far outside [-1, 1]; float audio must "
                                   "hold values in [-1, 1]: normalise it and export it again", source=name)
    seconds = wav.shape[0] / sample_rate
    if seconds < MIN_SECONDS:
        raise AudioTooShortError(f"{name}: {seconds:.2f} s is too short; at least {MIN_SECONDS} s is needed "
                                 "(3-10 s of clean speech works best)", source=name)
    if peak <= SILENCE_PEAK:
        raise SilentAudioError(f"{name}: the clip is silent (peak at or below -100 dBFS); there is no voice "
                               "to extract: check the recording", source=name)


def read_audio(source: AudioSource, *, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int, int]:
    """Decode ``source`` to mono float32 at its own rate: ``((n,) float32, sample_rate, source_channels)``.

    Channels are averaged as librosa does.  Nothing is checked beyond decoding and length; see
    :func:`load_audio` for the full checks.
    """
    name = describe(source)
    if isinstance(source, Waveform) or isinstance(source, tuple):
        samples, sr = _waveform_parts(source, name)
        shape = np.shape(samples)
        wav = _array_to_mono(samples, name)
        _check_duration(wav.shape[0], sr, name, max_seconds)
        return wav, sr, 1 if len(shape) < 2 else int(min(shape))
    with _open(source, name) as f:
        return _read_all(f, name, max_seconds)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 audio with soxr HQ, exactly as ``librosa.resample`` (res_type="soxr_hq").

    ``wav``: (n,) float32 @ ``orig_sr`` -> (ceil(n * target_sr / orig_sr),) float32 @ ``target_sr``.
    """
    if orig_sr == target_sr:
        return wav
    import soxr

    n_out = int(np.ceil(wav.shape[-1] * (float(target_sr) / orig_sr)))
    out = soxr.resample(wav, orig_sr, target_sr, quality="HQ")
    if out.shape[-1] > n_out:
        out = out[:n_out]
    elif out.shape[-1] < n_out:
        out = np.pad(out, (0, n_out - out.shape[-1]))
    return np.asarray(out, dtype=wav.dtype)


def load_audio(source: AudioSource, sample_rate: int = S3GEN_SR, *,
               max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Decode, mix to mono and resample ``source``: ``(n,) float32 @ sample_rate``.

    Equal to ``librosa.load(path, sr=sample_rate)[0]`` to float precision.  Accepts a path, an open
    binary file, raw file bytes, a :class:`Waveform` or an ``(array, sample_rate)`` pair.

    Raises an :class:`~voicebank.errors.AudioError` subclass for a missing, unreadable, unsupported,
    empty, silent, non-finite, too short or too long clip.
    """
    name = describe(source)
    wav, sr, _ = read_audio(source, max_seconds=max_seconds)
    check_samples(wav, sr, name)
    return resample(wav, sr, sample_rate)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float32 samples as a 32-bit IEEE-float WAV: lossless (every float32 comes back bit for bit) and
    byte-for-byte deterministic, so equal audio is one content-addressed file.

    Written by hand because libsndfile adds a PEAK chunk with a timestamp to float WAVs.
    """
    data = np.ascontiguousarray(np.asarray(samples, dtype="<f4").reshape(-1)).tobytes()
    n_frames = len(data) // 4
    fmt = struct.pack("<HHIIHH", 3, 1, int(sample_rate), int(sample_rate) * 4, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"fact" + struct.pack("<II", 4, n_frames)
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
