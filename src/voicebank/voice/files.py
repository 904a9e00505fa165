"""The two files a :class:`~voicebank.voice.Voice` is kept in, both ways, and telling them apart.

* voicebank's ``.safetensors``: tensors named ``t3.<field>`` / ``gen.<field>`` (``None`` fields omitted)
  plus string metadata (format version, variant, exaggeration, weights fingerprint, source sha256,
  duration and sample rate).  No code can run on load; every name, shape and dtype is validated.
* upstream's ``.pt``: exactly what ``Conditionals.save`` writes (``{"t3": T3Cond.__dict__, "gen":
  ref_dict}``; for VC the bare ``ref_dict``).  Read with ``torch.load(weights_only=True)``: a pickle that
  tries to build anything but tensors and plain containers is refused, never run.

Which of the two a file holds is read from its first bytes (:func:`sniff`), never from its name.  This module
knows bytes, flat tensors (``t3.<field>`` / ``gen.<field>``) and metadata strings, not the :class:`Voice` built
from them: :meth:`Voice.save <voicebank.voice.Voice.save>`, :meth:`~voicebank.voice.Voice.load`,
:meth:`~voicebank.voice.Voice.to_bytes` and :meth:`~voicebank.voice.Voice.from_bytes` are the public way in.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import UnsafeVoiceFileError, VoiceFileError
from ..fileio import atomic_write
from .validation import GEN_FIELDS, T3_FIELDS

FORMAT_NAME = "voicebank.voice"
"""What a voicebank voice file's metadata says it is (``format``)."""
FORMAT_VERSION = 1
"""The version of a voice's stored layout (its tensor names and metadata fields); files newer than this are
refused."""

MAX_VOICE_FILE_BYTES = 64 << 20
"""A voice file is ~160 kB; anything over 64 MiB is refused before it is read."""

FileFormat = Literal["safetensors", "pt"]


# --- writing -----------------------------------------------------------------------------------------


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """The voicebank ``.safetensors`` file of flat, checked ``tensors`` and ``metadata``, byte-for-byte
    reproducible.

    ``safetensors`` lays out the tensors; its JSON header (whose metadata order varies from call to call)
    is rewritten with sorted keys, so equal voices give equal bytes (and one content address).
    """
    from safetensors.torch import save as st_save

    raw = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=dict(metadata))
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + raw[8 + n :]


def pt_bytes(t3: Mapping[str, torch.Tensor | None] | None, gen: Mapping[str, torch.Tensor | None]) -> bytes:
    """The upstream ``.pt`` file of checked CPU parts (upstream's field dicts): what ``Conditionals.save``
    writes, for VC (``t3=None``) the bare ``ref_dict``."""
    gen_part = {k: (v.detach() if v is not None else None) for k, v in gen.items()}
    if t3 is None:
        obj: Any = gen_part
    else:
        obj = {"t3": {k: (v.detach() if v is not None else None) for k, v in t3.items()}, "gen": gen_part}
    buffer = io.BytesIO()  # serialised first: a full disk is then an OSError of the write, not torch's
    torch.save(obj, buffer)
    return buffer.getvalue()


