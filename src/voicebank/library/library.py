""":class:`Library`: named voices in one of three modes, over a :class:`~voicebank.store.VoiceStore` (what is
kept) and an :class:`~voicebank.engine.Engine` (what is computed).

The three ways to keep a voice (the seed document's options 3, 2 and 1):

* ``audio``: the decoded reference (mono float32 at its own sample rate, in a float WAV: lossless).
  :meth:`Library.get` extracts the conditionals from it, exactly as extraction from the original file
  would, and caches them.
* ``conditionals``: the ready voice file (per variant), plus the decoded audio unless told not to keep
  it.  :meth:`Library.get` just loads it: no weights needed.
* ``embedding``: only the 256-d speaker embedding and the 192-d CAM++ x-vector.  :meth:`Library.get`
  rebuilds full conditionals by borrowing the S3Gen reference (prompt tokens and mel) and T3's prompt
  tokens from a *base* voice; the result is a hybrid and says so in ``VoiceMetadata.hybrid``.

The verbs live in modules named for what they do -- :mod:`.ingest` (``prepare`` then ``commit``),
:mod:`.materialise`, :mod:`.search`, :mod:`.maintenance` -- and this class strings them together.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio.clip import Clip
from ..audio.decode import AudioSource
from ..chatterbox import DEFAULT_EXAGGERATION
from ..errors import InvalidOptionError, WeightsError
from ..options import check_exaggeration, check_number, check_variant
from ..progress import Progress
from ..settings import Settings
from ..similarity import DUPLICATE_THRESHOLD
from ..store.blobs import BlobStore
from ..store.catalogue import Catalogue, Generation
from ..store.records import VoiceInfo
from ..store.shared import open_store
from . import bulk, imports, ingest, maintenance, materialise, search
from .computes import Computes
from .ingest import AddOptions, Prepared
from .names import check_name, clean_tags, current_user, default_name
from .results import AddResult, CheckReport, Comparison, Match, ReextractResult, StaleVoice
from .scoring import Scoring

if TYPE_CHECKING:
    import torch

    from ..engine import Engine, Extractor
    from ..voice.voice import Voice

log = logging.getLogger(__name__)



def default_library_path() -> Path:
    """``$VOICEBANK_LIBRARY``, else the platform's user data directory for voicebank."""
    return Settings.from_env().library_path


def resolve_library_path(path: str | os.PathLike[str] | None) -> Path:
    """``path`` if given, else :func:`default_library_path`."""
    return Path(path).expanduser() if path is not None else default_library_path()


MAX_PAGE = 100_000
"""Most voices one :meth:`Library.list` page may hold."""


