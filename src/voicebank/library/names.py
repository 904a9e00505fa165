"""The rules for what names a voice and labels it (names, tags, who added it), and the inputs a batch add
expands into."""

from __future__ import annotations

import getpass
import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ..audio.decode import AudioSource, _known_extensions, describe
from ..errors import InvalidOptionError, InvalidVoiceNameError

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


def current_user() -> str:
    """The login name, or ``""`` where there is none (containers)."""
    try:
        return getpass.getuser()
    except Exception:
        return ""


MAX_TAG_LENGTH = 128


def clean_tags(tags: Iterable[str] | str | None) -> tuple[str, ...]:
    """Tags stripped, de-duplicated and sorted; empty ones dropped.  One string is one tag (not its letters);
    ``None`` is none.  A tag with a control character or over :data:`MAX_TAG_LENGTH` characters is an
    :class:`~voicebank.errors.InvalidOptionError`."""
    if tags is None:
        return ()
    items = [tags] if isinstance(tags, str) else list(tags)
    out = set()
    for t in items:
        if not isinstance(t, str):
            raise InvalidOptionError(f"tag {t!r} is not text; tags are strings such as 'narrator'")
        t = unicodedata.normalize("NFC", t.strip())
        if not t:
            continue
        if len(t) > MAX_TAG_LENGTH or any(unicodedata.category(c)[0] == "C" for c in t):
            raise InvalidOptionError(f"tag {t[:20]!r}{'...' if len(t) > 20 else ''} is longer than {MAX_TAG_LENGTH} "
                                     "characters or holds a control character; use short plain words")
        out.add(t)
    return tuple(sorted(out))


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
