"""What the library's verbs return: plain frozen dataclasses, JSON-ready through ``to_dict()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..similarity import SAME_RECORDING_COSINE
from ..store.records import VoiceInfo

Status = Literal["added", "skipped", "failed"]


@dataclass(frozen=True)
class AddResult:
    """What happened to one clip: ``added``, ``skipped`` (its audio is already stored) or ``failed``.

    ``warnings``: inspection warnings that ``force`` overrode, and possible duplicates (``similar``: stored
    voices whose normalised similarity score reaches the duplicate threshold, best first, as
    ``(name, score, speaker_cosine)``).
    """

    source: str
    name: str
    status: Status
    reason: str = ""
    warnings: tuple[str, ...] = ()
    similar: tuple[tuple[str, float, float], ...] = ()
    voice: VoiceInfo | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "status": self.status, "reason": self.reason,
                "warnings": list(self.warnings),
                "similar": [{"name": n, "score": round(s, 6), "speaker_cosine": round(c, 6)}
                            for n, s, c in self.similar]}


@dataclass(frozen=True)
class Match:
    """A voice found by :meth:`Library.search <voicebank.Library.search>`.

    ``score``: the normalised similarity score (:class:`~voicebank.similarity.ScoreNormaliser`; the raw speaker
    cosine when no weights were available to normalise with); ``speaker_cosine``: the raw cosine of the speaker
    embeddings; ``xvector_cosine``: of the CAM++ x-vectors, reported only (it never enters the score).
    """

    name: str
    score: float
    speaker_cosine: float
    xvector_cosine: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "speaker_cosine": self.speaker_cosine,
                "xvector_cosine": self.xvector_cosine}


@dataclass(frozen=True)
class Comparison:
    """Similarity of two voices or clips.

    ``score``: the normalised similarity score of the speaker embeddings (``None`` when it could not be
    computed: no speaker embedding, or no weights to embed the cohort with); ``threshold``: the duplicate
    threshold on the scale ``same_speaker`` uses (the score's, else the raw cosine's).  ``speaker_cosine`` and
    ``xvector_cosine`` are the raw cosines (the x-vector is reported only).
    """

    a: str
    b: str
    speaker_cosine: float
    xvector_cosine: float | None
    threshold: float
    score: float | None = None

    @property
    def same_speaker(self) -> bool:
        """Whether the score (else the speaker cosine) reaches the duplicate threshold, or the speaker cosine
        :data:`~voicebank.similarity.SAME_RECORDING_COSINE`."""
        if self.speaker_cosine >= SAME_RECORDING_COSINE:
            return True
        return (self.score if self.score is not None else self.speaker_cosine) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "score": self.score, "speaker_cosine": self.speaker_cosine,
                "xvector_cosine": self.xvector_cosine, "threshold": self.threshold,
                "same_speaker": self.same_speaker}


@dataclass(frozen=True)
class CheckProblem:
    """One inconsistency :meth:`Library.check` found: the voice (``""`` for the library), what, and the fix."""

    voice: str
    problem: str
    fix: str
    repaired: bool = False


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :meth:`Library.check`; ``ok`` when nothing unrepaired remains."""

    voices: int
    files_checked: int
    problems: tuple[CheckProblem, ...]
    removed_temp_files: tuple[str, ...]
    removed_orphans: tuple[str, ...]
    unreferenced: tuple[str, ...] = ()
    """Content files no voice references, kept (``check(delete_orphans=True)`` deletes them)."""

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "voices": self.voices, "files_checked": self.files_checked,
                "problems": [asdict(p) for p in self.problems], "removed_temp_files": list(self.removed_temp_files),
                "removed_orphans": list(self.removed_orphans), "unreferenced": list(self.unreferenced)}


@dataclass(frozen=True)
class StaleVoice:
    """A voice part extracted with other weights than the ones loaded now (``what``: embedding, conditionals or
    cache)."""

    name: str
    variant: str
    what: str
    stored: str
    current: str


@dataclass(frozen=True)
class ReextractResult:
    """Outcome of re-extracting one voice: ``updated``, ``current`` (nothing to do) or ``failed``."""

    name: str
    status: Literal["updated", "current", "failed"]
    reason: str = ""
