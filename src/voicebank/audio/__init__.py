"""The audio front end: decoding and hashing a clip once, resampling, and the mel features the models read.

* :mod:`.decode` -- files, bytes and arrays to mono float32 exactly as ``librosa.load`` (soundfile + soxr);
* :mod:`.clip` -- :class:`Clip`, one read that decodes, hashes and checks a source;
* :mod:`.reference` -- a clip made ready for one Chatterbox variant (24 kHz and 16 kHz signals);
* :mod:`.sinc` -- the resampler; :mod:`.dsp` (the voice encoder's and S3Gen's mels), :mod:`.tokenizer_mel` (the
  speech tokenizer's log-mel), :mod:`.fbank` (CAM++'s Kaldi filterbank) -- the features each model reads.
"""

from __future__ import annotations

from .clip import Clip, array_sha256
from .decode import (
    MAX_SECONDS,
    MIN_SECONDS,
    SILENCE_PEAK,
    AudioInfo,
    AudioSource,
    Waveform,
    check_samples,
    describe,
    load_audio,
    probe,
    read_audio,
    resample,
)

__all__ = [
    "MAX_SECONDS",
    "MIN_SECONDS",
    "SILENCE_PEAK",
    "AudioInfo",
    "AudioSource",
    "Clip",
    "Waveform",
    "array_sha256",
    "check_samples",
    "describe",
    "load_audio",
    "probe",
    "read_audio",
    "resample",
]
