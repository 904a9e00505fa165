"""Voice names and the inputs a batch add expands into."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ..audio.decode import AudioSource, _known_extensions, describe
from ..errors import InvalidVoiceNameError

MAX_NAME_LENGTH = 128


def check_name(name: str) -> str:
    """Return ``name`` in Unicode NFC (the one form names are kept and looked up in) if it can name a voice, else
    raise :class:`~voicebank.errors.InvalidVoiceNameError`."""
    if isinstance(name, str):
        name = unicodedata.normalize("NFC", name)
    if not isinstance(name, str) or not name.strip():
        raise InvalidVoiceNameError(f"voice name {name!r} is empty; pass a name such as 'alice'")
    if name != name.strip():
        raise InvalidVoiceNameError(f"voice name {name!r} starts or ends with white space; remove it")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidVoiceNameError(f"voice name {name[:20]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name) or "/" in name or "\\" in name:
        raise InvalidVoiceNameError(f"voice name {name!r} holds a control character or a path separator; use "
                                    "letters, digits, spaces, '-', '_' or '.'")
    if name in (".", ".."):
        raise InvalidVoiceNameError(f"voice name {name!r} cannot be addressed in a URL (the service and its clients "
                                    "read it as a path); choose another")
    if name.startswith("-"):
        raise InvalidVoiceNameError(f"voice name {name!r} starts with '-', which reads as a command-line option")
    return name


def default_name(source: AudioSource) -> str:
    """The name a clip gets when none is given: its file stem."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stem
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return Path(name).stem
    raise InvalidVoiceNameError(f"{describe(source)}: in-memory audio has no file name; pass name=")


def collect_audio(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand directories (recursively) into the audio files they hold, sorted; files are kept as given."""
    exts = {f".{e}" for e in _known_extensions()}
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in exts
                              and not f.name.startswith(".")))
        else:
            out.append(path)
    return out
