"""The service's extraction on a Ray cluster (``voicebank serve --executor ray``): a library whose computing is
done by Ray actors, so the API process loads no model.

An upload is read and checked here (decoding, hashing, the name and duplicate checks: cheap), its decoded clip
and options go to one of the actors, which inspects and extracts it (:func:`voicebank.library.ingest.prepare`,
as a local add does) and sends back the complete :class:`~voicebank.library.ingest.Prepared`; only then does
this process store it, in one transaction (:meth:`~voicebank.library.Library.commit`).  A worker lost mid-job is
replaced and the job sent once more; a second loss or a lost cluster is a 503 with ``Retry-After`` and nothing
stored.  Admission (at most ``ray_workers + queue_size`` jobs, then 429) is the service's extraction pool's, with
one waiting thread per actor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..audio.clip import Clip
from ..audio.decode import AudioSource
from ..batch.remote import PreparePool, PrepareWorker, RemoteEngine, WorkerConfig
from ..library import Library
from ..library.ingest import AddOptions, Prepared
from ..library.names import check_name, default_name
from .settings import ServiceSettings

log = logging.getLogger(__name__)


class RemoteLibrary(Library):
    """A :class:`~voicebank.library.Library` that prepares clips on a :class:`~voicebank.batch.remote.PreparePool`
    (and computes everything else through its :class:`~voicebank.batch.remote.RemoteEngine`)."""

    def __init__(self, location: str | os.PathLike[str] | None, pool: PreparePool, *, blobs: str | None = None,
                 ) -> None:
        super().__init__(location, engine=RemoteEngine(pool), blobs=blobs)
        self.pool = pool

    def prepare(self, source: AudioSource | Clip, name: str | None, options: AddOptions) -> Prepared:
        """Read and check the clip here, inspect and extract it on a Ray worker (step one of :meth:`add`)."""
        nm = check_name(name if name is not None else (
            Path(source.name).stem if isinstance(source, Clip) else default_name(source)))
        clip = Clip.read(source)
        self.store.refuse_taken(nm, clip.sha256, clip.name)
        return self.pool.prepare(clip, options, nm)

    def close(self) -> None:
        """Close the library, then stop the Ray workers."""
        try:
            super().close()
        finally:
            self.pool.close()


def remote_library(settings: ServiceSettings, *, worker_class: type[PrepareWorker] = PrepareWorker,
                   retries: int = 1) -> RemoteLibrary:
    """The library of ``settings`` with its extraction on ``settings.ray_workers`` Ray actors, started and with
    their models loaded (:class:`~voicebank.errors.ClusterUnavailableError` when the cluster cannot be reached or
    cannot start them; the workers' own error, e.g. no weights on their nodes)."""
    config = WorkerConfig(weights=str(settings.weights) if settings.weights is not None else None,
                          device=settings.device, threads=settings.threads)
    pool = PreparePool(config, workers=settings.ray_workers, address=settings.ray_address,
                       gpus_per_worker=settings.ray_gpus, retries=retries, worker_class=worker_class)
    try:
        pool.start(settings.variants)
        return RemoteLibrary(settings.library, pool, blobs=settings.blobs)
    except BaseException:
        pool.close()
        raise
