"""PackedNames: the index's voice names in one buffer."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from voicebank.library.packed import PackedNames


def test_it_behaves_like_a_list_of_names() -> None:
    want = ["alice", "bob", "", "zoë", "日本語の声", "x" * 64]
    names = PackedNames(want[:2])
    names.extend(want[2:])
    names.extend([])
    assert len(names) == 6 and [names[i] for i in range(6)] == want
    names.truncate(3)
    assert [names[i] for i in range(len(names))] == want[:3]
    names.extend(["carol"])
    assert [names[i] for i in range(len(names))] == [*want[:3], "carol"]
    assert [names.take([3, 0])[i] for i in range(2)] == ["carol", "alice"]
    with pytest.raises(IndexError):
        names[4]
    with pytest.raises(IndexError):
        names[-1]


def test_many_names_cost_their_bytes_not_an_object_each() -> None:
    many = [f"voice-{i:07d}" for i in range(200_000)]
    names = PackedNames()
    for start in range(0, len(many), 1_000):  # grown a chunk at a time, as the index reads them
        names.extend(many[start: start + 1_000])
    assert names[123_456] == "voice-0123456" and len(names) == 200_000
    packed = len(names._buf) + names._ends.nbytes
    as_list = sys.getsizeof(many) + sum(sys.getsizeof(n) for n in many)
    assert packed * 2.5 < as_list  # 13 bytes + 8 (at most 1.25x) per name, against ~70
    assert np.all(np.diff(names._ends[: len(names)]) == 13)
