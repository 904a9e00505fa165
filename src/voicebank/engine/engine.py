"""The :class:`Engine`: the models for one (weights, device, precision), serving every Chatterbox variant.

Conditioning needs three models: the voice encoder (``ve.*``), the S3 speech tokenizer (``tokenizer.*`` of an
S3Gen checkpoint) and the CAM++ speaker encoder (``speaker_encoder.*``).  The engine loads each on first need
and only then (an embedding-only job never builds the 124M-parameter tokenizer), and keeps one copy per
distinct set of tensors: the tokenizer and CAM++ tensors are the same in all three S3Gen checkpoints and the
voice encoder is the same for English, Multilingual and Turbo, so a process serving all four variants holds
one of each.  The variant is an argument of each call.

Whoever owns the process builds the engine (a CLI command, a web app's startup, a batch worker) and hands it
down; it is safe to share between threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from ..audio.clip import Clip
from ..audio.decode import AudioSource
from ..audio.reference import Reference, prepare_reference
from ..chatterbox import DEFAULT_EXAGGERATION, GEN_REFERENCE_SECONDS, S3_SR, S3GEN_SR, VARIANT_SPECS
from ..errors import InvalidOptionError, NonFiniteOutputError
from ..models.checkpoints import (
    S3GEN_PREFIXES,
    WeightFiles,
    file_fingerprints,
    find_weights,
    read_tensors,
    strip_prefix,
)
from ..models.fingerprint_cache import FingerprintCache
from ..models.torch_runtime import require_torch, torch_installed
from ..options import check_exaggeration, check_number, check_variant, embedding_variant
from ..progress import Progress
from .runtime import check_device, decoded_ahead, device_name

if TYPE_CHECKING:
    import torch

    from ..models.campplus import CAMPPlus
    from ..models.speech_tokenizer import SpeechTokenizer
    from ..models.voice_encoder import VoiceEncoder
    from ..models.voice_encoder_numpy import NumpyVoiceEncoder
    from ..settings import Settings
    from ..voice.voice import Voice

log = logging.getLogger(__name__)


MAX_THREADS = 1024
"""Most torch threads an engine may be given."""

Precision = Literal["exact", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("exact", "bf16")
"""``exact``: float32, as upstream.  ``bf16``: the speech tokenizer's matrix products in bfloat16 (opt-in)."""

ModelKind = Literal["voice_encoder", "speech_tokenizer", "speaker_encoder"]

ModuleT = TypeVar("ModuleT", bound="torch.nn.Module")


def _check_finite(x: np.ndarray, what: str) -> None:
    if not np.isfinite(x).all():
        raise NonFiniteOutputError(f"{what} came out as NaN or infinite; check the audio and the weights")


