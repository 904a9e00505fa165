"""The exception tree of voicebank.

Every error voicebank raises on purpose derives from :class:`VoicebankError`, so an application can
catch one class.  Messages name the input that was refused and say what to do about it.  The CLI turns
these into exit code 1 and one line on stderr; the service into a 4xx answer with a JSON body.
"""

from __future__ import annotations


class VoicebankError(Exception):
    """Base class of every error voicebank raises on purpose."""


class MissingDependencyError(VoicebankError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra to install."""


class InvalidOptionError(VoicebankError, ValueError):
    """An option or argument value that cannot be used (unknown variant, NaN, out of range); the message names
    the option and the values it takes.  Raised by the one set of checks in :mod:`voicebank.options` that both
    the API and the CLI use."""


class OutputPathError(VoicebankError, OSError):
    """An output file cannot be written there (a directory, under a regular file, unwritable, a full disk).
    Nothing is left behind: a partly written temp file is removed."""


class NonFiniteOutputError(VoicebankError, ValueError):
    """A computation gave NaN or infinite values (refused rather than returned or written)."""


# --- audio -------------------------------------------------------------------------------------------


class AudioError(VoicebankError, ValueError):
    """Reference audio that cannot be used.  ``source`` names the input (a path or ``<array>``)."""

    def __init__(self, message: str, *, source: str = "<audio>") -> None:
        super().__init__(message)
        self.source = source


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The audio path does not exist or is not a file."""


class AudioDecodeError(AudioError):
    """The file exists but could not be decoded (corrupt, truncated, or not audio at all)."""


class UnsupportedAudioFormatError(AudioError):
    """The container or codec is not one voicebank reads (WAV, FLAC, MP3, OGG/Vorbis and the rest of libsndfile)."""


class EmptyAudioError(AudioError):
    """The audio holds no samples (or too few to analyse)."""


class SilentAudioError(AudioError):
    """The audio is digital silence: there is no voice to extract."""


class NonFiniteAudioError(AudioError):
    """The audio holds NaN or infinite samples."""


class AudioOutOfRangeError(AudioError):
    """Float samples far outside [-1, 1] (e.g. 1e30): not a recording voicebank can normalise safely."""


class AudioTooLongError(AudioError):
    """The audio is longer than voicebank accepts; it is refused before it is read into memory."""


class AudioTooShortError(AudioError):
    """The audio is shorter than the variant needs (Chatterbox Turbo wants more than 5 s)."""


# --- weights -----------------------------------------------------------------------------------------


class WeightsError(VoicebankError):
    """Model weights that cannot be found or do not fit."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weights were found; the message lists every place that was tried."""


class WeightsMismatchError(WeightsError):
    """A checkpoint does not have the expected tensors (missing, unexpected or wrongly shaped keys)."""


# --- voice files -------------------------------------------------------------------------------------


class VoiceFileError(VoicebankError, ValueError):
    """A voice file (voicebank ``.safetensors`` or upstream ``.pt``) that cannot be read or is malformed."""


class UnsafeVoiceFileError(VoiceFileError):
    """A ``.pt`` file that tries to run code or build arbitrary objects on load; it was refused, not run."""


# --- library -----------------------------------------------------------------------------------------


class LibraryError(VoicebankError):
    """A problem with the voice library (the SQLite catalogue and its files)."""


class VoiceNotFoundError(LibraryError, KeyError):
    """No voice of that name in the library."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class VoiceExistsError(LibraryError):
    """A voice of that name (or the same audio) is already in the library."""


class DuplicateAudioError(VoiceExistsError):
    """The same audio (by the sha256 of its bytes) is already in the library under another name."""

    def __init__(self, message: str, *, existing: str = "") -> None:
        super().__init__(message)
        self.existing = existing


class InvalidVoiceNameError(LibraryError, ValueError):
    """A voice name that cannot be used (empty, too long, control characters, a path separator)."""


class ReferenceRejectedError(LibraryError, ValueError):
    """Reference audio refused by the inspection before adding; ``findings`` lists why.

    Unusable references are always refused; poor ones only without ``force`` (``--force``).
    """

    def __init__(self, message: str, *, source: str = "<audio>", findings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.findings = findings


class BaseVoiceError(LibraryError):
    """An embedding-only voice has no usable base voice to borrow its S3Gen reference from."""


class NoAudioKeptError(LibraryError):
    """The operation needs the voice's reference audio, and the library did not keep it."""


class CatalogueError(LibraryError):
    """The library's catalogue cannot be opened or used (damaged, locked, or from a newer voicebank)."""


class CatalogueDamagedError(CatalogueError):
    """The catalogue file is damaged (cut short, emptied, a table or row is malformed).  Nothing is deleted
    while it cannot be read; ``voicebank library check`` explains, ``--repair`` rebuilds what the files allow."""


class LibraryUnavailableError(CatalogueError):
    """A shared library's database or object store cannot be reached now (down, refusing connections, out of
    connections).  Nothing was changed; the same call can succeed once it is back (the service answers 503 with
    ``Retry-After``)."""


class ContentMissingError(LibraryError):
    """A content file the catalogue references is missing or damaged (an object deleted from the bucket behind the
    library's back, a file removed from ``blobs/``).  Other voices are unaffected; ``voicebank library check``
    names every such file."""


class LibraryWriteError(LibraryError, OSError):
    """The library directory cannot be written (read-only, a full disk, a stray file or directory where the
    store expects the other).  What the failed write created is removed; nothing was changed."""


# --- executors ---------------------------------------------------------------------------------------


class ClusterUnavailableError(VoicebankError):
    """The Ray cluster that computes for this process cannot be reached, cannot start its workers, or lost
    the worker running a job (and the one its retry ran on).  Nothing was stored; the same call can succeed once
    the cluster is back (the service answers 503 with ``Retry-After``)."""
