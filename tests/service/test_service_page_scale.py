"""The web page over a library too large to load whole, in headless Chromium: the table shows one page from the
server, Next and Previous walk the pages, the name filter and the tag menu narrow the list on the server, the
map draws at most the server's sample and places an opened voice with its nearest voices."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from scale_service import filled_app

from service_helpers import ThreadServer

sync_api = pytest.importorskip("playwright.sync_api")

from test_service_page import ARTIFACTS, CHROMIUM, browser_page  # noqa: E402

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
VOICES = 5_000
NAMES = [f"voice-{i:07d}" for i in range(VOICES)]


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    with ThreadServer(filled_app(tmp_path_factory.mktemp("bigpage") / "lib", VOICES)) as srv:
        yield srv


def test_the_page_pages_filters_and_samples_a_large_library(big_server, tmp_path):
    expect = sync_api.expect
    with browser_page(big_server, "", tmp_path, log_in=False) as (page, errors):
        asked: list[tuple[str, dict[str, list[str]]]] = []
        page.on("request", lambda r: asked.append((urlsplit(r.url).path, parse_qs(urlsplit(r.url).query)))
                if "/v1/" in r.url else None)
        page.goto(big_server.url + "/")
        rows = page.locator("#voices tbody td.name")
        expect(rows).to_have_count(100)
        expect(rows.first).to_have_text(NAMES[0])
        expect(page.locator("#voice-count")).to_have_text("(5,000)")
        # set once the map's sample is drawn: allow for a busy machine
        expect(page.locator("#status")).to_contain_text("5000 voices", timeout=30_000)

        # the next page comes from the server, from the last name shown; and back
        page.click("#next-page")
        expect(rows.first).to_have_text(NAMES[100])
        expect(rows.last).to_have_text(NAMES[199])
        expect(page.locator("#page-info")).to_contain_text("page 2")
        page.click("#prev-page")
        expect(rows.first).to_have_text(NAMES[0])
        expect(page.locator("#prev-page")).to_be_disabled()

        # the name filter narrows on the server (any case), and pages on
        page.fill("#filter", "Voice-0004")
        want = [n for n in NAMES if "voice-0004" in n]
        expect(rows.first).to_have_text(want[0])
        expect(rows).to_have_text(want[:100])
        page.click("#next-page")
        expect(rows).to_have_text(want[100:200])
        assert any(p == "/v1/audio/voices" and q.get("q") == ["Voice-0004"] for p, q in asked), asked

        # the tag menu (the server's tags) narrows to the tagged voices; both filters at once
        page.fill("#filter", "")
        expect(page.locator("#tag-filter option")).to_have_text(["any tag", "narrator", "rare"])
        page.select_option("#tag-filter", "narrator")
        tagged = NAMES[4::5]
        expect(rows).to_have_text(tagged[:100])
        expect(page.locator("#voice-count")).to_have_text("(1,000)")
        page.fill("#filter", "0001")
        expect(rows).to_have_text([n for n in tagged if "0001" in n][:100])
        page.fill("#filter", "no such voice")
        expect(page.locator("#voices-nomatch")).to_be_visible()
        page.fill("#filter", "")
        page.select_option("#tag-filter", "")
        expect(rows.first).to_have_text(NAMES[0])

        # no request asked for more than a page, nor for every voice
        lists = [q for p, q in asked if p == "/v1/audio/voices"]
        assert lists and all(int(q["limit"][0]) <= 100 for q in lists), lists

        # the map: at most the server's sample, said to be one; an opened voice is placed with its nearest
        page.locator("#map").scroll_into_view_if_needed()
        expect(page.locator("#map-note")).to_contain_text("An even sample of 2,000 voices of 5,000")
        circles = page.locator("#map circle").count()
        members = page.eval_on_selector_all(
            "#map circle", "cs => cs.reduce((t, c) => t + (c.dataset.ids ? JSON.parse(c.dataset.ids).length : 1), 0)")
        assert 0 < circles <= members == 2_000, (circles, members)
        page.locator("#voices tbody tr", has_text=NAMES[3]).click()
        expect(page.locator("#detail-name")).to_have_text(NAMES[3])
        expect(page.locator("#map circle.focus")).to_have_count(1)
        assert page.locator("#map circle.focus").get_attribute("data-id") == NAMES[3]
        expect(page.locator("#map circle.near")).to_have_count(10)
        expect(page.locator("#map-note")).to_contain_text(f"with {NAMES[3]} and its nearest voices")
        nearest = page.locator("#nearest li a").all_inner_texts()
        near_ids = page.eval_on_selector_all("#map circle.near", "cs => cs.map(c => c.dataset.id)")
        assert set(nearest) <= set(near_ids), (nearest, near_ids)
        page.screenshot(path=str(ARTIFACTS / "10-large-library.png"), full_page=True)
        assert not errors, errors