class Library:
    """A voice library on disk: ``catalogue.sqlite3`` plus ``blobs/`` (content-addressed) and ``tmp/``.

    ``path``: the library directory (created if missing); default ``$VOICEBANK_LIBRARY``, else the
    platform's user data directory (``platformdirs.user_data_dir("voicebank")``); or a ``postgresql://`` URL with
    ``blobs`` an ``s3://bucket/prefix`` (default ``$VOICEBANK_BLOBS``): a shared library (docs/shared-store.md).

    ``engine``: the :class:`~voicebank.engine.Engine` that computes embeddings and conditionals (shared, not
    copied); without one, the process's engine for ``weights``, ``device``, ``allow_download`` and ``threads``
    (torch's intra-op threads; ``None`` leaves torch's setting alone) (:func:`~voicebank.engine.shared_engine`)
    is asked for on first need.  Listing, showing and getting
    ``conditionals`` voices never ask.

    ``duplicate_threshold``: the normalised similarity score at or above which a new voice is reported as
    possibly the same speaker as a stored one (see :mod:`.search`; raw cosine
    :data:`~voicebank.similarity.DUPLICATE_COSINE` applies when there are no weights to normalise with).

    Safe to share between threads; several processes may use the same library at once.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, weights: str | os.PathLike[str] | None = None,
                 device: str = "cpu", allow_download: bool = False, engine: Engine | Computes | None = None,
                 duplicate_threshold: float = DUPLICATE_THRESHOLD, threads: int | None = None,
                 blobs: str | None = None) -> None:
        self.store = open_store(path, blobs=blobs)  # a directory, or postgresql://... with s3:// blobs
        self.path = self.store.path
        self.duplicate_threshold = check_number(duplicate_threshold, "duplicate_threshold", allow_infinite=True)
        self._engine: Engine | Computes | None = engine
        self._weights = weights
        self._device = device
        self._allow_download = allow_download
        self._threads = threads
        self._current: dict[str, str | None] = {}
        self.scoring = Scoring(self.store)
        """Similarity scores at any size: the speaker-embedding index and the cohort (see :mod:`.scoring`)."""
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Library({str(self.path)!r})"

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def catalogue(self) -> Catalogue:
        """The SQLite catalogue (``self.store.catalogue``)."""
        return self.store.catalogue

    @property
    def blobs(self) -> BlobStore:
        """The content files (``self.store.blobs``)."""
        return self.store.blobs

    def close(self) -> None:
        """Close the catalogue connections (the library can still be used: they reopen on demand)."""
        self.store.close()

    # --- the engine ------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | Computes:
        """The engine (built on first use from the library's weights settings; no model loads until needed)."""
        with self._lock:
            if self._engine is None:
                from ..engine import shared_engine

                self._engine = shared_engine(self._weights, device=self._device, threads=self._threads,
                                             allow_download=self._allow_download)
            return self._engine

    def extractor(self, variant: str = "english") -> Extractor:
        """An :class:`~voicebank.engine.Extractor` for ``variant`` over the library's engine."""
        from ..engine import Engine, Extractor

        engine = self.engine
        if not isinstance(engine, Engine):
            raise TypeError("this library computes with a custom engine, not an Engine")
        return Extractor(engine=engine, variant=check_variant(variant))

    def weights_fingerprint(self, variant: str = "english") -> str:
        """Fingerprint of the weights ``variant`` extracts with now (from the checkpoint files)."""
        return self.engine.weights_fingerprint(check_variant(variant))

    def _current_fingerprint(self, variant: str) -> str | None:
        """The fingerprint of the weights at hand, or ``None`` when there are none (so nothing is stale)."""
        with self._lock:
            if variant in self._current:
                return self._current[variant]
        try:
            fp: str | None = self.engine.weights_fingerprint(variant)
        except WeightsError:
            fp = None
        with self._lock:
            self._current[variant] = fp
        return fp

    # --- reading ---------------------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.store.contains(name)

    def __len__(self) -> int:
        return self.store.count()

    def names(self) -> builtins.list[str]:
        """Every voice name, sorted."""
        return self.store.names()

    def generation(self) -> Generation:
        """A token that changes whenever the catalogue may have changed, by this process or another: equal
        tokens read on the same thread mean that what :meth:`show` and :meth:`list` say is unchanged."""
        return self.store.generation()

    def show(self, name: str) -> VoiceInfo:
        """Everything the library holds about ``name``.  Raises :class:`~voicebank.errors.VoiceNotFoundError`."""
        return self.store.info(name)

    def vectors(self, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(speaker_emb (256,) float32 or None, xvector (192,) float32 or None)`` stored for voice ``name``."""
        stored = self.store.voice(name)
        return stored.speaker_emb, stored.xvector

    def list(self, *, tag: str | None = None, mode: str | None = None, limit: int | None = None,
             after: str | None = None) -> builtins.list[VoiceInfo]:
        """Voices sorted by name (optionally only those with ``tag`` or in ``mode``): a page of at most ``limit``
        (default: every voice) of those named after ``after``.  Pass the last name of a page as ``after`` for
        the next one; a page costs the same however large the library is."""
        if limit is not None:
            limit = int(check_number(limit, "limit", 1, MAX_PAGE, integer=True))
        return self.store.list(tag=tag, mode=ingest.check_mode(mode) if mode is not None else None, limit=limit,
                               after=after)

    # --- adding ----------------------------------------------------------------------------------------

    def add(self, source: AudioSource, name: str | None = None, *, mode: str = "audio",
            variant: str | Sequence[str] = "english", exaggeration: float = DEFAULT_EXAGGERATION,
            tags: Iterable[str] = (), consent: str = "", added_by: str | None = None, keep_audio: bool = True,
            base: str | None = None, force: bool = False) -> AddResult:
        """Add one reference clip as voice ``name`` (default: the file stem), in one transaction.

        ``mode``: ``audio`` (keep the decoded clip; conditionals are extracted on :meth:`get`),
        ``conditionals`` (extract now and keep the voice file per variant, plus the audio unless
        ``keep_audio=False``), or ``embedding`` (keep only the speaker embedding and x-vector; :meth:`get` then
        needs a ``base`` voice, which can be set here).  ``variant``: one variant or several (conditionals
        mode extracts each; the first is the voice's primary variant).

        The clip is read once (:class:`~voicebank.audio.Clip`) and inspected
        (:func:`~voicebank.audio.inspection.inspect_samples`): unusable clips are refused, poor ones too unless
        ``force``.  Refusals raise and write nothing: :class:`~voicebank.errors.VoiceExistsError` (name
        taken), :class:`~voicebank.errors.DuplicateAudioError` (same audio already stored),
        :class:`~voicebank.errors.ReferenceRejectedError`, :class:`~voicebank.errors.AudioError`.  A stored voice
        whose normalised similarity score with the new one reaches ``duplicate_threshold`` is not an error: it
        is reported in ``AddResult.similar`` and ``warnings``.
        """
        opts = self._options(mode, variant, exaggeration, tags, consent, added_by, keep_audio, base, force)
        self.store.check_writable()  # read-only or locked: say so before the costly extraction
        prepared = self.prepare(source, name, opts)
        return self.commit(prepared)

    def options(self, mode: str = "audio", variant: str | Sequence[str] = "english", *,
                exaggeration: float = DEFAULT_EXAGGERATION, tags: Iterable[str] = (), consent: str = "",
                added_by: str | None = None, keep_audio: bool = True, base: str | None = None,
                force: bool = False) -> AddOptions:
        """Checked options for :meth:`prepare` (the base voice must exist)."""
        return self._options(mode, variant, exaggeration, tags, consent, added_by, keep_audio, base, force)

    def _options(self, mode: str, variant: str | Sequence[str], exaggeration: float, tags: Iterable[str],
                 consent: str, added_by: str | None, keep_audio: bool, base: str | None, force: bool) -> AddOptions:
        opts = ingest.add_options(mode, variant, exaggeration=exaggeration, tags=tags, consent=consent,
                                  added_by=added_by, keep_audio=keep_audio, base=base, force=force)
        if opts.base is not None:
            self.store.check_base(opts.base)
        return opts

    def prepare(self, source: AudioSource | Clip, name: str | None, options: AddOptions) -> Prepared:
        """Read, check and compute one clip (no writes): step one of :meth:`add`.

        Raises when the name or the audio is already taken (checked before the costly part) and for refused
        references.
        """
        nm = check_name(name if name is not None else (
            Path(source.name).stem if isinstance(source, Clip) else default_name(source)))
        clip = Clip.read(source)
        self.store.refuse_taken(nm, clip.sha256, clip.name)
        return ingest.prepare(clip, options, self.engine, name=nm)

    def commit(self, prepared: Prepared) -> AddResult:
        """Store a prepared clip in one transaction: step two of :meth:`add`.

        The duplicate check reads only what changed in the library since the last one (the index is kept in
        memory) and scores the new voice against every stored one (or the approximate index's candidates)."""
        similar, norms = search.find_similar(self.scoring, self.engine, prepared.speaker_emb,
                                             prepared.options.variants[0], duplicate_threshold=self.duplicate_threshold)
        out = ingest.commit(self.store, prepared, similar=similar, similar_warnings=search.similar_warnings(similar),
                            norms=norms)
        self.scoring.index.catch_up()  # the graph (if any) takes the new voice in the background
        return out

    def commit_many(self, prepared: Sequence[Prepared], *, check_duplicates: bool = True) -> builtins.list[AddResult]:
        """Store many prepared clips in one transaction, one :class:`AddResult` each in order, never raising for one
        clip (see :func:`voicebank.library.bulk.commit_many`; ``check_duplicates=False``: no look-alike search,
        so the cost per clip does not depend on the library's size)."""
        return bulk.commit_many(self.store, self.scoring, self.engine, [ingest.pending(p) for p in prepared],
                                threshold=self.duplicate_threshold, check_duplicates=check_duplicates)

    def add_many(self, sources: Iterable[AudioSource], *, names: Sequence[str | None] | None = None,
                 mode: str = "audio", variant: str | Sequence[str] = "english",
                 exaggeration: float = DEFAULT_EXAGGERATION, tags: Iterable[str] = (), consent: str = "",
                 added_by: str | None = None, keep_audio: bool = True, base: str | None = None, force: bool = False,
                 workers: int = 2, progress: Progress | None = None) -> builtins.list[AddResult]:
        """Add many clips, one :class:`AddResult` each (``added``, ``skipped`` or ``failed``), never raising for
        one bad clip.

        Each clip is prepared (read, checked, extracted) on one of ``workers`` threads (torch releases the GIL)
        and committed by this thread, the one writer, in input order: an interrupted batch keeps every clip
        stored so far, and running it again skips them (``skipped``: same audio already stored).
        ``progress(1)`` is called as each clip finishes.  With several workers,
        ``torch.set_num_threads(cores // workers)`` avoids oversubscribing the cores (the CLI does).
        """
        srcs = builtins.list(sources)
        if names is not None and len(names) != len(srcs):
            raise InvalidOptionError(f"names has {len(names)} entries for {len(srcs)} sources")
        opts = self._options(mode, variant, exaggeration, tags, consent, added_by, keep_audio, base, force)
        self.store.check_writable()  # read-only or locked: say so before the costly extraction
        n_workers = int(check_number(workers, "workers", 1, 256, integer=True))
        return ingest.add_all(lambda src, name: self.prepare(src, name, opts), self.commit, srcs, names,
                              workers=n_workers, progress=progress)

    def import_file(self, path: str | os.PathLike[str], name: str | None = None, *, tags: Iterable[str] = (),
                    consent: str = "", added_by: str | None = None, exaggeration: float | None = None) -> AddResult:
        """Add a voice file (voicebank ``.safetensors`` or upstream ``.pt``) as a ``conditionals`` voice without audio.

        The file is validated (an unsafe ``.pt`` is refused, never run).  Refused when the name is taken, the
        same voice file was imported before, or its source audio (by sha256) is already stored.
        """
        path = Path(path)
        return imports.import_voice_file(
            self.store, self.scoring, path, check_name(name if name is not None else path.stem), tags=tags,
            consent=consent, added_by=current_user() if added_by is None else added_by, exaggeration=exaggeration,
            threshold=self.duplicate_threshold, engine=self.engine)

    def import_voice(self, voice: Voice, name: str, *, source: str = "", tags: Iterable[str] = (), consent: str = "",
                     added_by: str | None = None, exaggeration: float | None = None) -> AddResult:
        """Add ready conditionals computed elsewhere (a :class:`~voicebank.voice.Voice`, e.g. a row of a
        ``voicebank batch`` dataset) as a ``conditionals`` voice without audio, as :meth:`import_file` does, with
        no file in between.  ``source`` names where it came from."""
        label = source or name
        return imports.import_voice(
            self.store, self.scoring, voice.check(label), check_name(name), label=label,
            provenance={"imported_from": label}, tags=tags, consent=consent,
            added_by=current_user() if added_by is None else added_by, exaggeration=exaggeration,
            threshold=self.duplicate_threshold, engine=self.engine)

    def import_embedding(self, name: str, speaker_emb: np.ndarray, xvector: np.ndarray, *, source: str = "",
                         variant: str = "english", weights_fingerprint: str = "", source_sha256: str | None = None,
                         duration: float | None = None, sample_rate: int | None = None, tags: Iterable[str] = (),
                         consent: str = "", added_by: str | None = None, base: str | None = None) -> AddResult:
        """Add a speaker embedding (256,) float32 and x-vector (192,) float32 computed elsewhere (e.g. a row of an
        embedding-mode ``voicebank batch`` dataset) as an ``embedding`` voice.  ``source_sha256`` (the source
        audio's) makes a second import of the same clip a :class:`~voicebank.errors.DuplicateAudioError`."""
        label = source or name
        if base is not None:
            self.store.check_base(base)
        return imports.import_embedding(
            self.store, self.scoring, check_name(name), speaker_emb, xvector, label=label, variant=variant,
            weights_fingerprint=weights_fingerprint, source_sha256=source_sha256, duration=duration,
            sample_rate=sample_rate, provenance={"imported_from": label}, tags=tags, consent=consent,
            added_by=current_user() if added_by is None else added_by, base=base,
            threshold=self.duplicate_threshold, engine=self.engine)

    # --- getting conditionals --------------------------------------------------------------------------

    def get(self, name: str, *, variant: str | None = None, exaggeration: float | None = None,
            base: str | None = None, device: str | torch.device = "cpu") -> Voice:
        """Ready conditionals of voice ``name``, whatever its mode.

        ``variant``: default the voice's primary variant.  ``exaggeration``: default the voice's own.
        ``audio`` voices are extracted on first use and the result is cached in the library;
        ``conditionals`` voices are loaded (no weights needed); ``embedding`` voices are rebuilt as a hybrid
        with the S3Gen reference and T3 prompt tokens of ``base`` (default: the base set when adding), which
        ``VoiceMetadata.hybrid`` reports.
        """
        stored = self.store.voice(name)  # one read of the catalogue for the voice and its exaggeration
        voice = materialise.materialise(self.store, lambda: self.engine, name, variant=variant, base=base,
                                        current=self._current_fingerprint, stored=stored)
        stored_ex = stored.info.exaggeration
        ex = check_exaggeration(exaggeration) if exaggeration is not None else stored_ex
        if voice.t3 is not None and ex is not None and voice.metadata.exaggeration != float(ex):
            voice = voice.with_exaggeration(float(ex))
        return voice.to(device) if str(device) != "cpu" else voice

    def export(self, name: str, path: str | os.PathLike[str], *, variant: str | None = None,
               exaggeration: float | None = None, base: str | None = None, mkdir: bool = False) -> Path:
        """Write voice ``name`` to ``path`` (atomically), by suffix:

        ``.safetensors``: voicebank voice file with ready conditionals (whatever the mode; a hybrid for
        embedding-only voices); ``.pt``: upstream ``Conditionals.save`` format; ``.wav``: the stored reference
        audio (float32 mono at its own rate); ``.npy``: the (256,) float32 speaker embedding.

        ``path``'s directory must exist (:class:`~voicebank.errors.OutputPathError` otherwise, as ``cp``
        refuses) unless ``mkdir=True``, which creates the missing directories.
        """
        return materialise.export(self.store, lambda: self.get(name, variant=variant, exaggeration=exaggeration,
                                                               base=base), name, path, mkdir=mkdir)

    # --- changing --------------------------------------------------------------------------------------

    def remove(self, name: str) -> builtins.list[str]:
        """Delete voice ``name``; its files go when no other voice uses them.

        Returns the embedding-only voices that had ``name`` as their base (they keep working with ``base=``).
        """
        dependents = self.store.remove(name)
        for d in dependents:
            log.warning("voice %r used %r as its base; it now needs base= to be rebuilt", d, name)
        return dependents

    def rename(self, old: str, new: str) -> VoiceInfo:
        """Rename a voice.  Raises :class:`~voicebank.errors.VoiceExistsError` when ``new`` is taken."""
        return self.store.rename(old, check_name(new))

    def update(self, name: str, *, tags: Iterable[str] | None = None, consent: str | None = None,
               base: str | None = None, exaggeration: float | None = None) -> VoiceInfo:
        """Change a voice's tags (replacing them), consent note, base voice (embedding mode) or default exaggeration."""
        return self.store.update(name, tags=clean_tags(tags) if tags is not None else None, consent=consent,
                                 base=base, exaggeration=check_exaggeration(exaggeration)
                                 if exaggeration is not None else None)

    # --- similarity ------------------------------------------------------------------------------------

    def compare(self, a: str | AudioSource, b: str | AudioSource, *, variant: str = "english",
                names_only: bool = False) -> Comparison:
        """Similarity of two voices or clips (a name is looked up first; otherwise it is read as a file, unless
        ``names_only``: servers pass it so that a client's string is never read as a path).

        The score is normalised against the library's cohort (see :meth:`search`); the raw speaker and x-vector
        cosines come with it.
        """
        return search.compare(self.store, self.scoring, self.engine, a, b, variant=variant,
                              duplicate_threshold=self.duplicate_threshold, names_only=names_only)

    def search(self, query: str | AudioSource, *, k: int = 5, tag: str | None = None,
               variant: str = "english", names_only: bool = False) -> builtins.list[Match]:
        """The ``k`` stored voices most similar to ``query`` (a voice name or a clip), best first, the query
        excluded.

        Ranked by the normalised score (:class:`~voicebank.similarity.ScoreNormaliser`; the cohort is the
        library's voices topped up with the built-in cohort, and each voice's statistics are stored with it:
        :mod:`voicebank.library.scoring`), one matrix-vector product over the library's index.  Voices without a
        speaker embedding (VC) are not ranked; a query without one raises :class:`~voicebank.errors.LibraryError`.
        """
        return search.search(self.store, self.scoring, self.engine, query, k=k, tag=tag, variant=variant,
                             duplicate_threshold=self.duplicate_threshold, names_only=names_only)

    nearest = search
    """Alias of :meth:`search`."""

    def blend(self, names: Sequence[str], mix: Sequence[float] | None = None, *, name: str,
              base: str | None = None, tags: Iterable[str] = (), consent: str = "",
              added_by: str | None = None) -> VoiceInfo:
        """EXPERIMENTAL: a new embedding-only voice whose speaker embedding and x-vector are the ``mix``-weighted
        average of those of ``names`` (each L2-normalised first, the result re-normalised; the x-vector keeps the
        weighted mean norm of its inputs).

        An embedding-space blend is not a recording of anybody: how it sounds is not validated.  The voice is
        marked experimental.  ``base`` (default: the heaviest-weighted input that has an S3Gen reference)
        lends the S3Gen reference when the blend is turned into conditionals.
        """
        return search.blend(self.store, names, mix, name=check_name(name), base=base, tags=tags, consent=consent,
                            added_by=current_user() if added_by is None else added_by)

    # --- maintenance -----------------------------------------------------------------------------------

    def check(self, *, repair: bool = False, verify_hashes: bool = True, delete_orphans: bool = False) -> CheckReport:
        """Verify the library and clean what is provably garbage.

        Always: SQLite's integrity check (a damaged catalogue is reported and nothing is touched); removes temp
        files of writers that are gone; lists content files no voice references (a crash's leftovers), which
        only ``delete_orphans`` deletes; verifies every referenced file exists with the right size and
        (``verify_hashes``) sha256, every stored embedding is well-formed and every voice has what its mode
        needs.  With ``repair``: drops damaged cached conditionals (they are extracted again on use),
        re-extracts a damaged voice file from the kept audio, and drops damaged kept audio of a
        ``conditionals`` voice (which stays usable).  What cannot be repaired is reported with the fix.
        """
        return maintenance.check(self.store, lambda: self.engine, repair=repair, verify_hashes=verify_hashes,
                                 delete_orphans=delete_orphans)

    def stale(self, *, names: Iterable[str] | None = None) -> builtins.list[StaleVoice]:
        """Voice parts whose weights fingerprint differs from the weights at hand now.

        Parts with no recorded fingerprint (upstream ``.pt`` imports) are not reported.
        """
        return maintenance.stale(self.store, self.weights_fingerprint, names=names)

    def reextract(self, names: Iterable[str] | None = None, *, progress: Progress | None = None,
                  ) -> builtins.list[ReextractResult]:
        """Re-extract voices in place from their kept audio with the weights at hand now.

        ``names``: default every stale voice (see :meth:`stale`).  Embeddings and stored voice files are
        replaced, cached conditionals dropped, in one transaction per voice.  A voice without kept audio
        fails with the reason.
        """
        targets = sorted({s.name for s in self.stale()}) if names is None else builtins.list(names)
        if targets:
            self.store.check_writable()  # read-only or locked: say so before the costly extraction
        return maintenance.reextract(self.store, lambda: self.engine, targets, progress=progress)


# --- module-level convenience --------------------------------------------------------------------------


def get(name: str, *, library: str | os.PathLike[str] | None = None, weights: str | os.PathLike[str] | None = None,
        variant: str | None = None, exaggeration: float | None = None, base: str | None = None,
        device: str = "cpu") -> Voice:
    """Ready conditionals of voice ``name`` from the library (default: ``$VOICEBANK_LIBRARY`` or the user data dir).

    >>> voice = voicebank.get("alice")          # doctest: +SKIP
    >>> voice.apply_to(tts_model)               # doctest: +SKIP
    """
    with Library(library, weights=weights) as lib:  # the models, if any are needed, are the process's own
        return lib.get(name, variant=variant, exaggeration=exaggeration, base=base, device=device)


__all__ = ["MAX_PAGE", "Library", "default_library_path", "get", "resolve_library_path"]
