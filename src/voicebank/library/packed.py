""":class:`PackedNames`: many short strings (the voice names of an index) in one buffer rather than one Python
object each."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class PackedNames:
    """A growing sequence of strings kept as one UTF-8 buffer and an array of end offsets: the names' own bytes
    plus 8 each, against about 70 bytes for a short ``str`` in a list (10^6 voice names: ~25 MB, not ~150 MB).
    Reading one decodes it (a few hundred nanoseconds), so it suits the few names a search returns."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._buf = bytearray()
        self._ends = np.zeros(0, dtype=np.int64)
        self._n = 0
        self.extend(names)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < self._n:
            raise IndexError(f"name {i} of {self._n}")
        start = int(self._ends[i - 1]) if i else 0
        return self._buf[start: int(self._ends[i])].decode()

    def extend(self, names: Iterable[str]) -> None:
        """Append ``names``."""
        encoded = [name.encode() for name in names]
        if not encoded:
            return
        need = self._n + len(encoded)
        if need > self._ends.size:  # amortised: at most 1.25x the names
            grown = np.zeros(max(256, need, self._ends.size + self._ends.size // 4), dtype=np.int64)
            grown[: self._n] = self._ends[: self._n]
            self._ends = grown
        base = int(self._ends[self._n - 1]) if self._n else 0
        self._ends[self._n: need] = base + np.cumsum([len(e) for e in encoded])
        self._buf += b"".join(encoded)
        self._n = need

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` names."""
        if 0 <= n < self._n:
            del self._buf[(int(self._ends[n - 1]) if n else 0):]
            self._n = n

    def take(self, rows: Iterable[int]) -> PackedNames:
        """A new sequence of the names at ``rows``, in that order."""
        return PackedNames(self[int(r)] for r in rows)


__all__ = ["PackedNames"]
