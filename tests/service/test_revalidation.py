"""The revalidation index: ETags per exact URL, valid for one catalogue generation, bounded."""

from __future__ import annotations

from voicebank.service.revalidation import RevalidationIndex, etag_matches


def test_etag_matching_follows_if_none_match():
    assert etag_matches('"a"', '"a"')
    assert etag_matches('"b", "a"', '"a"')
    assert etag_matches("*", '"a"')
    assert etag_matches('W/"a"', '"a"')  # If-None-Match compares weakly
    assert not etag_matches('"b"', '"a"')
    assert not etag_matches(None, '"a"') and not etag_matches("", '"a"')


def test_index_is_valid_for_one_generation_only():
    index = RevalidationIndex(max_entries=2)
    g1, g2 = (1, 7, 1), (2, 7, 1)
    index.record("/v/a", b"", g1, '"x"')
    assert index.etag("/v/a", b"", g1) == '"x"'
    assert index.etag("/v/a", b"format=pt", g1) is None  # another query is another file
    assert index.etag("/v/a", b"", g2) is None  # the catalogue moved on
    assert len(index) == 0 and index.etag("/v/a", b"", g1) is None  # ... and the index was emptied
    for name in ("a", "b", "c"):
        index.record(f"/v/{name}", b"", g2, f'"{name}"')
    assert len(index) == 2 and index.etag("/v/a", b"", g2) is None  # least recently recorded out
