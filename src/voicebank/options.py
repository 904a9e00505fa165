"""Checks of user options: each returns the value as voicebank uses it, or raises
:class:`~voicebank.errors.InvalidOptionError` (a ``ValueError``) naming the option and the fix.

The one place a variant, an exaggeration or a numeric limit is checked, for the API, the CLI and the service.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .chatterbox import DEFAULT_EXAGGERATION, EXAGGERATION_RANGE, VARIANTS, Variant
from .errors import InvalidOptionError


def check_variant(variant: str) -> Variant:
    """Return ``variant`` if it is one of :data:`VARIANTS`, else raise :class:`~voicebank.errors.InvalidOptionError`
    (a ``ValueError``) naming the valid ones."""
    if variant not in VARIANTS:
        shown = repr(variant)[:40] if isinstance(variant, str) else type(variant).__name__
        raise InvalidOptionError(f"unknown variant {shown}: choose one of {', '.join(VARIANTS)}")
    return variant  # type: ignore[return-value,unused-ignore]


def embedding_variant(variant: str) -> Variant:
    """The variant whose pipeline gives a voice's speaker embedding (VC has none, so English's), checked."""
    return "english" if variant == "vc" else check_variant(variant)


def check_number(value: object, name: str, lo: float | None = None, hi: float | None = None, *,
                 integer: bool = False, allow_infinite: bool = False) -> float:
    """``value`` as a float if it is a finite number (an integer when ``integer``) within ``[lo, hi]``, else
    :class:`~voicebank.errors.InvalidOptionError` (a ``ValueError``) naming ``name`` and the range.

    The one check of every numeric option, for the API and the CLI alike.  ``allow_infinite``: for thresholds,
    where -inf / inf mean "always" / "never".
    """
    if isinstance(value, bool):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise InvalidOptionError(f"{name} must be a number, got {repr(value)[:40]}") from None
    if math.isnan(x) or (math.isinf(x) and not allow_infinite):
        raise InvalidOptionError(f"{name} must be a finite number, got {value!r}")
    if integer and x != int(x):
        raise InvalidOptionError(f"{name} must be a whole number, got {value!r}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        span = (f"from {lo:g} to {hi:g}" if lo is not None and hi is not None
                else f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
        raise InvalidOptionError(f"{name} {x:g} is out of range: use a value {span}")
    return x


Limits = Mapping[str, tuple[float, float, bool]]
"""Option name -> (lowest, highest, whole number): the ranges of a group of numeric options."""


def check_numbers(limits: Limits, values: Mapping[str, object], *, prefix: str = "") -> None:
    """:func:`check_number` of each of ``values`` against its entry in ``limits`` (``None`` means "the default"
    and passes).  Errors name the option as ``prefix`` + its name, with ``_`` as ``-`` when there is a prefix
    (``prefix="--"`` gives the command line's spelling)."""
    for name, value in values.items():
        if value is not None:
            lo, hi, integer = limits[name]
            check_number(value, prefix + (name.replace("_", "-") if prefix else name), lo, hi, integer=integer)


def check_exaggeration(value: object, *, name: str = "exaggeration") -> float:
    """``value`` as a float if it is a finite number in :data:`EXAGGERATION_RANGE`, else
    :class:`~voicebank.errors.InvalidOptionError` (a ``ValueError``)."""
    lo, hi = EXAGGERATION_RANGE
    x = check_number(value, name)
    if not lo <= x <= hi:
        raise InvalidOptionError(f"{name} {x:g} is out of range: use a value from {lo:g} to {hi:g} (default "
                                 f"{DEFAULT_EXAGGERATION:g})")
    return x


__all__ = ["Limits", "check_exaggeration", "check_number", "check_numbers", "check_variant", "embedding_variant"]
