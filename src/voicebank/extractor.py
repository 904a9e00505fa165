"""The extraction pipeline: reference audio -> Chatterbox conditionals, without T3, flow or vocoder.

:class:`Extractor` loads only what conditioning needs (the voice encoder, the S3 speech tokenizer and the
CAM++ speaker encoder), each on first use, straight from the checkpoint into place.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import torch

from .audio import S3_SR, S3GEN_SR, AudioSource
from .conditionals import GenConditioning, T3Conditioning, Voice, VoiceMetadata
from .reference import Reference, prepare_reference
from .weights import (
    S3GEN_PREFIXES,
    Variant,
    WeightFiles,
    check_variant,
    find_weights,
    fingerprint,
    read_tensors,
    strip_prefix,
)

if TYPE_CHECKING:
    from .campplus import CAMPPlus
    from .speech_tokenizer import SpeechTokenizer
    from .voice_encoder import VoiceEncoder

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Called with the number of clips just finished (for progress bars)."""


@dataclass(frozen=True)
class VariantSpec:
    """What differs between Chatterbox variants when preparing conditionals."""

    t3_prompt_seconds: int | None
    """Seconds of 16 kHz audio T3's prompt tokens come from (``ENC_COND_LEN``); ``None``: no T3 part."""
    t3_prompt_tokens: int
    """``speech_cond_prompt_len``: at most this many T3 prompt tokens."""


VARIANT_SPECS: dict[str, VariantSpec] = {
    "english": VariantSpec(6, 150),
    "multilingual": VariantSpec(6, 150),
    "turbo": VariantSpec(15, 375),
    "vc": VariantSpec(None, 0),
}
GEN_REFERENCE_SECONDS = 10
"""S3Gen conditions on the first 10 s of the 24 kHz reference (``DEC_COND_LEN``)."""
DEFAULT_EXAGGERATION = 0.5

