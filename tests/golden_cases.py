"""The golden cases' files and the figures tests record (imported by tests; ``conftest`` is for fixtures only,
since each test folder may have its own)."""

from __future__ import annotations

import json

from golden_weights import DATA

INPUTS = DATA / "inputs"
EXPECTED = DATA / "expected"

METRICS: dict[str, str] = {}
"""Figures tests measure (the real-speech EER, agreement with upstream), printed after the run."""


def golden_plan() -> dict[str, list[str]]:
    return json.loads((DATA / "plan.json").read_text())


def case_name(filename: str) -> str:
    return filename.rsplit(".", 1)[0]


__all__ = ["DATA", "EXPECTED", "INPUTS", "METRICS", "case_name", "golden_plan"]
