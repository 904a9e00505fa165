"""Operations whose cost must not grow with the library, shown by counting SQLite's work (virtual-machine steps)
on 10^3 and 10^5 voices in one run, never by timing."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from voicebank.library import Library

from scale_fixtures import counting, fill

SMALL, LARGE = 1_000, 100_000


@pytest.fixture(scope="module")
def libraries(tmp_path_factory) -> dict[int, Library]:
    out = {}
    for n in (SMALL, LARGE):
        store = fill(tmp_path_factory.mktemp(f"lib{n}"), n)
        with store.catalogue.write() as conn:  # a tag ten voices have, spread over the names
            conn.execute("INSERT INTO tags (voice_id, tag) SELECT id, 'rare' FROM voices WHERE id % ? = 3 LIMIT 10",
                         (n // 10,))
        store.close()
        out[n] = Library(tmp_path_factory.getbasetemp() / f"lib{n}0")
    return out


def missing(lib: Library, name: str) -> str:
    from voicebank.errors import VoiceNotFoundError

    try:
        lib.show(name)
    except VoiceNotFoundError as e:
        assert "did you mean" in str(e)
        return str(e)
    raise AssertionError(f"{name} should be missing")


def work(lib: Library, op: Callable[[Library], object]) -> int:
    op(lib)  # warm: the connection is open and the schema checked
    with counting(lib.store) as steps:
        op(lib)
        return steps()


@pytest.mark.parametrize("op", [
    pytest.param(lambda lib: lib.list(limit=100), id="first page"),
    pytest.param(lambda lib: lib.list(limit=100, after="voice-0000500"), id="a later page"),
    pytest.param(lambda lib: lib.show("voice-0000777"), id="show"),
    pytest.param(lambda lib: "voice-0000777" in lib, id="contains"),
    pytest.param(lambda lib: lib.list(limit=100, tag="rare"), id="a rare tag's page"),
    pytest.param(lambda lib: missing(lib, "Voice-000077"), id="a missing name's suggestions"),
])
def test_a_page_costs_the_same_at_any_size(libraries, op):
    small, large = work(libraries[SMALL], op), work(libraries[LARGE], op)
    assert large <= 1.5 * small + 1_000, (small, large)  # 100x the voices: the same work, give or take


def test_a_common_tags_page_walks_a_bounded_stretch_of_names(libraries):
    """A tag every fifth voice has: at 10^3 its 200 voices come from the tag index, at 10^5 (20,000 of them) the
    name index is walked until the page is full, so the work is bounded by the page, not the library."""
    small = work(libraries[SMALL], lambda lib: lib.list(limit=20, tag="narrator"))
    large = work(libraries[LARGE], lambda lib: lib.list(limit=20, tag="narrator"))
    assert small < 20_000 and large < 20_000, (small, large)
    assert [v.name for v in libraries[LARGE].list(limit=3, tag="narrator")] == [
        "voice-0000004", "voice-0000009", "voice-0000014"]  # ids 5, 10, 15: every fifth


def test_listing_everything_does_grow(libraries):
    """The counter sees size: listing every voice costs ~100x more on 100x the voices."""
    small = work(libraries[SMALL], lambda lib: lib.store.names())
    large = work(libraries[LARGE], lambda lib: lib.store.names())
    assert large >= 50 * small, (small, large)


def test_pages_walk_every_voice_once(libraries):
    lib = libraries[SMALL]
    seen: list[str] = []
    after = None
    while page := lib.list(limit=333, after=after):
        seen.extend(v.name for v in page)
        after = page[-1].name
    assert seen == lib.names() and len(seen) == SMALL
    tagged = lib.list(tag="narrator", limit=5, after="voice-0000012")
    assert [v.name for v in tagged] == [f"voice-{i:07d}" for i in (14, 19, 24, 29, 34)]  # ids 15, 20, ...


def test_a_bad_page_size_is_refused(libraries):
    from voicebank.errors import InvalidOptionError

    for bad in (0, -1, 2.5, float("nan")):
        with pytest.raises(InvalidOptionError, match="limit"):
            libraries[SMALL].list(limit=bad)  # type: ignore[arg-type]


def test_the_cli_lists_a_page_and_says_how_to_get_the_next(tmp_path, capsys):
    from voicebank.cli import app, main, register

    register(app)
    root = tmp_path / "lib"
    fill(root, 250).close()
    capsys.readouterr()
    assert main(["list", "--library", str(root), "--json"]) == 0
    out, err = capsys.readouterr()
    first = [v["name"] for v in json.loads(out)]
    assert first == [f"voice-{i:07d}" for i in range(100)]  # 100 by default
    assert "voicebank list --after voice-0000099" in err and err.count("\n") == 1
    assert main(["list", "--library", str(root), "--json", "--after", "voice-0000099", "--limit", "200"]) == 0
    out, err = capsys.readouterr()
    assert [v["name"] for v in json.loads(out)] == [f"voice-{i:07d}" for i in range(100, 250)] and err == ""
    assert main(["list", "--library", str(root), "--limit", "10"]) == 0
    out, err = capsys.readouterr()
    assert "10 of 250 voice(s)" in out and "--after voice-0000009 --limit 10" in err
    assert main(["list", "--library", str(root), "--limit", "0"]) == 2


def test_a_bulk_import_chunk_costs_the_same_at_any_size(libraries):
    """A chunk of 200 imported voices (one transaction, no look-alike search): the same catalogue work on 10^3 and
    10^5 stored voices."""
    import numpy as np

    from voicebank.library.bulk import commit_many
    from voicebank.library.imports import embedding_record

    rng = np.random.default_rng(3)

    def chunk(tag: str) -> Callable[[Library], object]:
        items = [embedding_record(f"zz-{tag}-{i:04d}", rng.standard_normal(256), rng.standard_normal(192),
                                  label=f"{tag}{i}", weights_fingerprint="fp", source_sha256=f"{tag}{i:060d}")
                 for i in range(200)]

        def op(lib: Library) -> object:
            out = commit_many(lib.store, lib.scoring, None, items, threshold=lib.duplicate_threshold,
                              check_duplicates=False)
            assert [r.status for r in out] == ["added"] * 200
            return out
        return op

    counts = {}
    for n, lib in libraries.items():
        chunk(f"warm{n}")(lib)  # the index loads once per process
        with counting(lib.store) as steps:
            chunk(f"c{n}")(lib)
            counts[n] = steps()
    assert counts[LARGE] <= 1.5 * counts[SMALL] + 1_000, counts
