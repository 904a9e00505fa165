"""Voice conditionals: what Chatterbox needs to speak in a voice, and the files that hold them.

A :class:`Voice` carries upstream's two parts under upstream's field names:

* ``t3`` (:class:`T3Conditioning`, ``T3Cond`` upstream): ``speaker_emb`` (1, 256) float32,
  ``cond_prompt_speech_tokens`` (1, N <= 375) int64, ``emotion_adv`` (1, 1, 1) float32.  ``None`` for VC.
* ``gen`` (:class:`GenConditioning`, S3Gen's ``ref_dict``): ``prompt_token`` (1, N) int64,
  ``prompt_token_len`` (1,) int64, ``prompt_feat`` (1, T, 80) float32 log-mel @ 24 kHz (50 frames/s),
  ``embedding`` (1, 192) float32 CAM++ x-vector.

Two file formats, both ways:

* voicebank's ``.safetensors``: tensors named ``t3.<field>`` / ``gen.<field>`` (``None`` fields omitted)
  plus string metadata (format version, variant, exaggeration, weights fingerprint, source sha256,
  duration and sample rate).  No code can run on load; every name, shape and dtype is validated.
* upstream's ``.pt``: exactly what ``Conditionals.save`` writes (``{"t3": T3Cond.__dict__, "gen":
  ref_dict}``; for VC the bare ``ref_dict``).  Read with ``torch.load(weights_only=True)``: a pickle that
  tries to build anything but tensors and plain containers is refused, never run.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..chatterbox import (
    MAX_PROMPT_FEAT_FRAMES,
    MAX_T3_PROMPT_TOKENS,
    N_MELS_S3GEN,
    SPEAKER_EMB_DIM,
    SPEECH_VOCAB_SIZE,
    VARIANT_SPECS,
    XVECTOR_DIM,
)
from ..errors import MissingDependencyError, NonFiniteOutputError, UnsafeVoiceFileError, VoiceFileError
from ..fileio import atomic_write

FORMAT_NAME = "voicebank.voice"
FORMAT_VERSION = 1
MAX_VOICE_FILE_BYTES = 64 << 20
"""A voice file is ~160 kB; anything over 64 MiB is refused before it is read."""
SAMPLE_RATE_RANGE = (1000, 768_000)
"""Source sample rates a voice file's metadata may record."""

T3_FIELDS = ("speaker_emb", "clap_emb", "cond_prompt_speech_tokens", "cond_prompt_speech_emb", "emotion_adv")
GEN_FIELDS = ("prompt_token", "prompt_token_len", "prompt_feat", "prompt_feat_len", "embedding")


@dataclass
class T3Conditioning:
    """T3's conditioning (upstream ``T3Cond``); fields are upstream's, ``None`` where upstream has ``None``."""

    speaker_emb: torch.Tensor
    cond_prompt_speech_tokens: torch.Tensor | None = None
    emotion_adv: torch.Tensor | None = None
    clap_emb: torch.Tensor | None = None
    cond_prompt_speech_emb: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor | None]:
        """Upstream ``T3Cond.__dict__``: the five fields in upstream's order."""
        return {k: getattr(self, k) for k in T3_FIELDS}

    def to(self, device: torch.device | str) -> T3Conditioning:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return t.to(device) if t is not None else None

        return T3Conditioning(self.speaker_emb.to(device), move(self.cond_prompt_speech_tokens), move(self.emotion_adv),
                              move(self.clap_emb), move(self.cond_prompt_speech_emb))


@dataclass
class GenConditioning:
    """S3Gen's reference (upstream ``ref_dict``)."""

    prompt_token: torch.Tensor
    prompt_token_len: torch.Tensor
    prompt_feat: torch.Tensor
    embedding: torch.Tensor
    prompt_feat_len: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor | None]:
        """Upstream's ``ref_dict``, keys in upstream's order."""
        return {k: getattr(self, k) for k in GEN_FIELDS}

    def to(self, device: torch.device | str) -> GenConditioning:
        return GenConditioning(self.prompt_token.to(device), self.prompt_token_len.to(device),
                               self.prompt_feat.to(device), self.embedding.to(device),
                               self.prompt_feat_len.to(device) if self.prompt_feat_len is not None else None)