class Engine:
    """Computes Chatterbox voice conditionals for every variant from one set of weights.

    ``weights``: a checkpoint directory (or a single voice-encoder file, for embeddings only); ``None``:
    ``$VOICEBANK_WEIGHTS``, then the Hugging Face cache (see :func:`~voicebank.models.checkpoints.find_weights`).
    ``allow_download``: fetch missing checkpoints with ``huggingface_hub`` (never when ``HF_HUB_OFFLINE``).
    ``threads``: torch's intra-op threads, set when the engine is built, or when it first loads a torch model if
    torch was not loaded yet (torch has one such setting per process: the last engine to set it decides);
    ``None`` leaves torch's setting alone.  Speaker embeddings alone (:meth:`embed`, :meth:`embeddings` without
    the x-vector) run the numpy voice encoder and never import torch.
    ``precision="exact"`` (default) reproduces upstream in float32; ``"bf16"`` runs the speech tokenizer's
    matrix products in bfloat16 (faster on CPUs with AVX512-BF16/AMX; a few tokens differ; its voices carry
    a different ``weights_fingerprint``).
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, *, device: str | torch.device = "cpu",
                 precision: Precision = "exact", threads: int | None = None, allow_download: bool = False,
                 settings: Settings | None = None) -> None:
        if precision not in PRECISIONS:
            raise InvalidOptionError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.threads = int(check_number(threads, "threads", 1, MAX_THREADS, integer=True)) if threads else None
        self._threads_set = False
        if "torch" in sys.modules:
            self._set_torch_threads()
        from ..settings import Settings

        self.settings = settings if settings is not None else Settings.from_env()
        self.weights = Path(weights).expanduser() if weights is not None else None
        self._device = None if device_name(device) == "cpu" else check_device(device)
        self.precision: Precision = precision
        self.allow_download = allow_download
        self._lock = threading.RLock()
        self._files: dict[tuple[str, bool], WeightFiles] = {}
        self._part_fps: dict[tuple[Path, tuple[str, ...]], str] = {}
        try:
            cache_dir: Path | None = self.settings.cache_path
        except Exception as e:  # no home directory to put a user cache in: go without one
            log.debug("no cache directory for weights fingerprints: %s", e)
            cache_dir = None
        self._fingerprint_cache = FingerprintCache(cache_dir)
        self._models: dict[tuple[ModelKind | Literal["voice_encoder_numpy"], str], Any] = {}
        self.loads: dict[ModelKind, int] = {"voice_encoder": 0, "speech_tokenizer": 0, "speaker_encoder": 0}
        """How many times each kind of model was built (for tests and benchmarks)."""

    @property
    def device(self) -> torch.device:
        """The device the torch models run on (imports torch)."""
        if self._device is None:
            self._device = require_torch("a torch device").device("cpu")
        return self._device

    def _set_torch_threads(self) -> None:
        if self.threads is not None and not self._threads_set:
            require_torch("the torch models").set_num_threads(self.threads)
            self._threads_set = True

    def __repr__(self) -> str:
        device = str(self._device) if self._device is not None else "cpu"
        return (f"Engine(weights={str(self.weights) if self.weights else None!r}, device={device!r}, "
                f"precision={self.precision!r}, threads={self.threads!r})")

    # --- weights ------------------------------------------------------------------------------------

    def weight_files(self, variant: str = "english", *, need_s3gen: bool = True) -> WeightFiles:
        """Where the checkpoints of ``variant`` are (cached).

        Raises :class:`~voicebank.errors.WeightsNotFoundError`.
        """
        v = check_variant(variant)
        key = (v, need_s3gen)
        with self._lock:
            if key not in self._files:
                self._files[key] = find_weights(self.weights, variant=v, need_s3gen=need_s3gen,
                                                allow_download=self.allow_download, settings=self.settings)
            return self._files[key]

    def _ve_file(self, variant: str) -> Path:
        files = self.weight_files(embedding_variant(variant), need_s3gen=False)
        assert files.ve is not None  # find_weights guarantees it for every variant but VC
        return files.ve

    def _s3gen_file(self, variant: str) -> Path:
        files = self.weight_files(variant, need_s3gen=True)
        assert files.s3gen is not None
        return files.s3gen

    def _fingerprint(self, path: Path, prefixes: tuple[str, ...] | None) -> str:
        key = (path, prefixes or ())
        with self._lock:
            fp = self._part_fps.get(key)
        if fp is None:
            # an S3Gen file's parts and their union in one pass over the file (the same windows are hashed)
            groups: list[tuple[str, ...] | None] = (
                [S3GEN_PREFIXES, *((p,) for p in S3GEN_PREFIXES)] if prefixes and set(prefixes) <= set(S3GEN_PREFIXES)
                else [prefixes])
            fps = self._fingerprint_cache.get(path, groups)
            if fps is None:
                fps = file_fingerprints(path, groups)
                self._fingerprint_cache.put(path, groups, fps)
            with self._lock:
                for g, value in zip(groups, fps, strict=True):
                    self._part_fps[(path, g or ())] = value
                fp = self._part_fps[key]
        return fp

    def weights_fingerprint(self, variant: str = "english") -> str:
        """A short fingerprint of the weights ``variant``'s conditionals come from.

        Computed from the checkpoint files (a few KiB of each tensor), never by building a model.
        """
        v = check_variant(variant)
        parts = []
        if v != "vc":
            parts.append(f"ve:{self._fingerprint(self._ve_file(v), None)}")
        parts.append(f"s3gen:{self._fingerprint(self._s3gen_file(v), S3GEN_PREFIXES)}")
        if self.precision != "exact":
            parts.append(f"precision:{self.precision}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    # --- models -------------------------------------------------------------------------------------

    def _model(self, kind: ModelKind, path: Path, prefix: str | None, build: Callable[[dict[str, Any]], Any]) -> Any:
        require_torch(f"the {kind.replace('_', ' ')} (torch)" if kind == "voice_encoder" else {
            "speech_tokenizer": "the speech tokenizer (speech tokens, conditionals)",
            "speaker_encoder": "CAM++ (the x-vector)"}[kind])
        self._set_torch_threads()
        key = (kind, self._fingerprint(path, (prefix,) if prefix else None))
        with self._lock:
            model = self._models.get(key)
            if model is None:
                state = read_tensors(path, prefixes=(prefix,) if prefix else None)
                model = build(strip_prefix(state, prefix) if prefix else state)
                self._models[key] = model
                self.loads[kind] += 1
                log.debug("loaded the %s from %s", kind.replace("_", " "), path)
            return model

    def _placed(self, model: ModuleT) -> ModuleT:
        """``model`` (built from checkpoint tensors, all on the CPU) on this engine's device.  On the CPU it is
        returned as is: ``Module.to`` would still visit every submodule (~20 ms for the three models)."""
        return model if self.device.type == "cpu" else model.to(self.device)

    def voice_encoder(self, variant: str = "english") -> VoiceEncoder:
        """The voice encoder of ``variant`` (VC: English's), loaded on first use."""
        from ..models.voice_encoder import VoiceEncoder

        return self._model("voice_encoder", self._ve_file(variant), None,
                           lambda state: self._placed(VoiceEncoder.from_state(state)))

    def numpy_voice_encoder(self, variant: str = "english") -> NumpyVoiceEncoder:
        """The voice encoder of ``variant`` in numpy (VC: English's), loaded on first use; never imports torch.

        Counted in :attr:`loads` as a ``voice_encoder``.
        """
        from ..models.checkpoints import read_arrays
        from ..models.voice_encoder_numpy import NumpyVoiceEncoder

        path = self._ve_file(variant)
        key: tuple[ModelKind | Literal["voice_encoder_numpy"], str] = ("voice_encoder_numpy",
                                                                       self._fingerprint(path, None))
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = NumpyVoiceEncoder.from_state(read_arrays(path))
                self.loads["voice_encoder"] += 1
                log.debug("loaded the numpy voice encoder from %s", path)
            return model

    def speech_tokenizer(self, variant: str = "english") -> SpeechTokenizer:
        """The S3 speech tokenizer (``tokenizer.*`` of ``variant``'s S3Gen checkpoint), loaded on first use."""
        from ..models.speech_tokenizer import SpeechTokenizer

        def build(state: dict[str, Any]) -> SpeechTokenizer:
            tok = self._placed(SpeechTokenizer.from_state(state))
            if self.precision == "bf16":
                tok.to_bf16()
            return tok

        return self._model("speech_tokenizer", self._s3gen_file(variant), "tokenizer.", build)

    def speaker_encoder(self, variant: str = "english") -> CAMPPlus:
        """The CAM++ x-vector model (``speaker_encoder.*``), loaded on first use."""
        from ..models.campplus import CAMPPlus

        return self._model("speaker_encoder", self._s3gen_file(variant), "speaker_encoder.",
                           lambda state: self._placed(CAMPPlus.from_state(state)))

    def load(self, variants: Sequence[str] = ("english",), *, embeddings_only: bool = False) -> Engine:
        """Load now every model ``variants`` need (rather than on first use).  Returns ``self``.

        ``embeddings_only``: only what :meth:`embeddings` runs (what embedding-only jobs run): the voice encoder
        and CAM++, or without torch the numpy voice encoder alone.
        """
        for v in variants:
            v = check_variant(v)
            if embeddings_only and not torch_installed():
                self.numpy_voice_encoder(v)
                continue
            if v != "vc":
                self.voice_encoder(v)
            self.speaker_encoder(v)
            if not embeddings_only:
                self.speech_tokenizer(v)
        return self

    def loaded_models(self) -> list[str]:
        """``kind:fingerprint`` of every model held now."""
        with self._lock:
            return [f"{kind}:{fp}" for kind, fp in self._models]

    # --- embeddings ---------------------------------------------------------------------------------

    def embed(self, sources: Sequence[AudioSource | Clip], *, variant: str = "english",
              progress: Progress | None = None) -> np.ndarray:
        """Speaker embeddings of clips: ``(len(sources), 256)`` float32, L2-normalised, in input order.

        Equal to upstream's ``t3.speaker_emb`` for each clip to float32 rounding (within ~3e-7 of :meth:`extract`'s):
        the voice encoder runs in numpy (:mod:`~voicebank.models.voice_encoder_numpy`, never torch), the clips
        are decoded on as many threads as there are CPUs, then the partials of several clips share LSTM batches.
        Only the voice encoder is loaded.  Raises an :class:`~voicebank.errors.AudioError` naming the first
        unusable clip.
        """
        v = embedding_variant(variant)
        ve = self.numpy_voice_encoder(v)

        def front_end(src: AudioSource | Clip) -> np.ndarray:
            return ve.prepare(prepare_reference(Clip.read(src), v).wav16)

        partials = []
        for p in decoded_ahead(front_end, sources, lookahead=len(sources)):
            partials.append(p)
            if progress:
                progress(1)
        if not partials:
            return np.zeros((0, 256), dtype=np.float32)
        out = ve.embed_partials(partials)
        _check_finite(out, "the speaker embeddings")
        return out

    def embeddings(self, source: AudioSource | Clip | Reference, variant: str = "english", *,
                   xvector: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(speaker_emb (256,), xvector (192,) or None)`` float32 of one clip, without the speech tokenizer
        (the costly part).

        ``xvector``: compute CAM++'s x-vector (needs torch: :class:`~voicebank.errors.MissingDependencyError`
        without it); ``False``: the speaker embedding alone, from the numpy voice encoder (never imports torch;
        within ~3e-7 of :meth:`extract`'s); ``None`` (default): the x-vector where torch is installed.  With the
        x-vector, both are bit-identical to what :meth:`extract` puts in ``t3.speaker_emb`` and
        ``gen.embedding``.  VC has no voice encoder: its speaker embedding is English's.
        """
        v = embedding_variant(variant)
        ref = source if isinstance(source, Reference) else prepare_reference(Clip.read(source), v)
        if xvector is None:
            xvector = torch_installed()
        if not xvector:
            nve = self.numpy_voice_encoder(v)
            s = nve.embed_partials([nve.prepare(ref.wav16)])[0]
            _check_finite(s, f"{ref.name}: the speaker embedding")
            return s, None
        torch = require_torch("the x-vector (CAM++)")
        from ..audio.sinc import sinc_resample

        with torch.inference_mode():
            campplus = self.speaker_encoder(v)
            ve = self.voice_encoder(v)
            speaker = ve.embed_partials([ve.prepare(ref.wav16)])[0]
            ref24 = torch.from_numpy(ref.wav24[: GEN_REFERENCE_SECONDS * S3GEN_SR]).to(self.device)
            xv = campplus.xvector(sinc_resample(ref24, S3GEN_SR, S3_SR)).reshape(-1)
        s, x = speaker.float().cpu().numpy(), xv.float().cpu().numpy()
        _check_finite(s, f"{ref.name}: the speaker embedding")
        _check_finite(x, f"{ref.name}: the x-vector")
        return s, x

    # --- conditionals -------------------------------------------------------------------------------

    def reference(self, source: AudioSource | Clip, variant: str = "english") -> Reference:
        """``source`` read once and prepared for ``variant`` (see :func:`~voicebank.audio.prepare_reference`)."""
        return prepare_reference(Clip.read(source), check_variant(variant))

    def extract(self, source: AudioSource | Clip, variant: str = "english", *,
                exaggeration: float = DEFAULT_EXAGGERATION) -> Voice:
        """Chatterbox conditionals of one reference clip, as upstream ``prepare_conditionals`` computes them.

        For VC only the S3Gen part (``set_target_voice``).  Raises an
        :class:`~voicebank.errors.AudioError` for unusable audio (Turbo: 5 s or less).
        """
        return self.extract_many([source], variant, exaggeration=exaggeration)[0]

    def extract_many(self, sources: Sequence[AudioSource | Clip], variant: str = "english", *,
                     exaggeration: float = DEFAULT_EXAGGERATION, progress: Progress | None = None,
                     batch_size: int = 8) -> list[Voice]:
        """Conditionals of several clips; the tokenizer and voice encoder run batched over ``batch_size`` clips."""
        v = check_variant(variant)
        exaggeration = check_exaggeration(exaggeration)
        batch_size = int(check_number(batch_size, "batch_size", 1, 4096, integer=True))
        voices: list[Voice] = []
        refs: list[Reference] = []
        # the next batch decodes on worker threads while this one runs through the models
        for ref in decoded_ahead(lambda s: self.reference(s, v), sources, lookahead=2 * batch_size):
            refs.append(ref)
            if len(refs) == batch_size or len(voices) + len(refs) == len(sources):
                voices.extend(self.conditionals(refs, v, exaggeration=exaggeration))
                if progress:
                    progress(len(refs))
                refs = []
        return voices

    def conditionals(self, refs: Sequence[Reference], variant: str = "english", *,
                     exaggeration: float = DEFAULT_EXAGGERATION) -> list[Voice]:
        """Conditionals of references prepared for ``variant`` (see :meth:`reference`), batched.

        Batching is faster than one clip at a time (the voice encoder's LSTM runs the partials of all clips
        together, CAM++ batches windows of equal length) and equal to it to float32 rounding: speech tokens
        and mels are identical, the embeddings may differ in the last bit or so (~1e-7), as batched products
        round differently.  The same batch always gives the same bits.  Needs torch.
        """
        torch = require_torch("conditionals (the speech tokenizer and CAM++)")
        with torch.inference_mode():
            return self._conditionals(torch, refs, variant, exaggeration)

    def _conditionals(self, torch: Any, refs: Sequence[Reference], variant: str, exaggeration: float) -> list[Voice]:
        from ..audio.dsp import s3gen_mel
        from ..audio.sinc import sinc_resample
        from ..voice.voice import GenConditioning, T3Conditioning, Voice, VoiceMetadata

        v = check_variant(variant)
        exaggeration = check_exaggeration(exaggeration)
        spec = VARIANT_SPECS[v]
        campplus = self.speaker_encoder(v)
        fp = self.weights_fingerprint(v)

        gen_windows: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        for ref in refs:
            ref24 = torch.from_numpy(ref.wav24[: GEN_REFERENCE_SECONDS * S3GEN_SR]).to(self.device)
            peak = float(ref24.abs().max())
            if peak > 1.0:
                log.warning("%s: samples outside [-1, 1] (peak %.3f); the reference is clipped", ref.name, peak)
            feats.append(s3gen_mel(ref24))
            gen_windows.append(sinc_resample(ref24, S3GEN_SR, S3_SR))
        xvectors = [x.float() for x in campplus.xvectors(gen_windows)]
        t3_windows: list[torch.Tensor] = []
        if spec.t3_prompt_seconds is not None:
            t3_windows = [torch.from_numpy(ref.wav16[: spec.t3_prompt_seconds * S3_SR]).to(self.device)
                          for ref in refs]
        gen_tok, t3_tok = self._tokenize(v, gen_windows, t3_windows)

        speaker = None
        if spec.t3_prompt_seconds is not None:
            ve = self.voice_encoder(v)
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
                variant=v,
                exaggeration=exaggeration if t3 is not None else None,
                weights_fingerprint=fp,
                source_sha256=ref.source_sha256,
                source_duration=round(ref.duration, 6),
                source_sample_rate=ref.source_sample_rate,
            )
            voices.append(Voice(t3, gen, meta).check(ref.name))  # never return NaN/inf or a malformed voice
        return voices

    def _tokenize(self, variant: str, gen_windows: Sequence[torch.Tensor], t3_windows: Sequence[torch.Tensor],
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Speech tokens ``(n_i,)`` of each clip's S3Gen window and T3 window (if any), in one batched call.

        The tokenizer runs its convolutions and attention per window, so each clip's tokens are exactly
        those of extracting it alone, whichever clips share the call.
        """
        tokens, lengths = self.speech_tokenizer(variant).tokenize([*gen_windows, *t3_windows])
        rows = [tokens[i, : int(lengths[i])] for i in range(len(lengths))]
        n = len(gen_windows)
        return rows[:n], rows[n:]


__all__ = ["MAX_THREADS", "PRECISIONS", "Engine", "Precision", "check_device", "decoded_ahead"]