def file_format_of(path: str | os.PathLike[str]) -> FileFormat:
    """The format a voice file name asks for (``.safetensors`` or ``.pt``), else :class:`VoiceFileError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".safetensors", ".pt"):
        raise VoiceFileError(f"{path}: unknown voice file type {suffix or '(none)'}; use .safetensors or .pt")
    return "safetensors" if suffix == ".safetensors" else "pt"


def write_voice_file(path: str | os.PathLike[str], payload: bytes, *, mkdir: bool = False) -> Path:
    """Write a voice file's bytes to ``path`` atomically (temp file + rename).  ``path``'s directory must exist
    unless ``mkdir`` (:func:`~voicebank.fileio.atomic_write`)."""
    path = Path(path)
    atomic_write(path, lambda f: f.write(payload), mkdir=mkdir)
    return path


# --- reading -----------------------------------------------------------------------------------------


def read_voice_file(path: Path) -> bytes:
    """The bytes of the voice file ``path``; :class:`VoiceFileError` if it is missing, unreadable or over
    :data:`MAX_VOICE_FILE_BYTES`."""
    try:
        if not path.is_file():
            what = "is a directory, not a voice file" if path.is_dir() else "no such voice file"
            raise VoiceFileError(f"{path}: {what}")
        if path.stat().st_size > MAX_VOICE_FILE_BYTES:
            raise VoiceFileError(f"{path}: {path.stat().st_size} bytes is far too large for a voice file")
        return path.read_bytes()
    except OSError as e:
        raise VoiceFileError(f"{path}: cannot read the voice file ({e.strerror or e})") from e


def sniff(data: bytes, where: str = "voice file", *, whole: bool = True) -> FileFormat:
    """``"safetensors"`` or ``"pt"`` from the bytes (never the file name), else :class:`VoiceFileError`.
    ``whole``: ``data`` is the whole file (else only its head), so the header length can be checked."""
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        return "pt"
    if len(data) >= 9 and data[8:9] == b"{" and (not whole or int.from_bytes(data[:8], "little") <= len(data) - 8):
        return "safetensors"
    raise VoiceFileError(f"{where}: not a voice file (neither safetensors nor a torch .pt file, whatever its name)")


def voice_file_format(path: str | os.PathLike[str]) -> str:
    """How a voice file is stored, from its first bytes: ``voicebank safetensors``, ``upstream .pt`` or
    ``unknown``."""
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        return "voicebank safetensors" if sniff(head, whole=False) == "safetensors" else "upstream .pt"
    except VoiceFileError:
        return "unknown"


def read_safetensors(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The flat tensors and metadata strings of the voicebank ``.safetensors`` file ``data``, its format and
    version checked (the tensors are validated by the caller; ``where`` names the file in errors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    try:
        tensors = load_bytes(data)
        header_len = int.from_bytes(data[:8], "little")  # valid: load_bytes has checked the whole layout
        meta = dict(json.loads(data[8 : 8 + header_len]).get("__metadata__") or {})
    except (SafetensorError, OSError, ValueError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise VoiceFileError(
            f"{where}: not a readable safetensors file ({str(e)[:120]}); it may be truncated: export it again") from e
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise VoiceFileError(f"{where}: its metadata is not text")
    fmt = meta.get("format", FORMAT_NAME)
    if fmt != FORMAT_NAME:
        raise VoiceFileError(f"{where}: format {str(fmt)[:40]!r} is not a voicebank voice")
    version = meta.get("format_version", str(FORMAT_VERSION))
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise VoiceFileError(f"{where}: format version {version[:20]!r} is invalid; re-export the voice")
    if int(version) > FORMAT_VERSION:
        raise VoiceFileError(f"{where}: format version {version} is newer than this voicebank reads "
                             f"({FORMAT_VERSION}); upgrade voicebank")
    return tensors, meta


_BLOCKED = (re.compile(r"GLOBAL ([\w.]+)"), re.compile(r"unsupported global:? ([\w.]+)", re.I),
            re.compile(r"unrecognized function `?([\w.]+)"), re.compile(r"but got <class '([\w.]+)'>"))


def read_pt(data: bytes, where: str) -> tuple[dict[str, Any], bool]:
    """The flat tensors of the upstream ``.pt`` file ``data`` (``Conditionals.save``'s, or a VC ``ref_dict``), and
    whether it was a bare VC ``ref_dict`` (the tensors are validated by the caller).

    Loaded with ``weights_only=True``: a pickle that would build anything but tensors and plain containers
    raises :class:`UnsafeVoiceFileError` and is never run.
    """
    import pickle
    import zipfile

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        blocked = next((m.group(1) for rx in _BLOCKED if (m := rx.search(text))), None)
        if blocked is not None:
            raise UnsafeVoiceFileError(
                f"{where}: refused to load: the pickle calls {blocked[:80]}, which a voice file never needs; it was "
                "not run (ask for a .safetensors voice)") from e
        raise VoiceFileError(f"{where}: not a readable torch file (its pickle is damaged); export it again") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, TypeError, AttributeError,
            KeyError, IndexError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise VoiceFileError(f"{where}: not a readable torch file ({_first_line(e)}); it may be truncated") from e
    if not isinstance(obj, Mapping):
        raise VoiceFileError(f"{where}: holds a {type(obj).__name__}, not Chatterbox conditionals")
    flat: dict[str, Any] = {}
    if "gen" in obj or "t3" in obj:
        unknown = sorted(set(obj) - {"t3", "gen"})
        if unknown or not isinstance(obj.get("gen"), Mapping) or not isinstance(obj.get("t3", {}), Mapping):
            raise VoiceFileError(f"{where}: expected {{'t3': dict, 'gen': dict}} as Conditionals.save writes")
        parts: list[tuple[str, Mapping[str, Any], tuple[str, ...]]] = [("gen", obj["gen"], GEN_FIELDS)]
        if "t3" in obj:
            parts.insert(0, ("t3", obj["t3"], T3_FIELDS))
        variant = "english"
    else:  # a VC ref_dict
        parts = [("gen", obj, GEN_FIELDS)]
        variant = "vc"
    for prefix, part, allowed in parts:
        unknown = sorted(str(k)[:40] for k in part if k not in allowed)
        if unknown:
            raise VoiceFileError(f"{where}: unexpected {prefix} entries {', '.join(unknown[:5])}"
                                 + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
        for k, v in part.items():
            if v is None:
                continue
            if k in ("clap_emb", "cond_prompt_speech_emb", "prompt_feat_len"):
                raise VoiceFileError(f"{where}: {prefix}.{k} is set; voicebank reads only what "
                                     "prepare_conditionals produces (it is None there)")
            flat[f"{prefix}.{k}"] = v.detach() if torch.is_tensor(v) else v
    return flat, variant == "vc"


def _first_line(e: BaseException) -> str:
    """The gist of a torch or zip error: its first line, without torch's advice, at most 120 characters."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    for cut in (" Please ", " please ", ". If ", " report "):
        if cut in line:
            line = line[: line.index(cut)]
    return line[:120]


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MAX_VOICE_FILE_BYTES", "FileFormat", "file_format_of", "pt_bytes",
           "read_pt", "read_safetensors", "read_voice_file", "safetensors_bytes", "sniff", "voice_file_format",
           "write_voice_file"]