@dataclass(frozen=True)
class VoiceMetadata:
    """Where a voice came from.  Every field is optional for voices read from upstream ``.pt`` files."""

    variant: str = "english"
    exaggeration: float | None = None
    weights_fingerprint: str = ""
    source_sha256: str = ""
    source_duration: float | None = None
    source_sample_rate: int | None = None
    voicebank_version: str = __version__
    hybrid: str = ""
    """Non-empty when the S3Gen reference came from another voice (``"gen from <name>"``)."""

    def to_strings(self) -> dict[str, str]:
        out = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "variant": self.variant,
               "voicebank_version": self.voicebank_version, "weights_fingerprint": self.weights_fingerprint,
               "source_sha256": self.source_sha256}
        if self.exaggeration is not None:
            out["exaggeration"] = repr(float(self.exaggeration))
        if self.source_duration is not None:
            out["source_duration"] = f"{self.source_duration:.6f}"
        if self.source_sample_rate is not None:
            out["source_sample_rate"] = str(int(self.source_sample_rate))
        if self.hybrid:
            out["hybrid"] = self.hybrid
        return out

    @classmethod
    def from_strings(cls, meta: Mapping[str, str], where: str) -> VoiceMetadata:
        try:
            out = cls(
                variant=meta.get("variant", "english"),
                exaggeration=float(meta["exaggeration"]) if "exaggeration" in meta else None,
                weights_fingerprint=meta.get("weights_fingerprint", ""),
                source_sha256=meta.get("source_sha256", ""),
                source_duration=float(meta["source_duration"]) if "source_duration" in meta else None,
                source_sample_rate=int(meta["source_sample_rate"]) if "source_sample_rate" in meta else None,
                voicebank_version=meta.get("voicebank_version", ""),
                hybrid=meta.get("hybrid", ""),
            )
        except (ValueError, OverflowError) as e:
            raise VoiceFileError(f"{where}: malformed metadata ({str(e)[:80]}); re-export the voice") from e
        out.check(where)
        return out

    def check(self, where: str) -> None:
        """Raise :class:`VoiceFileError` unless every field is sane: a known variant, finite numbers, a sample rate
        in :data:`SAMPLE_RATE_RANGE`, a sha256 of 64 hex digits, short printable strings."""
        from ..chatterbox import VARIANTS

        def bad(what: str) -> VoiceFileError:
            return VoiceFileError(f"{where}: invalid metadata: {what}; re-export the voice")

        if self.variant not in VARIANTS:
            raise bad(f"unknown variant {self.variant[:40]!r} (known: {', '.join(VARIANTS)})")
        if self.exaggeration is not None and not math.isfinite(self.exaggeration):
            raise bad(f"exaggeration {self.exaggeration!r} is not finite")
        if self.source_duration is not None and not (math.isfinite(self.source_duration)
                                                     and 0 <= self.source_duration <= 1e6):
            raise bad(f"source_duration {self.source_duration!r} is not a sane number of seconds")
        lo, hi = SAMPLE_RATE_RANGE
        if self.source_sample_rate is not None and not lo <= self.source_sample_rate <= hi:
            raise bad(f"source_sample_rate {self.source_sample_rate} is outside {lo}-{hi} Hz")
        if self.source_sha256 and not (len(self.source_sha256) == 64
                                       and all(c in "0123456789abcdef" for c in self.source_sha256)):
            raise bad("source_sha256 is not a sha256 (64 hex digits)")
        for key in ("weights_fingerprint", "voicebank_version", "hybrid"):
            value = getattr(self, key)
            if len(value) > (1000 if key == "hybrid" else 128) or not value.isprintable():
                raise bad(f"{key} is too long or holds control characters")