Precision = Literal["exact", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("exact", "bf16")
"""``exact``: float32, as upstream.  ``bf16``: the speech tokenizer's matrix products in bfloat16 (opt-in)."""


def _check_exaggeration(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"exaggeration must be a finite number, got {value}")
    return value


T = TypeVar("T")
R = TypeVar("R")


def _decoded(fn: Callable[[T], R], items: Sequence[T], lookahead: int) -> Iterator[R]:
    """``fn(item)`` for each item, in input order, computed on worker threads up to ``lookahead`` items ahead.

    For the audio front end (decoding, resampling, mels), which runs in numpy, soundfile and soxr with the
    GIL released: on as many threads as torch uses, it takes half the time on two cores.  An exception
    is raised when its item's turn comes, so the first unusable input in order is the one reported.
    """
    workers = min(len(items), max(1, torch.get_num_threads()))
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        upcoming = iter(items)
        try:
            for item in itertools.islice(upcoming, max(1, lookahead)):
                pending.append(pool.submit(fn, item))
            while pending:
                done = pending.popleft()
                for item in itertools.islice(upcoming, 1):
                    pending.append(pool.submit(fn, item))
                yield done.result()
        finally:
            for future in pending:
                future.cancel()


class Extractor:
    """Computes Chatterbox voice conditionals for one variant.

    Build it with :meth:`from_local` (a directory of checkpoints, or a single voice-encoder file for
    embeddings only) or :meth:`from_pretrained` (the Hugging Face cache, downloading only if allowed).
    Models load lazily: :meth:`embed` loads just the 5.7 MB voice encoder.

    ``precision="exact"`` (the default) reproduces upstream in float32, within upstream's own run-to-run
    variation (identical speech tokens on the golden cases, floats within ~1e-6).  ``precision="bf16"`` is
    an opt-in that runs the speech tokenizer's matrix products in bfloat16: ~1.4x faster extraction on CPUs
    with AVX512-BF16 or AMX, but some speech tokens differ from exact mode (``benchmarks/fast_mode.py``
    measures how many); its voices carry a different ``weights_fingerprint``.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, *, variant: Variant = "english",
                 device: str | torch.device = "cpu", allow_download: bool = False,
                 precision: Precision = "exact") -> None:
        self.variant: Variant = check_variant(variant)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.precision: Precision = precision
        self.device = torch.device(device)
        self._weights = weights
        self._allow_download = allow_download
        self._lock = threading.RLock()
        self._files: dict[bool, WeightFiles] = {}
        self._ve: VoiceEncoder | None = None
        self._tokenizer: SpeechTokenizer | None = None
        self._campplus: CAMPPlus | None = None
        self._fingerprints: dict[str, str] = {}

    @classmethod
    def from_local(cls, weights: str | os.PathLike[str], *, variant: Variant = "english",
                   device: str | torch.device = "cpu", precision: Precision = "exact") -> Extractor:
        """Use the checkpoints in ``weights`` (a directory, or a voice-encoder file for embeddings only)."""
        return cls(weights, variant=variant, device=device, precision=precision)

    @classmethod
    def from_pretrained(cls, variant: Variant = "english", *, device: str | torch.device = "cpu",
                        allow_download: bool = False, precision: Precision = "exact") -> Extractor:
        """Use ``$VOICEBANK_WEIGHTS`` or the Hugging Face cache; download only when ``allow_download``."""
        return cls(None, variant=variant, device=device, allow_download=allow_download, precision=precision)

    # --- weights ------------------------------------------------------------------------------------

    def weight_files(self, *, need_s3gen: bool = True) -> WeightFiles:
        """Locate the checkpoints (cached).  Raises :class:`~voicebank.errors.WeightsNotFoundError`."""
        with self._lock:
            if need_s3gen not in self._files:
                self._files[need_s3gen] = find_weights(self._weights, variant=self.variant, need_s3gen=need_s3gen,
                                                       allow_download=self._allow_download)
            return self._files[need_s3gen]

    @property
    def voice_encoder(self) -> VoiceEncoder:
        """The voice encoder, loaded on first use."""
        with self._lock:
            if self._ve is None:
                from .voice_encoder import VoiceEncoder

                files = self.weight_files(need_s3gen=False)
                if files.ve is None:  # only for VC, which needs no voice encoder
                    files = find_weights(self._weights, variant="english", need_s3gen=False,
                                         allow_download=self._allow_download)
                assert files.ve is not None
                state = read_tensors(files.ve)
                self._fingerprints["ve"] = fingerprint(state)
                self._ve = VoiceEncoder.from_state(state).to(self.device)
            return self._ve

    def _load_s3gen_parts(self) -> None:
        from .campplus import CAMPPlus
        from .speech_tokenizer import SpeechTokenizer

        files = self.weight_files(need_s3gen=True)
        assert files.s3gen is not None
        state = read_tensors(files.s3gen, prefixes=S3GEN_PREFIXES)
        self._fingerprints["s3gen"] = fingerprint(state)
        self._tokenizer = SpeechTokenizer.from_state(strip_prefix(state, "tokenizer.")).to(self.device)
        if self.precision == "bf16":
            self._tokenizer.to_bf16()
        self._campplus = CAMPPlus.from_state(strip_prefix(state, "speaker_encoder.")).to(self.device)

    @property
    def speech_tokenizer(self) -> SpeechTokenizer:
        """The S3 speech tokenizer (``tokenizer.*`` of the S3Gen checkpoint), loaded on first use."""
        with self._lock:
            if self._tokenizer is None:
                self._load_s3gen_parts()
            assert self._tokenizer is not None
            return self._tokenizer

    @property
    def speaker_encoder(self) -> CAMPPlus:
        """The CAM++ x-vector model (``speaker_encoder.*``), loaded on first use."""
        with self._lock:
            if self._campplus is None:
                self._load_s3gen_parts()
            assert self._campplus is not None
            return self._campplus

    def load(self) -> Extractor:
        """Load every model this variant needs now rather than on first use.  Returns ``self``."""
        if self.variant != "vc":
            _ = self.voice_encoder
        _ = self.speech_tokenizer
        return self

    @property
    def weights_fingerprint(self) -> str:
        """A short fingerprint of the weights this variant's conditionals come from (loads them)."""
        self.load()
        parts = [f"{k}:{self._fingerprints[k]}" for k in ("ve", "s3gen") if k in self._fingerprints]
        if self.precision != "exact":
            parts.append(f"precision:{self.precision}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    # --- embeddings ---------------------------------------------------------------------------------

    def reference(self, source: AudioSource) -> Reference:
        """Decode ``source`` and prepare it for this variant (see :func:`~voicebank.reference.prepare_reference`)."""
        return prepare_reference(source, self.variant)

    def embed(self, sources: Sequence[AudioSource], *, progress: Progress | None = None) -> np.ndarray:
        """Speaker embeddings of clips: ``(len(sources), 256)`` float32, L2-normalised, in input order.

        Equal to upstream's ``t3.speaker_emb`` for each clip to float32 rounding: the clips are decoded on as
        many threads as torch uses, then the partials of several clips share LSTM batches, which is ~25 %
        faster than one pass per clip but can change the last bit of an element (|diff| <= ~1e-7) compared
        with :meth:`extract`, which runs each clip alone.  Raises an :class:`~voicebank.errors.AudioError`
        naming the first unusable clip.
        """
        ve = self.voice_encoder
        variant = "english" if self.variant == "vc" else self.variant

        def front_end(src: AudioSource) -> np.ndarray:
            return ve.prepare(prepare_reference(src, variant, compute_sha256=False).wav16)

        partials = []
        for p in _decoded(front_end, sources, lookahead=len(sources)):  # a fifth of the run, halved
            partials.append(p)
            if progress:
                progress(1)
        if not partials:
            return np.zeros((0, 256), dtype=np.float32)
        return ve.embed_partials(partials).numpy()

    # --- conditionals -------------------------------------------------------------------------------

    @torch.inference_mode()
    def embeddings_of(self, ref: Reference) -> tuple[np.ndarray, np.ndarray]:
        """``(speaker_emb (256,), xvector (192,))`` float32 of a prepared reference, bit-identical to what
        :meth:`extract` puts in ``t3.speaker_emb`` and ``gen.embedding``, without running the speech tokenizer
        (the costly part).  Not for VC, which has no voice encoder."""
        from .resample import sinc_resample

        ve = self.voice_encoder
        speaker = ve.embed_partials([ve.prepare(ref.wav16)])[0]
        ref24 = torch.from_numpy(ref.wav24[: GEN_REFERENCE_SECONDS * S3GEN_SR]).to(self.device)
        xvector = self.speaker_encoder.xvector(sinc_resample(ref24, S3GEN_SR, S3_SR)).reshape(-1)
        return speaker.float().cpu().numpy(), xvector.float().cpu().numpy()

    def extract(self, source: AudioSource, *, exaggeration: float = DEFAULT_EXAGGERATION) -> Voice:
        """Chatterbox conditionals of one reference clip, as upstream ``prepare_conditionals`` computes them.

        For VC only the S3Gen part (``set_target_voice``).  Raises an
        :class:`~voicebank.errors.AudioError` for unusable audio (Turbo: 5 s or less).
        """
        return self.extract_many([source], exaggeration=exaggeration)[0]

    def extract_many(self, sources: Sequence[AudioSource], *, exaggeration: float = DEFAULT_EXAGGERATION,
                     progress: Progress | None = None, batch_size: int = 8) -> list[Voice]:
        """Conditionals of several clips; the tokenizer and voice encoder run batched over ``batch_size`` clips."""
        exaggeration = _check_exaggeration(exaggeration)
        batch_size = max(1, batch_size)
        voices: list[Voice] = []
        refs: list[Reference] = []
        # the next batch decodes on worker threads while this one runs through the models
        for ref in _decoded(self.reference, sources, lookahead=2 * batch_size):
            refs.append(ref)
            if len(refs) == batch_size or len(voices) + len(refs) == len(sources):
                voices.extend(self.conditionals_of(refs, exaggeration=exaggeration))
                if progress:
                    progress(len(refs))
                refs = []
        return voices

    @torch.inference_mode()
    def conditionals_of(self, refs: Sequence[Reference], *, exaggeration: float = DEFAULT_EXAGGERATION) -> list[Voice]:
        """Conditionals of prepared references (see :meth:`reference`), batched.

        Batching is faster than one clip at a time (the voice encoder's LSTM runs the partials of all clips
        together, CAM++ batches windows of equal length) and equal to it to float32 rounding: speech tokens
        and mels are identical, the embeddings may differ in the last bit or so (~1e-7), as batched products
        round differently.  The same batch always gives the same bits.
        """
        from .dsp import s3gen_mel
        from .resample import sinc_resample

        exaggeration = _check_exaggeration(exaggeration)
        spec = VARIANT_SPECS[self.variant]
        campplus = self.speaker_encoder
        fp = self.weights_fingerprint

        gen_windows: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        for ref in refs:
            ref24 = torch.from_numpy(ref.wav24[: GEN_REFERENCE_SECONDS * S3GEN_SR]).to(self.device)
            if float(ref24.abs().max()) > 1.0:
                log.warning("%s: samples outside [-1, 1] (peak %.3f); the reference is clipped",
                            ref.name, float(ref24.abs().max()))
            feats.append(s3gen_mel(ref24))
            ref16 = sinc_resample(ref24, S3GEN_SR, S3_SR)
            gen_windows.append(ref16)
        xvectors = [x.float() for x in campplus.xvectors(gen_windows)]
        t3_windows: list[torch.Tensor] = []
        if spec.t3_prompt_seconds is not None:
            t3_windows = [torch.from_numpy(ref.wav16[: spec.t3_prompt_seconds * S3_SR]).to(self.device)
                          for ref in refs]
        gen_tok, t3_tok = self._tokenize(gen_windows, t3_windows)

        speaker = None
        if spec.t3_prompt_seconds is not None:
            ve = self.voice_encoder
            speaker = ve.embed_partials([ve.prepare(r.wav16) for r in refs])  # one LSTM pass for all clips

        voices = []
        for i, ref in enumerate(refs):
            n_tok = gen_tok[i].shape[0]
            gen_tokens = gen_tok[i][None, :]
            mel_frames = feats[i].shape[0]
            if mel_frames != 2 * n_tok:
                # Upstream's rule when the clip is not a multiple of 40 ms (it logs the same warning).
                log.warning("%s: reference mel length %d is not 2 x token length %d; tokens cut to %d",
                            ref.name, mel_frames, n_tok, mel_frames // 2)
                gen_tokens = gen_tokens[:, : mel_frames // 2]
            gen = GenConditioning(
                prompt_token=gen_tokens.long().contiguous().cpu(),
                prompt_token_len=torch.tensor([gen_tokens.shape[1]], dtype=torch.long),
                prompt_feat=feats[i].unsqueeze(0).float().cpu(),
                embedding=xvectors[i].cpu(),
            )
            t3 = None
            if speaker is not None:
                t3_tokens = t3_tok[i][None, : spec.t3_prompt_tokens]
                t3 = T3Conditioning(
                    speaker_emb=speaker[i : i + 1].float().cpu(),
                    cond_prompt_speech_tokens=t3_tokens.long().contiguous().cpu(),
                    emotion_adv=exaggeration * torch.ones(1, 1, 1),
                )
            meta = VoiceMetadata(
                variant=self.variant,
                exaggeration=exaggeration if t3 is not None else None,
                weights_fingerprint=fp,
                source_sha256=ref.source_sha256,
                source_duration=round(ref.duration, 6),
                source_sample_rate=ref.source_sample_rate,
            )
            voices.append(Voice(t3, gen, meta))
        return voices

    def _tokenize(self, gen_windows: Sequence[torch.Tensor], t3_windows: Sequence[torch.Tensor]
                          ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Speech tokens ``(n_i,)`` of each clip's S3Gen window and T3 window (if any), in one batched call.

        The tokenizer runs its convolutions and attention per window, so each clip's tokens are exactly
        those of extracting it alone, whichever clips share the call.
        """
        tokens, lengths = self.speech_tokenizer.tokenize([*gen_windows, *t3_windows])
        rows = [tokens[i, : int(lengths[i])] for i in range(len(lengths))]
        n = len(gen_windows)
        return rows[:n], rows[n:]


def speaker_embedding(source: AudioSource, *, weights: str | os.PathLike[str] | None = None,
                      device: str | torch.device = "cpu") -> np.ndarray:
    """The (256,) float32 speaker embedding of one clip (``t3.speaker_emb`` of Chatterbox English).

    ``weights``: a directory with ``ve.safetensors``, a voice-encoder file, or ``None`` for
    ``$VOICEBANK_WEIGHTS`` / the Hugging Face cache.
    """
    return Extractor(weights, device=device).embed([source])[0]


def extract_speaker_embedding(source: AudioSource, device: str | torch.device = "cpu", *,
                              weights: str | os.PathLike[str] | None = None, variant: Variant = "english",
                              exaggeration: float = DEFAULT_EXAGGERATION) -> tuple[np.ndarray, Voice]:
    """The seed document's one-call helper: ``(embedding (256,) float32, conditionals)`` of one clip."""
    voice = Extractor(weights, variant=variant, device=device).extract(source, exaggeration=exaggeration)
    return voice.speaker_embedding.cpu().numpy(), voice
