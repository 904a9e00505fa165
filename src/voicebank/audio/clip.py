"""A :class:`Clip`: one reference recording, read once.

Reading a clip decodes it and hashes its bytes in the same pass over the file, and checks the samples.
Everything downstream (references, inspection, the library, the batch runner) takes a ``Clip``, so a file is
opened exactly once however many things are computed from it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, AudioTooLongError
from .decode import (
    MAX_SAMPLE_RATE,
    MAX_SECONDS,
    MIN_SAMPLE_RATE,
    AudioSource,
    Waveform,
    _array_to_mono,
    _check_duration,
    _waveform_parts,
    check_path,
    check_samples,
    decode_bytes,
    describe,
    probe,
)


def array_sha256(samples: Any, sample_rate: int) -> str:
    """sha256 of in-memory audio: of its float32 samples (any layout) and rate, as voicebank has always hashed it."""
    if hasattr(samples, "detach"):
        samples = samples.detach().cpu().numpy()
    h = hashlib.sha256(f"array:{int(sample_rate)}:".encode())
    h.update(np.ascontiguousarray(np.asarray(samples, dtype=np.float32)).tobytes())
    return h.hexdigest()


MAX_FILE_BYTES = 2 << 30
"""Largest audio file read (2 GiB): ten minutes at the highest rates and widths voicebank accepts fit far below."""


def refuse_long_file(path: Path, label: str, max_seconds: float) -> None:
    """Refuse a file whose size or header says it is longer than ``max_seconds``, without reading its samples
    (:class:`~voicebank.errors.AudioTooLongError`).  A header that cannot be read is left to the decoder."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise AudioTooLongError(f"{label}: {size / 2**30:.1f} GiB is far larger than a {max_seconds:.0f} s "
                                "reference; cut a 5-15 s excerpt of clean speech", source=label)
    try:
        info = probe(path)
    except (AudioError, OSError, RuntimeError):
        return
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        return  # the decoder's own check says what is wrong with the rate
    if 0 < info.frames < 2**62 and info.duration > max_seconds:
        raise AudioTooLongError(
            f"{label}: {info.duration:.1f} s is longer than the {max_seconds:.0f} s accepted; cut a 5-15 s "
            "excerpt of clean speech (only the first 10 s are used anyway)", source=label)


@dataclass(frozen=True, eq=False)
class Clip:
    """A decoded reference clip, as it came from its source.

    ``samples``: (n,) float32, mono (channels averaged as librosa does), at ``sample_rate`` Hz, unresampled;
    ``channels``: how many channels the source had; ``sha256``: of the source file's bytes (of the float32
    samples and rate for in-memory audio); ``name``: how the source is called in messages.
    """

    samples: np.ndarray
    sample_rate: int
    channels: int
    sha256: str
    name: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.sample_rate

    @classmethod
    def read(cls, source: AudioSource | Clip, *, name: str | None = None, max_seconds: float = MAX_SECONDS) -> Clip:
        """Decode, hash and check ``source`` in one read.

        ``source``: a path, raw file bytes, an open binary file (read from its position to the end), a
        :class:`~voicebank.audio.Waveform` or an ``(array, sample_rate)`` pair; a ``Clip`` is returned as is.
        Raises an :class:`~voicebank.errors.AudioError` subclass for a missing, unreadable, unsupported, empty,
        silent, non-finite, too short or too long clip.
        """
        if isinstance(source, Clip):
            return source
        label = name if name is not None else describe(source)
        if isinstance(source, (Waveform, tuple)):
            samples, sr = _waveform_parts(source, label)
            shape = np.shape(samples.detach().cpu() if hasattr(samples, "detach") else samples)
            wav = _array_to_mono(samples, label)
            _check_duration(wav.shape[0], sr, label, max_seconds)
            channels = 1 if len(shape) < 2 else int(min(shape))
            digest = array_sha256(samples, sr)
        else:
            ext = ""
            if isinstance(source, (str, os.PathLike)):
                path = Path(source)
                check_path(path, label)
                ext = path.suffix.lower().lstrip(".")
                refuse_long_file(path, label, max_seconds)  # before a byte of samples is read
                h = hashlib.sha256()
                chunks = []
                with open(path, "rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
                        chunks.append(block)
                data = b"".join(chunks)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                data = bytes(source)
            elif hasattr(source, "read"):
                data = source.read()
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(f"{label}: the file object gave {type(data).__name__}, not bytes; open the file "
                                    "in binary mode (open(path, 'rb'))")
                data = bytes(data)
            else:
                raise TypeError(f"cannot read audio from a {type(source).__name__}: pass a path, a binary file "
                                "object, bytes, a Waveform or an (array, sample_rate) pair")
            digest = h.hexdigest() if isinstance(source, (str, os.PathLike)) else hashlib.sha256(data).hexdigest()
            wav, sr, channels = decode_bytes(data, label, ext=ext, from_file=bool(ext) or isinstance(
                source, (str, os.PathLike)), max_seconds=max_seconds)
        check_samples(wav, sr, label)
        return cls(samples=wav, sample_rate=int(sr), channels=int(channels), sha256=digest, name=label)

    @classmethod
    def from_samples(cls, samples: np.ndarray, sample_rate: int, *, sha256: str | None = None, channels: int = 1,
                     name: str = "<array>") -> Clip:
        """A clip of decoded mono float32 samples (checked), e.g. kept audio read back from a library.

        ``sha256`` defaults to the hash of the samples (:func:`array_sha256`).
        """
        wav = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        check_samples(wav, int(sample_rate), name)
        digest = sha256 if sha256 is not None else array_sha256(wav, sample_rate)
        return cls(samples=wav, sample_rate=int(sample_rate), channels=int(channels), sha256=digest, name=name)
