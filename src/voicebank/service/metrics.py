"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Requests by route template and status, request latency and extraction latency histograms, the conditionals
cache (hits, misses, bytes, entries, evictions) and the extraction queue (depth, in flight, rejected).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
EXTRACTION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    """A monotonically increasing count per label combination."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labels, v in items:
            yield f"{self.name}{_labels(self.labels, labels)} {v:g}"


class Histogram:
    """Observations in cumulative buckets, per label combination."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels, self.buckets = name, help_text, tuple(labels), tuple(buckets)
        self._data: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts, sums = self._data.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            sums[0] += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._data.items())
        for labels, (counts, total) in items:
            running = 0
            for bound, c in zip(self.buckets, counts, strict=False):
                running += c
                le = f'le="{bound:g}"'
                yield f"{self.name}_bucket{_labels(self.labels, labels, le)} {running}"
            running += counts[-1]
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(self.labels, labels, inf)} {running}"
            yield f"{self.name}_sum{_labels(self.labels, labels)} {total:.6f}"
            yield f"{self.name}_count{_labels(self.labels, labels)} {running}"


class Gauge:
    """A value read when the metrics are scraped."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {float(self.read()):g}"


class Metrics:
    """The service's metrics; gauges are added by whoever owns the value."""

    def __init__(self) -> None:
        self.requests = Counter("voicebank_http_requests_total", "HTTP requests by route and status.",
                                ("method", "route", "status"))
        self.latency = Histogram("voicebank_http_request_duration_seconds", "HTTP request latency by route.",
                                 LATENCY_BUCKETS_S, ("method", "route"))
        self.extraction = Histogram("voicebank_extraction_duration_seconds",
                                    "Time of one extraction job in a worker, by kind.", EXTRACTION_BUCKETS_S,
                                    ("kind",))
        self.rejected = Counter("voicebank_extraction_rejected_total",
                                "Extraction jobs refused because the queue was full.")
        self.cache_hits = Counter("voicebank_cache_hits_total", "Conditionals served from the memory cache.")
        self.cache_misses = Counter("voicebank_cache_misses_total", "Conditionals built from the library.")
        self.not_modified = Counter("voicebank_not_modified_total", "Conditionals revalidated (304).")
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.requests, self.latency, self.extraction, self.rejected, self.cache_hits, self.cache_misses,
                  self.not_modified):
            lines.extend(m.render())
        for g in self.gauges:
            lines.extend(g.render())
        return "\n".join(lines) + "\n"
