"""The service's listing, filters, tags and map cost the same on 10^4 and 10^5 voices: counted as SQLite
virtual-machine steps of the catalogue connection that serves them (the service's one I/O thread here), never
timed.  Filtered pages are walked to the end through their cursors and must equal the same filter applied in
Python to every name."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from scale_service import RARE, filled_app

SMALL, LARGE = 10_000, 100_000


class Served:
    """A library of ``n`` voices behind the app (TestClient), its I/O on one thread whose catalogue work is
    counted."""

    def __init__(self, root, n: int) -> None:
        from fastapi.testclient import TestClient

        self.app = filled_app(root, n)
        self.service = self.app.state.service
        self.library = self.service.library
        self.service.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="counted-io")
        self.client = TestClient(self.app)
        self.client.__enter__()
        self.steps = 0
        self._counting = threading.Event()

    def _handler(self, on: bool) -> None:
        def tick() -> int:
            self.steps += 100
            return 0

        conn = self.library.catalogue.connection()
        conn.set_progress_handler(tick if on else None, 100 if on else 0)

    def work(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The catalogue steps of one request (after a first, warming one) and its JSON."""
        assert self.client.get(path, params=params).status_code == 200
        self.service.io.submit(self._handler, True).result()
        self.steps = 0
        try:
            r = self.client.get(path, params=params)
        finally:
            self.service.io.submit(self._handler, False).result()
        assert r.status_code == 200, r.text
        return self.steps, r.json()

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict[int, Served]]:
    out = {n: Served(tmp_path_factory.mktemp(f"svc{n}") / "lib", n) for n in (SMALL, LARGE)}
    yield out
    for s in out.values():
        s.close()


OPS = [
    pytest.param("/v1/audio/voices", {}, id="first page"),
    pytest.param("/v1/audio/voices", {"after": "voice-0004321", "limit": 50}, id="a later page"),
    pytest.param("/v1/audio/voices", {"prefix": "voice-00077"}, id="a name prefix"),
    pytest.param("/v1/audio/voices", {"q": "VOICE-0000"}, id="a common fragment, any case"),
    pytest.param("/v1/audio/voices", {"q": "zzz"}, id="a fragment no name holds"),
    pytest.param("/v1/audio/voices", {"tag": "narrator"}, id="a common tag"),
    pytest.param("/v1/audio/voices", {"tag": "rare"}, id="a rare tag"),
    pytest.param("/v1/audio/voices", {"tag": "nobody has it"}, id="an unused tag"),
    pytest.param("/v1/audio/voices", {"mode": "audio"}, id="a mode no voice has"),
    pytest.param("/v1/audio/voices", {"q": "1", "tag": "narrator", "limit": 10}, id="fragment and tag"),
    pytest.param("/v1/audio/tags", {}, id="tags"),
    pytest.param("/v1/audio/map", {}, id="map"),
    pytest.param("/v1/audio/map", {"tag": "narrator"}, id="map of a tag"),
    pytest.param("/v1/audio/map", {"around": "voice-0000777", "k": 10}, id="map around a voice"),
]


@pytest.mark.parametrize(("path", "params"), OPS)
def test_a_request_costs_the_same_at_any_size(served, path, params):
    small, _ = served[SMALL].work(path, params)
    large, got_large = served[LARGE].work(path, params)
    assert large <= 1.5 * small + 2_000, (small, large)  # 10x the voices: the same work, give or take
    if path == "/v1/audio/voices":
        assert len(got_large["data"]) <= (params.get("limit") or 100)
    if path == "/v1/audio/map":
        assert len(got_large["data"]) <= 2_000 + 11 and got_large["sampled"]


