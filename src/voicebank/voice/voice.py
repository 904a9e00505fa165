"""A voice: what Chatterbox needs to speak in it (its conditionals) and where it came from.

A :class:`Voice` carries upstream's two parts under upstream's field names:

* ``t3`` (:class:`T3Conditioning`, ``T3Cond`` upstream): ``speaker_emb`` (1, 256) float32,
  ``cond_prompt_speech_tokens`` (1, N <= 375) int64, ``emotion_adv`` (1, 1, 1) float32.  ``None`` for VC.
* ``gen`` (:class:`GenConditioning`, S3Gen's ``ref_dict``): ``prompt_token`` (1, N) int64,
  ``prompt_token_len`` (1,) int64, ``prompt_feat`` (1, T, 80) float32 log-mel @ 24 kHz (50 frames/s),
  ``embedding`` (1, 192) float32 CAM++ x-vector.

and a :class:`VoiceMetadata`.  What the tensors must be is :mod:`.validation`'s; the two files a voice is kept
in (voicebank ``.safetensors``, upstream ``.pt``) are :mod:`.files`', behind :meth:`Voice.save`,
:meth:`Voice.load`, :meth:`Voice.to_bytes` and :meth:`Voice.from_bytes`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..chatterbox import VARIANT_SPECS
from ..errors import MissingDependencyError, NonFiniteOutputError, VoiceFileError
from .files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    file_format_of,
    pt_bytes,
    read_pt,
    read_safetensors,
    read_voice_file,
    safetensors_bytes,
    sniff,
    write_voice_file,
)
from .validation import GEN_FIELDS, T3_FIELDS, validate

SAMPLE_RATE_RANGE = (1000, 768_000)
"""Source sample rates a voice's metadata may record."""



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

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any], metadata: VoiceMetadata | None = None, *,
                     where: str = "voice") -> Voice:
        """The inverse of :meth:`tensors`: a voice from flat ``t3.<field>`` / ``gen.<field>`` CPU tensors, which
        are validated (:func:`.validation.validate`; :class:`VoiceFileError` names ``where``)."""
        checked = validate(tensors, where)
        gen = GenConditioning(prompt_token=checked["gen.prompt_token"],
                              prompt_token_len=checked["gen.prompt_token_len"],
                              prompt_feat=checked["gen.prompt_feat"], embedding=checked["gen.embedding"])
        t3 = None
        if "t3.speaker_emb" in checked:
            t3 = T3Conditioning(speaker_emb=checked["t3.speaker_emb"],
                                cond_prompt_speech_tokens=checked.get("t3.cond_prompt_speech_tokens"),
                                emotion_adv=checked.get("t3.emotion_adv"))
        return cls(t3, gen, metadata if metadata is not None else VoiceMetadata())

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
        """``self`` if every tensor and metadata field is valid (see :func:`.validation.validate`) and finite; else
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

    # --- files (see .files) ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The voicebank ``.safetensors`` file of this voice (checked first), byte-for-byte reproducible (equal
        voices give equal bytes, so one content address)."""
        self.check("voice to save")
        return safetensors_bytes(self.tensors(), self.metadata.to_strings())

    def save(self, path: str | os.PathLike[str], *, mkdir: bool = False) -> Path:
        """Write the voice: ``.safetensors`` (voicebank format) or ``.pt`` (upstream ``Conditionals.save``).

        The file appears atomically (temp file + rename): a crash never leaves half a file behind.  Its
        directory must exist (:class:`~voicebank.errors.OutputPathError` otherwise, as ``cp`` refuses) unless
        ``mkdir=True``, which creates the missing directories.
        """
        if file_format_of(path) == "safetensors":
            return write_voice_file(path, self.to_bytes(), mkdir=mkdir)
        cpu = self.to("cpu").check("voice to save")
        return write_voice_file(path, pt_bytes(cpu.t3.as_dict() if cpu.t3 is not None else None, cpu.gen.as_dict()),
                                mkdir=mkdir)

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "<bytes>") -> Voice:
        """Read a voicebank ``.safetensors`` voice from its bytes (see :meth:`to_bytes`), validated.

        ``where`` names the source in error messages.  Only the safetensors format is read from bytes: it
        holds no code, so bytes from anywhere are safe to pass.
        """
        tensors, meta = read_safetensors(bytes(data), where)
        voice = cls.from_tensors(tensors, where=where)
        metadata = VoiceMetadata.from_strings(meta, where)
        t3 = voice.t3
        if t3 is not None and metadata.variant == "vc":
            raise VoiceFileError(f"{where}: labelled 'vc' but it has a T3 part; VC voices hold only gen")
        if t3 is None and metadata.variant != "vc":
            metadata = replace(metadata, variant="vc")
        if metadata.exaggeration is None and t3 is not None and t3.emotion_adv is not None:
            metadata = replace(metadata, exaggeration=float(t3.emotion_adv.reshape(-1)[0]))
        return replace(voice, metadata=metadata)

    @classmethod
    def from_pt_bytes(cls, data: bytes, *, where: str = "<bytes>") -> Voice:
        """Read an upstream ``.pt`` voice (``Conditionals.save``'s, or a VC ``ref_dict``) from its bytes, validated;
        a pickle that would run code is refused (:class:`~voicebank.errors.UnsafeVoiceFileError`), never run.
        The variant is what the file shows: VC for a bare ``ref_dict``, Turbo for more T3 prompt tokens than
        English takes, else English."""
        flat, bare_gen = read_pt(bytes(data), where)
        voice = cls.from_tensors(flat, where=where)
        t3 = voice.t3
        exaggeration = float(t3.emotion_adv.reshape(-1)[0]) if t3 is not None and t3.emotion_adv is not None else None
        tokens = t3.cond_prompt_speech_tokens if t3 is not None else None
        variant = ("vc" if bare_gen else "turbo" if tokens is not None
                   and tokens.shape[1] > VARIANT_SPECS["english"].t3_prompt_tokens else "english")
        return replace(voice, metadata=VoiceMetadata(variant=variant, exaggeration=exaggeration, voicebank_version=""))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> Voice:
        """Read a voicebank ``.safetensors`` or an upstream ``.pt`` (``conds.pt`` included), validated; the format
        is read from the bytes, not the name."""
        path = Path(path)
        data = read_voice_file(path)
        if sniff(data, str(path)) == "safetensors":
            voice = cls.from_bytes(data, where=str(path))
        else:
            voice = cls.from_pt_bytes(data, where=str(path))
        return voice.to(device) if str(device) != "cpu" else voice

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: metadata and each tensor's shape and dtype."""
        meta = self.metadata.to_strings()
        return {"metadata": meta,
                "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                            for k, v in self.tensors().items()}}


__all__ = ["SAMPLE_RATE_RANGE", "GenConditioning", "T3Conditioning", "Voice", "VoiceMetadata"]