@dataclass
class Voice:
    """A voice ready for Chatterbox: ``t3`` (``None`` for VC), ``gen`` and its :class:`VoiceMetadata`."""

    t3: T3Conditioning | None
    gen: GenConditioning
    metadata: VoiceMetadata = field(default_factory=VoiceMetadata)

    # --- views -------------------------------------------------------------------------------------

    @property
    def variant(self) -> str:
        return self.metadata.variant

    @property
    def speaker_embedding(self) -> torch.Tensor:
        """The voice encoder's (256,) float32 speaker embedding (T3's ``speaker_emb``)."""
        if self.t3 is None:
            raise VoiceFileError("this voice has no T3 part (a VC reference): it holds no speaker embedding")
        return self.t3.speaker_emb.reshape(-1)

    @property
    def xvector(self) -> torch.Tensor:
        """S3Gen's (192,) float32 CAM++ x-vector."""
        return self.gen.embedding.reshape(-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat ``{"t3.<field>": ..., "gen.<field>": ...}`` with ``None`` fields omitted."""
        out: dict[str, torch.Tensor] = {}
        if self.t3 is not None:
            out.update({f"t3.{k}": v for k, v in self.t3.as_dict().items() if v is not None})
        out.update({f"gen.{k}": v for k, v in self.gen.as_dict().items() if v is not None})
        return out

    def to(self, device: torch.device | str) -> Voice:
        """A copy with every tensor on ``device``."""
        return Voice(self.t3.to(device) if self.t3 is not None else None, self.gen.to(device), self.metadata)

    def with_exaggeration(self, exaggeration: float) -> Voice:
        """A copy whose ``emotion_adv`` is ``exaggeration * ones(1, 1, 1)``."""
        from ..options import check_exaggeration

        x = check_exaggeration(exaggeration)
        if self.t3 is None:
            raise VoiceFileError("a VC voice has no T3 part, so no exaggeration")
        device = self.t3.speaker_emb.device
        t3 = replace(self.t3, emotion_adv=x * torch.ones(1, 1, 1, device=device))
        return Voice(t3, self.gen, replace(self.metadata, exaggeration=x))

    def check(self, where: str = "voice") -> Voice:
        """``self`` if every tensor and metadata field is valid (see :func:`validate`) and finite; else
        :class:`~voicebank.errors.NonFiniteOutputError` for NaN/inf, :class:`VoiceFileError` for the rest.
        Run on every voice before it is returned by the engine or written."""
        tensors = {k: v.detach().cpu() for k, v in self.tensors().items()}
        for k, v in tensors.items():
            if v.is_floating_point() and v.layout == torch.strided and not bool(torch.isfinite(v).all()):
                raise NonFiniteOutputError(f"{where}: {k} holds NaN or infinite values; nothing was written")
        validate(tensors, where)
        self.metadata.check(where)
        if self.t3 is not None and self.metadata.variant == "vc":
            raise VoiceFileError(f"{where}: labelled 'vc' but it has a T3 part; VC voices hold only gen")
        return self

    # --- upstream interop ---------------------------------------------------------------------------

    def to_chatterbox(self, device: torch.device | str = "cpu") -> Any:
        """Upstream ``chatterbox.tts.Conditionals`` (needs chatterbox-tts installed); for VC the ref dict."""
        moved = self.to(device)
        if moved.t3 is None:
            return moved.gen.as_dict()
        try:
            from chatterbox.models.t3.modules.cond_enc import T3Cond
            from chatterbox.tts import Conditionals
        except ImportError as e:
            raise MissingDependencyError("to_chatterbox() needs upstream Chatterbox: pip install chatterbox-tts") from e
        return Conditionals(T3Cond(**moved.t3.as_dict()), moved.gen.as_dict())

    def apply_to(self, model: Any) -> Any:
        """Make ``model`` speak in this voice: sets ``model.conds`` (TTS) or ``model.ref_dict`` (VC).

        The tensors move to ``model.device``.  Returns ``model``.
        """
        device = getattr(model, "device", "cpu")
        if hasattr(model, "set_target_voice") or not hasattr(model, "conds"):
            model.ref_dict = self.to(device).gen.as_dict()
            return model
        if self.t3 is None:
            raise VoiceFileError("a VC voice has only the S3Gen part; a TTS model needs a full voice")
        model.conds = self.to_chatterbox(device)
        return model

    # --- files --------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The voicebank ``.safetensors`` file of this voice, byte-for-byte reproducible.

        ``safetensors`` lays out the tensors; its JSON header (whose metadata order varies from call to call)
        is rewritten with sorted keys, so equal voices give equal bytes (and one content address).
        """
        import struct

        from safetensors.torch import save as st_save

        self.check("voice to save")
        raw = st_save({k: v.detach().cpu().contiguous() for k, v in self.tensors().items()},
                      metadata=self.metadata.to_strings())
        (n,) = struct.unpack("<Q", raw[:8])
        head = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        return struct.pack("<Q", len(head)) + head + raw[8 + n :]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the voice: ``.safetensors`` (voicebank format) or ``.pt`` (upstream ``Conditionals.save``).

        The file appears atomically (temp file + rename): a crash never leaves half a file behind.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".safetensors", ".pt"):
            raise VoiceFileError(f"{path}: unknown voice file type {suffix or '(none)'}; use .safetensors or .pt")
        if suffix == ".safetensors":
            payload = self.to_bytes()
            atomic_write(path, lambda f: f.write(payload))
        else:
            cpu = self.to("cpu").check("voice to save")
            gen = {k: (v.detach() if v is not None else None) for k, v in cpu.gen.as_dict().items()}
            if cpu.t3 is None:
                obj: Any = gen
            else:
                obj = {"t3": {k: (v.detach() if v is not None else None) for k, v in cpu.t3.as_dict().items()},
                       "gen": gen}
            buffer = io.BytesIO()  # serialised first: a full disk is then an OSError of the write, not torch's
            torch.save(obj, buffer)
            payload = buffer.getvalue()
            atomic_write(path, lambda f: f.write(payload))
        return path

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "<bytes>") -> Voice:
        """Read a voicebank ``.safetensors`` voice from its bytes (see :meth:`to_bytes`), validated.

        ``where`` names the source in error messages.  Only the safetensors format is read from bytes: it
        holds no code, so bytes from anywhere are safe to pass.
        """
        return _voice_from_safetensors(bytes(data), where)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> Voice:
        """Read a voicebank ``.safetensors`` or an upstream ``.pt`` (``conds.pt`` included), validated."""
        path = Path(path)
        data = _read_voice_file(path)
        if _sniff(data, str(path)) == "safetensors":
            voice = _voice_from_safetensors(data, str(path))
        else:
            voice = _load_pt(data, str(path))
        return voice.to(device) if str(device) != "cpu" else voice

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: metadata and each tensor's shape and dtype."""
        meta = self.metadata.to_strings()
        return {"metadata": meta,
                "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                            for k, v in self.tensors().items()}}


# --- validation --------------------------------------------------------------------------------------

_SPEC: dict[str, tuple[tuple[int | None, ...], torch.dtype]] = {
    "t3.speaker_emb": ((1, SPEAKER_EMB_DIM), torch.float32),
    "t3.cond_prompt_speech_tokens": ((1, None), torch.int64),
    "t3.emotion_adv": ((1, 1, 1), torch.float32),
    "gen.prompt_token": ((1, None), torch.int64),
    "gen.prompt_token_len": ((1,), torch.int64),
    "gen.prompt_feat": ((1, None, N_MELS_S3GEN), torch.float32),
    "gen.embedding": ((1, XVECTOR_DIM), torch.float32),
}


def _check_tensor(name: str, t: Any, where: str) -> torch.Tensor:
    if not torch.is_tensor(t):
        raise VoiceFileError(f"{where}: {name} is a {type(t).__name__}, not a tensor")
    if t.layout != torch.strided or t.is_quantized or t.is_nested:
        raise VoiceFileError(f"{where}: {name} is a {str(t.layout).replace('torch.', '')} tensor; only dense tensors "
                             "are read")
    if t.device.type != "cpu":
        raise VoiceFileError(f"{where}: {name} is on the {t.device.type} device; only tensors with data are read")
    shape, dtype = _SPEC[name]
    if t.dtype != dtype:
        raise VoiceFileError(f"{where}: {name} has dtype {str(t.dtype).replace('torch.', '')}, "
                             f"expected {str(dtype).replace('torch.', '')}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape, strict=True)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise VoiceFileError(f"{where}: {name} has shape {tuple(t.shape)}, expected {want}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise VoiceFileError(f"{where}: {name} holds NaN or infinite values")
    return t


def validate(tensors: Mapping[str, Any], where: str) -> tuple[T3Conditioning | None, GenConditioning]:
    """Check names, shapes, dtypes and value ranges; build the two parts.  Raises :class:`VoiceFileError`."""
    unknown = sorted(set(tensors) - set(_SPEC))
    if unknown:
        shown = ", ".join(k[:40] for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise VoiceFileError(f"{where}: unexpected entries {shown}; not a Chatterbox voice file")
    gen_required = ("gen.prompt_token", "gen.prompt_token_len", "gen.prompt_feat", "gen.embedding")
    missing = [k for k in gen_required if k not in tensors]
    has_t3 = any(k.startswith("t3.") for k in tensors)
    if has_t3 and "t3.speaker_emb" not in tensors:
        missing.append("t3.speaker_emb")
    if missing:
        raise VoiceFileError(f"{where}: missing {', '.join(missing)}; not a complete Chatterbox voice")
    checked = {k: _check_tensor(k, v, where) for k, v in tensors.items()}
    tokens = checked["gen.prompt_token"]
    if int(checked["gen.prompt_token_len"][0]) != tokens.shape[1]:
        raise VoiceFileError(f"{where}: gen.prompt_token_len {int(checked['gen.prompt_token_len'][0])} "
                             f"!= number of tokens {tokens.shape[1]}")
    for k in ("gen.prompt_token", "t3.cond_prompt_speech_tokens"):
        if k in checked and checked[k].numel() and (checked[k].min() < 0 or checked[k].max() >= SPEECH_VOCAB_SIZE):
            raise VoiceFileError(f"{where}: {k} holds values outside [0, {SPEECH_VOCAB_SIZE})")
    prompt = checked.get("t3.cond_prompt_speech_tokens")
    if prompt is not None and prompt.shape[1] > MAX_T3_PROMPT_TOKENS:
        raise VoiceFileError(f"{where}: more than {MAX_T3_PROMPT_TOKENS} T3 prompt tokens")
    if prompt is not None and prompt.shape[1] == 0:
        raise VoiceFileError(f"{where}: t3.cond_prompt_speech_tokens is empty (0 tokens)")
    frames, n_tokens = checked["gen.prompt_feat"].shape[1], tokens.shape[1]
    if not 0 < frames <= MAX_PROMPT_FEAT_FRAMES:
        raise VoiceFileError(f"{where}: gen.prompt_feat has {frames} mel frames; a reference has 1 to "
                             f"{MAX_PROMPT_FEAT_FRAMES} (upstream: at most 500)")
    if n_tokens == 0 or not frames // 2 - 1 <= n_tokens <= frames // 2:
        # upstream: 2 mel frames per token, the tokens cut to frames // 2 when the clip is not a multiple of 40 ms
        raise VoiceFileError(f"{where}: {n_tokens} gen.prompt_token for {frames} mel frames; Chatterbox gives "
                             f"{frames // 2} (2 frames per token)")
    gen = GenConditioning(prompt_token=tokens, prompt_token_len=checked["gen.prompt_token_len"],
                          prompt_feat=checked["gen.prompt_feat"], embedding=checked["gen.embedding"])
    t3 = None
    if has_t3:
        t3 = T3Conditioning(speaker_emb=checked["t3.speaker_emb"],
                            cond_prompt_speech_tokens=checked.get("t3.cond_prompt_speech_tokens"),
                            emotion_adv=checked.get("t3.emotion_adv"))
    return t3, gen


def _read_voice_file(path: Path) -> bytes:
    try:
        if not path.is_file():
            what = "is a directory, not a voice file" if path.is_dir() else "no such voice file"
            raise VoiceFileError(f"{path}: {what}")
        if path.stat().st_size > MAX_VOICE_FILE_BYTES:
            raise VoiceFileError(f"{path}: {path.stat().st_size} bytes is far too large for a voice file")
        return path.read_bytes()
    except OSError as e:
        raise VoiceFileError(f"{path}: cannot read the voice file ({e.strerror or e})") from e


def _sniff(data: bytes, where: str = "voice file", *, whole: bool = True) -> str:
    """``"safetensors"`` or ``"pt"`` from the bytes (never the file name), else :class:`VoiceFileError`.
    ``whole``: ``data`` is the whole file (else only its head), so the header length can be checked."""
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        return "pt"
    if len(data) >= 9 and data[8:9] == b"{" and (not whole or int.from_bytes(data[:8], "little") <= len(data) - 8):
        return "safetensors"
    raise VoiceFileError(f"{where}: not a voice file (neither safetensors nor a torch .pt file, whatever its name)")


def voice_file_format(path: str | os.PathLike[str]) -> str:
    """How a voice file is stored, from its first bytes: ``voicebank safetensors`` or ``upstream .pt``."""
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        return "voicebank safetensors" if _sniff(head, whole=False) == "safetensors" else "upstream .pt"
    except VoiceFileError:
        return "unknown"


def _voice_from_safetensors(data: bytes, path: str) -> Voice:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    try:
        tensors = load_bytes(data)
        header_len = int.from_bytes(data[:8], "little")  # valid: load_bytes has checked the whole layout
        meta = dict(json.loads(data[8 : 8 + header_len]).get("__metadata__") or {})
    except (SafetensorError, OSError, ValueError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise VoiceFileError(
            f"{path}: not a readable safetensors file ({str(e)[:120]}); it may be truncated: export it again") from e
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise VoiceFileError(f"{path}: its metadata is not text")
    fmt = meta.get("format", FORMAT_NAME)
    if fmt != FORMAT_NAME:
        raise VoiceFileError(f"{path}: format {str(fmt)[:40]!r} is not a voicebank voice")
    version = meta.get("format_version", str(FORMAT_VERSION))
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise VoiceFileError(f"{path}: format version {version[:20]!r} is invalid; re-export the voice")
    if int(version) > FORMAT_VERSION:
        raise VoiceFileError(f"{path}: format version {version} is newer than this voicebank reads "
                             f"({FORMAT_VERSION}); upgrade voicebank")
    t3, gen = validate(tensors, str(path))
    metadata = VoiceMetadata.from_strings(meta, str(path))
    if t3 is not None and metadata.variant == "vc":
        raise VoiceFileError(f"{path}: labelled 'vc' but it has a T3 part; VC voices hold only gen")
    if t3 is None and metadata.variant != "vc":
        metadata = replace(metadata, variant="vc")
    if metadata.exaggeration is None and t3 is not None and t3.emotion_adv is not None:
        metadata = replace(metadata, exaggeration=float(t3.emotion_adv.reshape(-1)[0]))
    return Voice(t3, gen, metadata)


_BLOCKED = (re.compile(r"GLOBAL ([\w.]+)"), re.compile(r"unsupported global:? ([\w.]+)", re.I),
            re.compile(r"unrecognized function `?([\w.]+)"), re.compile(r"but got <class '([\w.]+)'>"))


def _load_pt(data: bytes, path: str) -> Voice:
    import pickle
    import zipfile

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        blocked = next((m.group(1) for rx in _BLOCKED if (m := rx.search(text))), None)
        if blocked is not None:
            raise UnsafeVoiceFileError(
                f"{path}: refused to load: the pickle calls {blocked[:80]}, which a voice file never needs; it was "
                "not run (ask for a .safetensors voice)") from e
        raise VoiceFileError(f"{path}: not a readable torch file (its pickle is damaged); export it again") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, TypeError, AttributeError,
            KeyError, IndexError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise VoiceFileError(f"{path}: not a readable torch file ({_first_line(e)}); it may be truncated") from e
    if not isinstance(obj, Mapping):
        raise VoiceFileError(f"{path}: holds a {type(obj).__name__}, not Chatterbox conditionals")
    flat: dict[str, Any] = {}
    if "gen" in obj or "t3" in obj:
        unknown = sorted(set(obj) - {"t3", "gen"})
        if unknown or not isinstance(obj.get("gen"), Mapping) or not isinstance(obj.get("t3", {}), Mapping):
            raise VoiceFileError(f"{path}: expected {{'t3': dict, 'gen': dict}} as Conditionals.save writes")
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
            raise VoiceFileError(f"{path}: unexpected {prefix} entries {', '.join(unknown[:5])}"
                                 + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
        for k, v in part.items():
            if v is None:
                continue
            if k in ("clap_emb", "cond_prompt_speech_emb", "prompt_feat_len"):
                raise VoiceFileError(f"{path}: {prefix}.{k} is set; voicebank reads only what "
                                     "prepare_conditionals produces (it is None there)")
            flat[f"{prefix}.{k}"] = v.detach() if torch.is_tensor(v) else v
    t3, gen = validate(flat, path)
    exaggeration = None
    if t3 is not None and t3.emotion_adv is not None:
        exaggeration = float(t3.emotion_adv.reshape(-1)[0])
    tokens = t3.cond_prompt_speech_tokens if t3 is not None else None
    if tokens is not None and tokens.shape[1] > VARIANT_SPECS["english"].t3_prompt_tokens:
        variant = "turbo"
    return Voice(t3, gen, VoiceMetadata(variant=variant, exaggeration=exaggeration, voicebank_version=""))


def _first_line(e: BaseException) -> str:
    """The gist of a torch or zip error: its first line, without torch's advice, at most 120 characters."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    for cut in (" Please ", " please ", ". If ", " report "):
        if cut in line:
            line = line[: line.index(cut)]
    return line[:120]


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "GEN_FIELDS", "SPEAKER_EMB_DIM", "SPEECH_VOCAB_SIZE", "XVECTOR_DIM",
           "GenConditioning", "T3Conditioning", "Voice", "VoiceMetadata", "validate"]
