"""Duplicate-speaker warnings that mean the same at any library size.

An add compares the new voice with every one of the ``n`` stored voices, so a fixed per-pair threshold whose
false-alarm rate per pair is ``p`` names a different speaker on ``1 - (1 - p) ** n`` of the adds of a new
speaker: fine at 50 voices, nearly every add at 10^4.  The threshold here grows with ``n`` so that this per-add
false-warning rate stays at or below :data:`FALSE_WARNING_RATE` at every size: it is the score whose per-pair
impostor exceedance is ``FALSE_WARNING_RATE / n`` (then ``1 - (1 - p) ** n <= n * p`` keeps the rate at or below
the target), read from an exponential model of the impostor tail (:class:`Tail`), which makes it linear in
``log n``.

The tails were fitted (:func:`fit_tail`) on the *choose* half of ``tests/data/duplicates`` (real speech of 27
speakers cut into 5 s uploads, embedded with Resemblyzer's trained voice encoder) and are reported on its
*report* half (27 other speakers); see ``docs/duplicates.md`` for the table, and for what no threshold can do:
past about a thousand voices an encoder of this kind cannot both keep warnings meaningful and catch most
re-added speakers.  Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FALSE_WARNING_RATE = 0.05
"""The largest fraction of adds of a new speaker whose warning may name a stored voice (any size)."""
TAIL_MASS = 0.05
"""The fraction of impostor pairs (the highest) that the exponential tail is fitted to."""


@dataclass(frozen=True)
class Tail:
    """The upper tail of the scores of different-speaker pairs: ``P(score >= t) = mass * exp(-(t - start) /
    scale)`` for ``t >= start`` (``start`` is the ``1 - mass`` quantile; ``scale`` the mean excess above it)."""

    start: float
    scale: float
    mass: float = TAIL_MASS

    def exceedance(self, t: float | np.ndarray) -> np.ndarray:
        """The modelled fraction of impostor pairs scoring at least ``t`` (capped at ``mass`` below ``start``)."""
        x = np.asarray(t, dtype=np.float64)
        return self.mass * np.exp(-np.maximum(x - self.start, 0.0) / self.scale)

    def threshold(self, voices: int, rate: float = FALSE_WARNING_RATE) -> float:
        """The score at or above which an add into a library of ``voices`` stored voices warns, so that at
        most ``rate`` of adds of a new speaker get a warning (by this tail): ``start + scale * log(mass * voices
        / rate)``, never below ``start``."""
        if not 0 < rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {rate}")
        return self.start + self.scale * math.log(max(1.0, self.mass * max(1, int(voices)) / rate))


SCORE_TAIL = Tail(start=1.302, scale=0.744)
"""Impostor tail of the cohort-normalised score (:class:`~voicebank.similarity.ScoreNormaliser`, the library's
cohort), fitted on the *choose* set of ``tests/data/duplicates``: 11,635 different-speaker scores of adds into
libraries of 5 to 92 of its voices."""
COSINE_TAIL = Tail(start=0.669, scale=0.0334)
"""Impostor tail of the raw speaker-embedding cosine (no cohort to normalise with), fitted on the same set."""


def duplicate_threshold(voices: int, *, base: float | None = None) -> float:
    """The normalised score at or above which a new voice is warned about when it is compared with ``voices``
    stored voices (see the module docstring).  ``base``: the threshold for a single comparison (default the
    fitted one, :data:`~voicebank.similarity.DUPLICATE_THRESHOLD`); it rises by ``SCORE_TAIL.scale * log n``.
    """
    return _at_size(SCORE_TAIL, voices, base)


def duplicate_cosine(voices: int, *, base: float | None = None) -> float:
    """:func:`duplicate_threshold` for raw speaker cosines (no cohort): may exceed 1 in a large library, where
    only :data:`~voicebank.similarity.SAME_RECORDING_COSINE` still warns."""
    return _at_size(COSINE_TAIL, voices, base)


def _at_size(tail: Tail, voices: int, base: float | None) -> float:
    one = tail.threshold(1)
    return (one if base is None else float(base)) + tail.threshold(voices) - one


def fit_tail(impostor: np.ndarray, mass: float = TAIL_MASS) -> Tail:
    """The exponential :class:`Tail` of impostor scores (maximum likelihood above their ``1 - mass`` quantile)."""
    s = np.asarray(impostor, dtype=np.float64).ravel()
    if s.size < 20 or not 0 < mass < 1:
        raise ValueError(f"a tail fit needs at least 20 impostor scores and 0 < mass < 1 (got {s.size}, {mass})")
    start = float(np.quantile(s, 1 - mass))
    above = s[s > start]
    scale = float((above - start).mean()) if above.size else float(np.std(s)) or 1.0
    return Tail(start, scale, float(above.size / s.size) if above.size else mass)


def exceedance(impostor: np.ndarray, t: float | np.ndarray, tail: Tail | None = None) -> np.ndarray:
    """Fraction of ``impostor`` scores at or above ``t``: counted where at least 10 of them are, else read from
    ``tail`` (default: the tail fitted to these scores), i.e. extrapolated."""
    s = np.sort(np.asarray(impostor, dtype=np.float64).ravel())
    x = np.asarray(t, dtype=np.float64)
    count = s.size - np.searchsorted(s, x, side="left")
    model = (tail or fit_tail(s)).exceedance(x)
    return np.where(count >= 10, count / s.size, model)


def false_warning_rate(pair_rate: float | np.ndarray, voices: int) -> np.ndarray:
    """Fraction of adds of a new speaker warned about, when each of ``voices`` comparisons exceeds the threshold
    with probability ``pair_rate``: ``1 - (1 - p) ** n`` (an upper bound when ``p`` varies between voices)."""
    p = np.clip(np.asarray(pair_rate, dtype=np.float64), 0.0, 1.0)
    return -np.expm1(max(1, int(voices)) * np.log1p(-np.minimum(p, 1 - 1e-16)))


def caught_rate(genuine: np.ndarray, impostor: np.ndarray, voices: int, t: float | None,
                tail: Tail | None = None) -> float:
    """Fraction of re-added speakers whose warning names their stored voice, in a library of ``voices`` (one of
    them the speaker's): its score reaches ``t`` and none of the ``voices - 1`` others outscores it.  ``t=None``:
    no threshold, i.e. the best any threshold can do (the speaker's voice ranks first)."""
    g = np.asarray(genuine, dtype=np.float64).ravel()
    beaten = exceedance(impostor, g, tail)
    first = 1.0 - false_warning_rate(beaten, max(1, voices - 1)) if voices > 1 else np.ones_like(g)
    reach = np.ones_like(g) if t is None else (g >= t)
    return float(np.mean(reach * first)) if g.size else 0.0


__all__ = ["COSINE_TAIL", "FALSE_WARNING_RATE", "SCORE_TAIL", "TAIL_MASS", "Tail", "caught_rate", "duplicate_cosine",
           "duplicate_threshold", "exceedance", "false_warning_rate", "fit_tail"]
