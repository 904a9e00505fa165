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

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import MissingDependencyError, UnsafeVoiceFileError, VoiceFileError
from ..fileio import atomic_write

FORMAT_NAME = "voicebank.voice"
FORMAT_VERSION = 1
SPEECH_VOCAB_SIZE = 6561
SPEAKER_EMB_DIM = 256
XVECTOR_DIM = 192
N_MELS_S3GEN = 80
MAX_T3_PROMPT_TOKENS = 375

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
            return cls(
                variant=meta.get("variant", "english"),
                exaggeration=float(meta["exaggeration"]) if "exaggeration" in meta else None,
                weights_fingerprint=meta.get("weights_fingerprint", ""),
                source_sha256=meta.get("source_sha256", ""),
                source_duration=float(meta["source_duration"]) if "source_duration" in meta else None,
                source_sample_rate=int(meta["source_sample_rate"]) if "source_sample_rate" in meta else None,
                voicebank_version=meta.get("voicebank_version", ""),
                hybrid=meta.get("hybrid", ""),
            )
        except ValueError as e:
            raise VoiceFileError(f"{where}: malformed metadata ({e}); re-export the voice") from e


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
        if self.t3 is None:
            raise VoiceFileError("a VC voice has no T3 part, so no exaggeration")
        device = self.t3.speaker_emb.device
        t3 = replace(self.t3, emotion_adv=float(exaggeration) * torch.ones(1, 1, 1, device=device))
        return Voice(t3, self.gen, replace(self.metadata, exaggeration=float(exaggeration)))

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
            cpu = self.to("cpu")
            gen = {k: (v.detach() if v is not None else None) for k, v in cpu.gen.as_dict().items()}
            if cpu.t3 is None:
                obj: Any = gen
            else:
                obj = {"t3": {k: (v.detach() if v is not None else None) for k, v in cpu.t3.as_dict().items()},
                       "gen": gen}
            atomic_write(path, lambda f: torch.save(obj, f))
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
        if not path.is_file():
            raise VoiceFileError(f"{path}: no such voice file")
        if path.suffix.lower() == ".safetensors":
            voice = _load_safetensors(path)
        else:
            voice = _load_pt(path)
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
        raise VoiceFileError(f"{where}: unexpected entries {', '.join(unknown)}; not a Chatterbox voice file")
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
    gen = GenConditioning(prompt_token=tokens, prompt_token_len=checked["gen.prompt_token_len"],
                          prompt_feat=checked["gen.prompt_feat"], embedding=checked["gen.embedding"])
    t3 = None
    if has_t3:
        t3 = T3Conditioning(speaker_emb=checked["t3.speaker_emb"],
                            cond_prompt_speech_tokens=checked.get("t3.cond_prompt_speech_tokens"),
                            emotion_adv=checked.get("t3.emotion_adv"))
    return t3, gen


def _load_safetensors(path: Path) -> Voice:
    # A voice is ~160 kB: reading the bytes and deserialising them is ~2.5x faster than safe_open().
    try:
        data = path.read_bytes()
    except OSError as e:
        raise VoiceFileError(f"{path}: cannot read the voice file ({e.strerror or e})") from e
    return _voice_from_safetensors(data, str(path))


def _voice_from_safetensors(data: bytes, path: str) -> Voice:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    try:
        tensors = load_bytes(data)
        header_len = int.from_bytes(data[:8], "little")  # valid: load_bytes has checked the whole layout
        meta = dict(json.loads(data[8 : 8 + header_len]).get("__metadata__") or {})
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise VoiceFileError(
            f"{path}: not a readable safetensors file ({e}); it may be truncated: export it again") from e
    fmt = meta.get("format", FORMAT_NAME)
    if fmt != FORMAT_NAME:
        raise VoiceFileError(f"{path}: format {fmt!r} is not a voicebank voice")
    version = meta.get("format_version", str(FORMAT_VERSION))
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise VoiceFileError(f"{path}: format version {version} is newer than this voicebank reads "
                             f"({FORMAT_VERSION}); upgrade voicebank")
    t3, gen = validate(tensors, str(path))
    metadata = VoiceMetadata.from_strings(meta, str(path))
    if t3 is None and metadata.variant != "vc":
        metadata = replace(metadata, variant="vc")
    if metadata.exaggeration is None and t3 is not None and t3.emotion_adv is not None:
        metadata = replace(metadata, exaggeration=float(t3.emotion_adv.reshape(-1)[0]))
    return Voice(t3, gen, metadata)


def _load_pt(path: Path) -> Voice:
    import pickle
    import zipfile

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeVoiceFileError(
            f"{path}: refused to load: the pickle asks for code or objects beyond tensors ({_first_line(e)}); "
            "only load .pt voices from sources you trust, or ask for a .safetensors voice") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
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
        unknown = sorted(str(k) for k in part if k not in allowed)
        if unknown:
            raise VoiceFileError(f"{path}: unexpected {prefix} entries {', '.join(unknown)}")
        for k, v in part.items():
            if v is None:
                continue
            if k in ("clap_emb", "cond_prompt_speech_emb", "prompt_feat_len"):
                raise VoiceFileError(f"{path}: {prefix}.{k} is set; voicebank reads only what "
                                     "prepare_conditionals produces (it is None there)")
            flat[f"{prefix}.{k}"] = v.detach() if torch.is_tensor(v) else v
    t3, gen = validate(flat, str(path))
    exaggeration = None
    if t3 is not None and t3.emotion_adv is not None:
        exaggeration = float(t3.emotion_adv.reshape(-1)[0])
    if t3 is not None and t3.cond_prompt_speech_tokens is not None and t3.cond_prompt_speech_tokens.shape[1] > 150:
        variant = "turbo"
    return Voice(t3, gen, VoiceMetadata(variant=variant, exaggeration=exaggeration, voicebank_version=""))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "GEN_FIELDS", "SPEAKER_EMB_DIM", "SPEECH_VOCAB_SIZE", "XVECTOR_DIM",
           "GenConditioning", "T3Conditioning", "Voice", "VoiceMetadata", "validate"]
