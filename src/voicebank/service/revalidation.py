"""Revalidation without the route: ``If-None-Match`` on a conditionals URL answered from what was last served.

A TTS worker keeps each voice file on disk and revalidates it before use, so ``GET
.../conditionals`` with ``If-None-Match`` is the service's hottest request, and its answer is almost always
304.  The route itself has to look the voice up in the catalogue and validate the query before it knows the
ETag; :class:`RevalidationIndex` remembers, for each exact URL (path and raw query) the route answered, the
ETag it served and the catalogue generation it read (see :meth:`voicebank.library.Library.generation`).
:class:`RevalidationMiddleware`, inside the API-key gate, answers a matching ``If-None-Match`` with 304
straight away while the catalogue is unchanged; anything else (another URL, a changed catalogue, no or
another ETag) goes to the route as before.  A stale answer is impossible: any commit to the catalogue, by
this process or another, changes the generation and empties the index.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from ..store.catalogue import Generation

MAX_ENTRIES = 16_384


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value names ``etag`` (a quoted strong ETag) or is ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate == etag or candidate.removeprefix("W/") == etag:
            return True
    return False


class RevalidationIndex:
    """ETags served per exact URL, valid for one catalogue generation; at most ``max_entries`` of them."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max(1, int(max_entries))
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._generation: Generation | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, path: str, query: bytes, generation: Generation, etag: str) -> None:
        """Remember that ``path?query`` served ``etag`` (quoted) from the catalogue at ``generation`` (read before
        the route looked anything up)."""
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
            self._entries[(path, query)] = etag
            self._entries.move_to_end((path, query))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def etag(self, path: str, query: bytes, generation: Generation) -> str | None:
        """The ETag served for ``path?query`` if the catalogue is still at ``generation``, else ``None`` (and the
        index is emptied when the generation moved on)."""
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = None
                return None
            return self._entries.get((path, query))


class RevalidationMiddleware:
    """Answer ``GET`` + ``If-None-Match`` on a URL in the index with 304 while the catalogue is unchanged.

    ``generation``: the current catalogue generation (called on the event loop's thread, the thread the route
    reads it on); ``on_hit``: counts a 304; ``route``: the route object, set in the scope so that logs and
    metrics name the request as the route would.  Place it inside the API-key gate: any valid key may read.
    """

    def __init__(self, app: ASGIApp, *, index: RevalidationIndex, generation: Callable[[], Generation | None],
                 on_hit: Callable[[], None], route: object | None = None, prefix: str = "/v1/audio/voices/",
                 suffix: str = "/conditionals") -> None:
        self.app = app
        self.index = index
        self.generation = generation
        self.on_hit = on_hit
        self.route = route
        self.prefix = prefix
        self.suffix = suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET" and len(self.index):
            path: str = scope["path"]
            if path.startswith(self.prefix) and path.endswith(self.suffix):
                if_none_match = None
                for name, value in scope.get("headers", ()):
                    if name == b"if-none-match":
                        if_none_match = value.decode("latin-1")
                        break
                if if_none_match:
                    generation = self.generation()
                    etag = self.index.etag(path, scope.get("query_string", b""), generation) if generation else None
                    if etag is not None and etag_matches(if_none_match, etag):
                        if self.route is not None:
                            scope["route"] = self.route
                        self.on_hit()
                        await send({"type": "http.response.start", "status": 304,
                                    "headers": [(b"etag", etag.encode("latin-1")), (b"cache-control", b"no-cache")]})
                        await send({"type": "http.response.body", "body": b""})
                        return
        await self.app(scope, receive, send)