def test_the_counter_sees_size(served):
    """Counting the voices of a tag (every fifth voice) does grow: 10x the voices, ~10x the index entries counted.
    The counter measures what it should.  (A count of every voice is one step of SQLite's b-tree count.)"""
    small, got = served[SMALL].work("/v1/audio/count", {"tag": "narrator"})
    large, got_large = served[LARGE].work("/v1/audio/count", {"tag": "narrator"})
    assert (got["voices"], got_large["voices"]) == (SMALL // 5, LARGE // 5)
    assert served[LARGE].client.get("/v1/audio/count").json()["voices"] == LARGE
    assert large >= 5 * small > 0, (small, large)


def walk(client, params: dict[str, Any], limit: int = 100) -> tuple[list[str], int]:
    """Every voice name of a filtered listing, page after page through ``next_after``; and the pages."""
    names: list[str] = []
    after, pages = None, 0
    while True:
        q = {**params, "limit": limit, **({"after": after} if after else {})}
        page = client.get("/v1/audio/voices", params=q).json()
        pages += 1
        names += [v["id"] for v in page["data"]]
        assert len(page["data"]) <= limit
        if not page["has_more"]:
            assert page["next_after"] is None
            return names, pages
        assert page["next_after"] and page["next_after"] != after
        after = page["next_after"]


@pytest.mark.parametrize(("params", "keep"), [
    pytest.param({"q": "777"}, lambda i, n: "777" in n, id="fragment"),
    pytest.param({"q": "Voice-000012"}, lambda i, n: "voice-000012" in n, id="fragment, any case"),
    pytest.param({"prefix": "voice-00099"}, lambda i, n: n.startswith("voice-00099"), id="prefix"),
    pytest.param({"tag": "narrator"}, lambda i, n: i % 5 == 4, id="common tag"),  # ids 5, 10, ... (1-based)
    pytest.param({"tag": "rare"}, lambda i, n: n in RARE, id="rare tag"),
    pytest.param({"tag": "narrator", "q": "99"}, lambda i, n: i % 5 == 4 and "99" in n, id="tag and fragment"),
])
def test_filtered_pages_walk_to_exactly_the_matches(served, params: dict[str, Any], keep: Callable[[int, str], bool]):
    names = [f"voice-{i:07d}" for i in range(SMALL)]
    want = [n for i, n in enumerate(names) if keep(i, n)]
    got, pages = walk(served[SMALL].client, params)
    assert got == want
    assert pages <= len(want) // 100 + SMALL // 5_000 + 2  # full pages, or a short one per scan limit


def test_a_missing_voice_is_answered_from_its_neighbours(served):
    from voicebank.service import browse

    from scale_fixtures import counting

    for n in (SMALL, LARGE):
        r = served[n].client.get("/v1/audio/voices/voice-000012x")
        assert r.status_code == 404 and "did you mean 'voice-00001" in r.json()["error"]["message"], r.text
        r = served[n].client.get("/v1/audio/voices/VOICE-0000123")
        assert "did you mean 'voice-0000123'" in r.json()["error"]["message"], r.text
    steps = []
    for n in (SMALL, LARGE):
        lib = served[n].library
        browse.suggest(lib, "voice-000012x")
        with counting(lib.store) as count:
            browse.suggest(lib, "voice-000012x")
            steps.append(count())
    assert steps[1] <= 1.5 * steps[0] + 1_000, steps


def test_tags_and_count(served):
    c = served[SMALL].client
    assert c.get("/v1/audio/tags").json() == {"object": "list", "data": ["narrator", "rare"], "has_more": False}
    assert c.get("/v1/audio/tags", params={"limit": 1}).json()["has_more"]
    assert c.get("/v1/audio/count", params={"tag": "rare"}).json() == {"object": "audio.voice.count",
                                                                        "tag": "rare", "voices": 3}


def test_the_map_is_an_even_sample_and_places_a_voice_with_its_nearest(served):
    c = served[LARGE].client
    m = c.get("/v1/audio/map", params={"limit": 500}).json()
    assert m["sampled"] and m["cap"] == 500 and m["sample_size"] == len(m["data"]) == 500
    idx = sorted(int(p["id"].split("-")[1]) for p in m["data"])
    gaps = [b - a for a, b in itertools.pairwise(idx)]
    assert min(gaps) >= 150 and max(gaps) <= 250, (min(gaps), max(gaps))  # about every 200th voice
    assert {p["role"] for p in m["data"]} == {"sample"}
    near = c.get("/v1/audio/map", params={"limit": 500, "around": "voice-0000777", "k": 5}).json()
    roles = {p["id"]: p["role"] for p in near["data"] if p["role"] != "sample"}
    assert roles.pop("voice-0000777") == "focus" and list(roles.values()) == ["near"] * 5
    # the same plane: the sample's points do not move when a voice is placed on it
    same = {p["id"]: (p["x"], p["y"]) for p in near["data"] if p["role"] == "sample"}
    assert all(same[p["id"]] == (p["x"], p["y"]) for p in m["data"] if p["id"] in same)
    assert c.get("/v1/audio/map", params={"around": "nobody"}).status_code == 404
    small = served[SMALL].client.get("/v1/audio/map", params={"tag": "rare"}).json()
    assert not small["sampled"] and sorted(p["id"] for p in small["data"]) == list(RARE)
