"""The picklable batch transform: rows ``{path or bytes}`` -> result rows, models loaded once per worker.

:class:`BatchTransform` is what every executor runs: the ``local`` engine's worker processes, a Ray Data actor
(``Dataset.map_batches(BatchTransform, fn_constructor_kwargs=...)``), a Spark or Dask pandas UDF.  It is built
from plain settings (weights directory, variants, mode, device, precision), so pickling it is cheap; its
models load on the first batch a worker sees and stay for the worker's life (they are dropped when it is
pickled again).  A clip that cannot be used never fails the batch: its row carries the typed error's class
name and message in ``error_type`` / ``error`` and nulls in the result columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..chatterbox import DEFAULT_EXAGGERATION
from ..errors import InvalidOptionError

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger(__name__)

BatchMode = Literal["embedding", "conditionals"]
BATCH_MODES: tuple[BatchMode, ...] = ("embedding", "conditionals")
"""``embedding``: the 256-d speaker embedding and the 192-d x-vector (no speech tokenizer, cheap);
``conditionals``: the full Chatterbox conditionals as a voice file, plus both vectors."""


MAX_MODEL_BATCH = 4096
"""Most clips a worker puts through the models at once (as :meth:`~voicebank.engine.Engine.extract_many`)."""
MAX_THREADS = 1024
"""Most torch threads a worker may be given."""


@dataclass(frozen=True)
class TransformConfig:
    """Everything a worker needs to build its models; plain values only, so it pickles and travels as JSON."""

    weights: str | None = None
    """Directory with the Chatterbox checkpoints (``None``: ``$VOICEBANK_WEIGHTS``, then the HF cache)."""
    variants: tuple[str, ...] = ("english",)
    """One output row per input and variant."""
    mode: BatchMode = "embedding"
    device: str = "cpu"
    precision: str = "exact"
    exaggeration: float = DEFAULT_EXAGGERATION
    """Conditionals mode: T3's ``emotion_adv``."""
    model_batch: int | None = None
    """Clips that go through the models together.  ``None``: 1 on the CPU, where a clip alone is bit-identical
    to :meth:`~voicebank.engine.Engine.extract` and batching gains ~3 %; 16 on an accelerator, where
    batching is what keeps it busy (clips bucketed by length; equal to ``extract`` to float32 rounding)."""
    threads: int | None = None
    """Torch intra-op threads of a worker; ``None``: ``$OMP_NUM_THREADS`` when set (Ray sets it per actor
    from its CPUs), else torch's default."""

    def __post_init__(self) -> None:
        from ..options import check_exaggeration, check_number, check_variant

        if self.mode not in BATCH_MODES:
            raise InvalidOptionError(f"unknown mode {self.mode!r}: choose one of {', '.join(BATCH_MODES)}")
        variants = tuple(check_variant(v) for v in self.variants)
        if not variants:
            raise InvalidOptionError("give at least one variant")
        if len(set(variants)) != len(variants):
            raise InvalidOptionError(f"variants repeat: {', '.join(variants)}")
        if self.mode == "embedding" and "vc" in variants:
            raise InvalidOptionError("embedding mode needs a voice encoder, which the vc variant does not have; "
                                     "use --mode conditionals for vc")
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "exaggeration", check_exaggeration(self.exaggeration))
        for name, hi in (("model_batch", MAX_MODEL_BATCH), ("threads", MAX_THREADS)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(check_number(value, name, 1, hi, integer=True)))

    @property
    def effective_model_batch(self) -> int:
        """:attr:`model_batch`, or its device-dependent default."""
        if self.model_batch is not None:
            return self.model_batch
        return 1 if self.device.split(":")[0] == "cpu" else 16

    def to_dict(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this config (``TransformConfig(**d)``)."""
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d


def _engine(config: TransformConfig) -> Engine:
    """The process's engine for ``config``'s weights, device and precision
    (:func:`~voicebank.engine.shared_engine`): Spark and Dask unpickle a fresh transform for every task, and
    the registry keeps their Python workers from loading the models each time."""
    from ..engine import shared_engine

    return shared_engine(config.weights, device=config.device, precision=config.precision)  # type: ignore[arg-type]


def weights_fingerprints(config: TransformConfig) -> dict[str, str]:
    """``variant -> weights fingerprint`` of ``config`` (from the checkpoint files; no model is built)."""
    engine = _engine(config)
    return {v: engine.weights_fingerprint(v) for v in config.variants}


@dataclass
class InputRow:
    """One input clip: a ``path`` (read by the worker) or the file's ``data`` (``path`` then only names it)."""

    path: str
    data: bytes | None = None


@dataclass
class _RowRead:
    """One input row read (and, per variant, prepared), or why it could not be."""

    row: InputRow
    ref: Any = None  # voicebank.audio.reference.Reference
    error: BaseException | None = None
    sha256: str | None = None
    clip: Any = None  # voicebank.audio.Clip: the input read once, shared by every variant


def worker_id() -> str:
    """Who computed a row: ``ray:<node id>/<pid>`` in a Ray worker, ``<host name>/<pid>`` elsewhere."""
    import socket
    import sys

    if "ray" in sys.modules:  # only a process that Ray runs has it imported and initialised
        try:
            import ray

            if ray.is_initialized():
                return f"ray:{ray.get_runtime_context().get_node_id()[:16]}/{os.getpid()}"
        except Exception:  # provenance only: never fail a row over it
            log.debug("no Ray node id", exc_info=True)
    return f"{socket.gethostname()}/{os.getpid()}"


def _error_row(path: str, variant: str, mode: str, fingerprint: str | None, error: BaseException,
               sha256: str | None = None) -> dict[str, Any]:
    from .._version import __version__

    return {"worker": worker_id(), "path": path, "source_sha256": sha256, "duration": None, "sample_rate": None,
            "speaker_emb": None, "xvector": None, "voice": None, "mode": mode, "variant": variant,
            "weights_fingerprint": fingerprint, "voicebank_version": __version__, "error_type": type(error).__name__,
            "error": str(error) or type(error).__name__}


def _file_sha256(row: InputRow) -> str | None:
    """sha256 of the input's bytes, or ``None`` when they cannot be read."""
    import hashlib

    if row.data is not None:
        return hashlib.sha256(row.data).hexdigest()
    h = hashlib.sha256()
    try:
        with open(row.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


class BatchTransform:
    """Maps a batch of input rows to result rows (see :mod:`voicebank.batch.dataset` for the columns).

    Call it with a pyarrow ``Table``, a pandas ``DataFrame`` or a ``dict`` of columns holding ``path`` and/or
    ``data`` (file bytes); it returns the same kind, one row per input and variant, in input order.  Built
    with the same keywords as :class:`TransformConfig`, so Ray can construct it in each actor::

        ds.map_batches(BatchTransform, fn_constructor_kwargs=config.to_dict(), batch_format="pyarrow",
                       compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1)
    """

    def __init__(self, config: TransformConfig | None = None, **settings: Any) -> None:
        if config is None:
            settings = dict(settings)
            if "variants" in settings:
                settings["variants"] = tuple(settings["variants"])
            config = TransformConfig(**settings)
        elif settings:
            raise TypeError("give a TransformConfig or keyword settings, not both")
        self.config = config
        self._engine: Engine | None = None
        self._fingerprints: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"BatchTransform({self.config!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}  # settings travel, models do not

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._engine = None
        self._fingerprints = {}

    # --- models -----------------------------------------------------------------------------------------

    def load(self) -> BatchTransform:
        """Load every variant's models now (otherwise on the first batch).  Returns ``self``."""
        if self._engine is not None:
            return self
        threads = self.config.threads
        if threads is None:
            from ..settings import Settings

            threads = Settings.from_env().omp_threads  # Ray sets OMP_NUM_THREADS from the actor's CPUs
        from ..models.torch_runtime import torch_installed

        if threads and torch_installed():  # without torch, embedding jobs run numpy alone
            import torch

            torch.set_num_threads(max(1, threads))
        engine = _engine(self.config)
        # an embedding-only job builds the voice encoder and CAM++, never the speech tokenizer
        engine.load(self.config.variants, embeddings_only=self.config.mode == "embedding")
        self._fingerprints = {v: engine.weights_fingerprint(v) for v in self.config.variants}
        self._engine = engine
        log.info("batch worker %d: models of %s loaded on %s", os.getpid(), ", ".join(self.config.variants),
                 self.config.device)
        return self

    @property
    def fingerprints(self) -> dict[str, str]:
        """``variant -> weights fingerprint`` (loads the models)."""
        self.load()
        return dict(self._fingerprints)

    # --- the transform ----------------------------------------------------------------------------------

    def __call__(self, batch: Any) -> Any:
        rows = _input_rows(batch)
        out = self.process(rows)
        from .dataset import rows_to_table

        table = rows_to_table(out)
        if isinstance(batch, dict):
            return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        if type(batch).__module__.startswith("pandas"):
            return table.to_pandas()
        return table

    def process(self, rows: Sequence[InputRow]) -> list[dict[str, Any]]:
        """Result rows (plain dicts) for ``rows``: for each input in order, one row per variant."""
        self.load()
        results: dict[tuple[int, str], dict[str, Any]] = {}
        read = [self._read(row) for row in rows]  # each input read and decoded once, for every variant
        for variant in self.config.variants:
            clips = [self._prepare(c, variant) for c in read]
            good = [i for i, c in enumerate(clips) if c.error is None]
            for i, c in enumerate(clips):
                if c.error is not None:
                    results[i, variant] = _error_row(c.row.path, variant, self.config.mode,
                                                     self._fingerprints[variant], c.error, c.sha256)
            # clips of similar length share model batches (on the CPU each clip runs alone by default)
            good.sort(key=lambda i: clips[i].ref.wav24.shape[0])
            size = self.config.effective_model_batch
            for start in range(0, len(good), size):
                chunk = good[start : start + size]
                for i, row in zip(chunk, self._run([clips[i] for i in chunk], variant), strict=True):
                    results[i, variant] = row
        return [results[i, v] for i in range(len(rows)) for v in self.config.variants]

    def _read(self, row: InputRow) -> _RowRead:
        from ..audio import Clip

        source: Any = row.data if row.data is not None else row.path
        try:
            clip = Clip.read(source, name=row.path)
            return _RowRead(row, clip=clip, sha256=clip.sha256)
        except Exception as e:  # whatever a bad file makes the decoder raise, it fails this row only
            # the file's hash still keys the row, so a re-run knows this input was seen
            return _RowRead(row, error=e, sha256=_file_sha256(row))

    def _prepare(self, read: _RowRead, variant: str) -> _RowRead:
        if read.error is not None:
            return read
        assert self._engine is not None
        try:
            return _RowRead(read.row, ref=self._engine.reference(read.clip, variant), clip=read.clip,
                            sha256=read.sha256)
        except Exception as e:  # e.g. a clip too short for Turbo: this variant's row only
            return _RowRead(read.row, error=e, sha256=read.sha256)

    def _run(self, clips: Sequence[_RowRead], variant: str) -> list[dict[str, Any]]:
        """Result rows of decoded clips; a failure in the models fails only the clips it concerns."""
        try:
            return self._rows(clips, variant)
        except Exception as e:  # e.g. out of memory on a long batch: retried clip by clip below
            if len(clips) == 1:
                c = clips[0]
                return [_error_row(c.row.path, variant, self.config.mode, self._fingerprints[variant], e,
                                   c.ref.source_sha256)]
            log.warning("a batch of %d clips failed (%s); running them one by one", len(clips), e)
            return [row for c in clips for row in self._run([c], variant)]

    def _rows(self, clips: Sequence[_RowRead], variant: str) -> list[dict[str, Any]]:
        from .._version import __version__

        engine = self._engine
        assert engine is not None
        refs = [c.ref for c in clips]
        speaker: list[Any] = []
        xvec: list[Any] = []
        voices: list[bytes | None] = [None] * len(refs)
        if self.config.mode == "embedding":
            for ref in refs:  # bit-identical to what extract() puts in the voice (one clip per pass)
                s, x = engine.embeddings(ref, variant)
                speaker.append(s)
                xvec.append(x)
        else:
            made = engine.conditionals(refs, variant, exaggeration=self.config.exaggeration)
            for i, v in enumerate(made):
                speaker.append(v.speaker_embedding.numpy() if v.t3 is not None else None)
                xvec.append(v.xvector.numpy())
                voices[i] = v.to_bytes()
        worker = worker_id()
        return [{"worker": worker, "path": c.row.path, "source_sha256": c.ref.source_sha256,
                 "duration": float(c.ref.duration), "sample_rate": int(c.ref.source_sample_rate),
                 "speaker_emb": speaker[i], "xvector": xvec[i],
                 "voice": voices[i], "mode": self.config.mode, "variant": variant,
                 "weights_fingerprint": self._fingerprints[variant], "voicebank_version": __version__,
                 "error_type": None, "error": None}
                for i, c in enumerate(clips)]


def _input_rows(batch: Any) -> list[InputRow]:
    """Input rows of a pyarrow Table, a pandas DataFrame or a dict of columns (``path`` and/or ``data``)."""
    columns: Mapping[str, Iterable[Any]]
    if isinstance(batch, Mapping):
        columns = batch
    elif hasattr(batch, "to_pydict"):  # pyarrow
        columns = batch.to_pydict()
    elif hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # pandas
        columns = {c: list(batch[c]) for c in batch.columns}
    else:
        raise TypeError(f"a batch must be a pyarrow Table, a pandas DataFrame or a dict, not {type(batch).__name__}")
    if "path" not in columns and "data" not in columns:
        raise ValueError(f"a batch needs a 'path' or a 'data' column; it has {', '.join(columns) or 'none'}")
    paths = [str(p) if p is not None else None for p in columns.get("path", [])]
    datas = [bytes(d) if d is not None else None for d in columns.get("data", [])]
    n = max(len(paths), len(datas))
    paths += [None] * (n - len(paths))
    datas += [None] * (n - len(datas))
    return [InputRow(path=p if p is not None else f"<bytes #{i}>", data=d)
            for i, (p, d) in enumerate(zip(paths, datas, strict=True))]
