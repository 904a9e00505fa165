"""What the library's verbs return: plain frozen dataclasses, JSON-ready through ``to_dict()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..store.records import VoiceInfo

Status = Literal["added", "skipped", "failed"]


@dataclass(frozen=True)
class AddResult:
    """What happened to one clip: ``added``, ``skipped`` (its audio is already stored) or ``failed``.

    ``warnings``: inspection warnings that ``force`` overrode, and possible duplicates (``similar``: names of
    stored voices whose speaker embedding is close, with the cosine).
    """

    source: str
    name: str
    status: Status
    reason: str = ""
    warnings: tuple[str, ...] = ()
    similar: tuple[tuple[str, float], ...] = ()
    voice: VoiceInfo | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "status": self.status, "reason": self.reason,
                "warnings": list(self.warnings), "similar": [[n, round(c, 6)] for n, c in self.similar]}


@dataclass(frozen=True)
class Match:
    """A voice found by :meth:`Library.search`: cosine of speaker embeddings and of x-vectors."""

    name: str
    score: float
    xvector_score: float | None


@dataclass(frozen=True)
class Comparison:
    """Cosine similarity of two voices or clips (speaker embeddings; x-vectors when both have one)."""

    a: str
    b: str
    speaker_cosine: float
    xvector_cosine: float | None
    threshold: float

    @property
    def same_speaker(self) -> bool:
        """Whether the speaker cosine reaches the library's duplicate threshold."""
        return self.speaker_cosine >= self.threshold


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
