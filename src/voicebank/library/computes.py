"""What the library needs from an engine: the :class:`Computes` protocol.

:class:`~voicebank.engine.Engine` is one; the tests give the library fakes.  In a module of its own so that every
use case (adding, searching, materialising, maintenance) can name it without importing another use case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..chatterbox import DEFAULT_EXAGGERATION

if TYPE_CHECKING:
    from ..audio.clip import Clip
    from ..audio.decode import AudioSource
    from ..audio.reference import Reference
    from ..voice.voice import Voice


class Computes(Protocol):
    """What the library needs from an engine (:class:`~voicebank.engine.Engine` is one; tests use fakes)."""

    def weights_fingerprint(self, variant: str = "english") -> str: ...

    def embeddings(self, source: Clip | Reference, variant: str = "english") -> tuple[np.ndarray, np.ndarray | None]:
        """``(speaker_emb (256,), xvector (192,) or None)``: the x-vector needs torch (``None`` without it)."""
        ...

    def embed(self, sources: Sequence[AudioSource | Clip], *, variant: str = "english") -> np.ndarray:
        """Speaker embeddings of several clips, ``(len(sources), 256)`` (the built-in similarity cohort)."""
        ...

    def extract(self, source: Clip, variant: str = "english", *, exaggeration: float = DEFAULT_EXAGGERATION,
                ) -> Voice: ...


__all__ = ["Computes"]
