"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python): list,
upload a file, play, record with a fake microphone, rename, delete, the map renders and a click opens a voice.

Screenshots go to ``test-artifacts/service-page/`` at the repository root (gitignored).  Skipped when
Playwright or a Chromium binary is missing (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from audio_fixtures import GOLDEN_INPUTS, REALSPEECH
from service_helpers import ROOT, make_server

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("VOICEBANK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
ARTIFACTS = ROOT / "test-artifacts" / "service-page"


def fake_mic_wav(path: Path) -> Path:
    """Real speech as a 16-bit 48 kHz WAV, which Chromium plays as the microphone."""
    import soundfile as sf

    from voicebank.audio import load_audio

    clip = sorted((REALSPEECH / "librispeech").rglob("*.flac"))[0]
    wav = load_audio(clip, 48000)
    wav = np.tile(wav, 2)[: 48000 * 12]
    sf.write(path, wav, 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, golden_weights_dir, service_extractor):
    from voicebank.service.security import KeyStore

    srv = make_server(tmp_path_factory.mktemp("page"), golden_weights_dir, service_extractor)
    lib = srv.app.state.service.library
    lib.add(GOLDEN_INPUTS / "aishell_4s.wav", "alice", tags=["demo"], consent="fixture", force=True)
    lib.add(GOLDEN_INPUTS / "p240_24k.mp3", "bob", consent="fixture", force=True)
    _, key = KeyStore(lib.path / "service-keys.json").create("browser", "read-write")
    with srv:
        yield srv, key


def test_the_page_in_headless_chromium(page_server, tmp_path):
    srv, key = page_server
    with browser_page(srv, key, tmp_path, mic=True, log_in=False) as (page, errors):
        browser = page.context.browser
        assert browser is not None
        page.goto(srv.url + "/")
        sync_api.expect(page.locator("#status")).to_contain_text("API key")
        page.fill("#api-key", key)
        page.click("#save-key")

        # list
        rows = page.locator("#voices tbody tr")
        sync_api.expect(rows).to_have_count(2)
        sync_api.expect(rows.first.locator("td.name")).to_have_text("alice")
        sync_api.expect(rows.first).to_contain_text("demo")
        page.screenshot(path=str(ARTIFACTS / "01-list.png"), full_page=True)

        # play the kept reference
        rows.first.locator("button.play").click()
        sync_api.expect(page.locator("#detail-name")).to_have_text("alice")
        page.wait_for_function("() => { const a = document.getElementById('player');"
                               " return a.src.startsWith('blob:') && a.readyState >= 2 && a.duration > 4; }")
        sync_api.expect(page.locator("#nearest li")).to_contain_text(["bob"])
        page.screenshot(path=str(ARTIFACTS / "02-play.png"), full_page=True)

        # upload a file: the verdict shows before saving
        page.set_input_files("#file-input", str(GOLDEN_INPUTS / "mid_12s.flac"))
        sync_api.expect(page.locator("#verdict-text")).to_contain_text("12.")
        sync_api.expect(page.locator("#add-button")).to_be_enabled()
        page.fill("#add-name", "carol")
        page.fill("#add-consent", "recorded with consent for the test")
        page.fill("#add-tags", "uploaded, test")
        page.screenshot(path=str(ARTIFACTS / "03-verdict.png"), full_page=True)
        page.click("#add-button")
        sync_api.expect(rows).to_have_count(3)
        sync_api.expect(page.locator("#detail-name")).to_have_text("carol")

        # record with the (fake) microphone
        page.click("#record-button")
        sync_api.expect(page.locator("#record-button")).to_have_text("■ Stop")
        page.wait_for_timeout(4500)
        page.click("#record-button")
        sync_api.expect(page.locator("#verdict-text")).to_be_visible()
        sync_api.expect(page.locator("#verdict-text")).to_have_class("verdict-ok", timeout=60_000)
        verdict = page.locator("#verdict-text").inner_text()
        page.fill("#add-name", "mic")
        page.fill("#add-consent", "my own voice")
        page.check("#add-force")
        page.screenshot(path=str(ARTIFACTS / "04-recorded.png"), full_page=True)
        page.click("#add-button")
        sync_api.expect(rows).to_have_count(4)
        shown = page.locator("#voices tbody td.name").all_inner_texts()
        got = httpx.get(f"{srv.url}/v1/audio/voices/mic", headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200, (shown, got.text, srv.app.state.service.library.names())
        duration = got.json()["duration"]
        assert duration is not None and 3.0 < duration < 6.0, (duration, verdict)

        # rename, then delete
        rows.filter(has_text="carol").first.click()
        sync_api.expect(page.locator("#detail-name")).to_have_text("carol")
        page.fill("#rename-input", "carol 2")
        page.click("#rename-button")
        sync_api.expect(page.locator("#detail-name")).to_have_text("carol 2")
        sync_api.expect(page.locator("#voices tbody td.name")).to_have_text(["alice", "bob", "carol 2", "mic"])
        page.click("#delete-button")
        sync_api.expect(rows).to_have_count(3)
        assert "carol 2" not in srv.app.state.service.library

        # compare
        page.fill("#compare-a", "al")  # names are suggested by the server from what is typed
        sync_api.expect(page.locator("#compare-options option")).to_have_count(1)
        assert page.locator("#compare-options option").get_attribute("value") == "alice"
        page.fill("#compare-a", "alice")
        page.fill("#compare-b", "bob")
        page.click("#compare-button")
        sync_api.expect(page.locator("#compare-result")).to_contain_text("speaker cosine")

        # the map renders one point per voice; a click opens that voice
        points = page.locator("#map circle")
        sync_api.expect(points).to_have_count(3)
        page.locator("#map circle[data-id='bob']").click()
        sync_api.expect(page.locator("#detail-name")).to_have_text("bob")
        sync_api.expect(page.locator("#nearest li")).to_have_count(2)
        assert "bob" not in page.locator("#nearest").inner_text()
        page.screenshot(path=str(ARTIFACTS / "05-map.png"), full_page=True)

        # phone-sized screen: no horizontal overflow of the page itself
        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                    is_mobile=True, has_touch=True)
        p2 = phone.new_page()
        p2.goto(srv.url + "/")
        p2.fill("#api-key", key)
        p2.click("#save-key")
        sync_api.expect(p2.locator("#voices tbody tr")).to_have_count(3)
        assert p2.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        p2.screenshot(path=str(ARTIFACTS / "06-phone.png"), full_page=True)
        phone.close()
        assert not errors, errors
    assert srv.app.state.service.library.check().ok


def test_the_api_reference_works_offline(page_server, tmp_path):
    """``/docs`` renders Swagger UI from files the service itself serves: every request the page makes stays
    on the server, none reaches a CDN."""
    srv, key = page_server
    with browser_page(srv, key, tmp_path, log_in=False) as (page, _errors):
        elsewhere: list[str] = []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(srv.url)
                   else (elsewhere.append(route.request.url), route.abort()))
        page.goto(srv.url + "/docs")
        sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("voicebank")
        sync_api.expect(page.locator(".opblock-summary-path").first).to_be_visible()
        assert page.locator(".opblock").count() > 10
        assert not elsewhere, elsewhere


@pytest.fixture
def fresh_server(tmp_path, golden_weights_dir, service_extractor):
    """A server of its own for one test (an empty library and a read-write key), so that the module's page test
    keeps its counts."""
    from voicebank.service.security import KeyStore

    srv = make_server(tmp_path / "srv", golden_weights_dir, service_extractor)
    _, key = KeyStore(srv.app.state.service.library.path / "service-keys.json").create("browser", "read-write")
    with srv:
        yield srv, key


@contextlib.contextmanager
def browser_page(srv, key: str, tmp_path: Path, *, mic: bool = False, log_in: bool = True):
    """A Chromium page on ``srv`` (with a fake microphone playing real speech when ``mic``), the key entered;
    yields ``(page, errors)`` with the page's uncaught errors."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
    if mic:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={fake_mic_wav(tmp_path / 'mic.wav')}"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            if mic:
                context.grant_permissions(["microphone"], origin=srv.url)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: d.accept())
            page.set_default_timeout(60_000)
            if log_in:
                page.goto(srv.url + "/")
                page.fill("#api-key", key)
                page.click("#save-key")
            yield page, errors
        finally:
            browser.close()


def test_each_new_input_resets_the_add_form(fresh_server, tmp_path):
    """A rejected file, then a recording: the recording is inspected and saved under its own name; nothing of
    the rejected file (its name, the file box, a dead 0:00 player, an 'inspecting…' status) stays (issue 20,
    item 9)."""
    srv, key = fresh_server
    bad = tmp_path / "broken take.wav"
    bad.write_bytes(b"RIFF this is not audio at all " * 40)
    expect = sync_api.expect
    with browser_page(srv, key, tmp_path, mic=True) as (page, errors):
        expect(page.locator("#status")).to_contain_text("0 voices")
        page.set_input_files("#file-input", str(bad))
        expect(page.locator("#verdict-text")).to_have_class("verdict-bad")
        expect(page.locator("#add-name")).to_have_value("broken take")
        expect(page.locator("#add-button")).to_be_disabled()
        expect(page.locator("#preview")).to_be_hidden()  # no dead 0:00 player
        expect(page.locator("#status")).to_contain_text("Cannot use broken take.wav")

        page.click("#record-button")
        expect(page.locator("#record-button")).to_have_text("■ Stop")
        # recording already cleared the rejected file
        expect(page.locator("#verdict")).to_be_hidden()
        expect(page.locator("#add-name")).to_have_value("")
        assert page.eval_on_selector("#file-input", "e => e.files.length") == 0
        page.wait_for_timeout(4000)
        page.click("#record-button")
        expect(page.locator("#verdict-text")).to_have_class("verdict-ok", timeout=60_000)
        expect(page.locator("#add-name")).to_have_value("recording")
        expect(page.locator("#status")).not_to_contain_text("inspecting")
        expect(page.locator("#status")).to_contain_text("recording.wav inspected")
        assert page.eval_on_selector("#file-input", "e => e.files.length") == 0
        page.wait_for_function("() => { const a = document.getElementById('preview');"
                               " return !a.hidden && a.duration > 3; }")
        page.fill("#add-consent", "my own voice")
        page.click("#add-button")
        expect(page.locator("#voices tbody td.name")).to_have_text(["recording"])
        assert srv.app.state.service.library.names() == ["recording"]
        # saved: the form is empty again, the preview gone
        expect(page.locator("#add-name")).to_have_value("")
        expect(page.locator("#preview")).to_be_hidden()

        # a name the user typed is kept when the input changes; the page's own guess is not
        page.fill("#add-name", "chosen name")
        page.set_input_files("#file-input", str(bad))
        expect(page.locator("#verdict-text")).to_have_class("verdict-bad")
        page.set_input_files("#file-input", str(GOLDEN_INPUTS / "mid_12s.flac"))
        expect(page.locator("#verdict-text")).to_have_class("verdict-ok")
        expect(page.locator("#add-name")).to_have_value("chosen name")
        page.fill("#add-name", "")
        page.set_input_files("#file-input", str(bad))
        expect(page.locator("#add-name")).to_have_value("broken take")
        page.set_input_files("#file-input", str(GOLDEN_INPUTS / "mid_12s.flac"))
        expect(page.locator("#verdict-text")).to_have_class("verdict-ok")
        expect(page.locator("#add-name")).to_have_value("mid_12s")
        assert not errors, errors


def test_empty_state_loading_edit_and_download(fresh_server, tmp_path):
    """A new library shows what to do first; a loading indicator shows while the list is on its way; a voice's
    consent, tags, default exaggeration and base are edited in the page (PATCH); its conditionals download as
    ``.safetensors`` and ``.pt``, byte for byte what the API serves (issue 20, item 11)."""
    srv, key = fresh_server
    lib = srv.app.state.service.library
    expect = sync_api.expect
    with browser_page(srv, key, tmp_path, log_in=False) as (page, errors):
        held: list = []
        page.route("**/v1/audio/voices?*", lambda route: held.append(route))
        page.goto(srv.url + "/")
        expect(page.locator("#voices-loading")).to_be_visible()
        assert page.locator("#voices-section").get_attribute("aria-busy") == "true"
        held[0].continue_()
        expect(page.locator("#voices-loading")).to_be_hidden()
        expect(page.locator("#status")).to_contain_text("API key")
        page.unroute("**/v1/audio/voices?*")

        # a new library: an empty state says how to start, not a bare table
        page.fill("#api-key", key)
        page.click("#save-key")
        expect(page.locator("#voices-empty")).to_be_visible()
        expect(page.locator("#voices-empty")).to_contain_text("No voices yet")
        expect(page.locator("#voices")).to_be_hidden()
        expect(page.locator("#map-empty")).to_be_visible()
        expect(page.locator("#map")).to_be_hidden()  # no blank plot
        page.screenshot(path=str(ARTIFACTS / "07-empty.png"), full_page=True)

        lib.add(GOLDEN_INPUTS / "aishell_4s.wav", "alice", consent="fixture", force=True)
        lib.add(GOLDEN_INPUTS / "mid_12s.flac", "carl", consent="fixture", force=True)
        lib.add(GOLDEN_INPUTS / "p240_24k.mp3", "emb", mode="embedding", base="alice", consent="fixture", force=True)
        page.click("#save-key")
        expect(page.locator("#voices tbody tr")).to_have_count(3)
        expect(page.locator("#voices-empty")).to_be_hidden()
        expect(page.locator("#map-empty")).to_be_hidden()
        expect(page.locator("#map")).to_be_visible()
        page.fill("#filter", "nobody")
        expect(page.locator("#voices-nomatch")).to_be_visible()
        page.fill("#filter", "")
        expect(page.locator("#voices-nomatch")).to_be_hidden()

        # edit consent, tags and the default exaggeration
        page.locator("#voices tbody tr", has_text="alice").click()
        expect(page.locator("#detail-name")).to_have_text("alice")
        expect(page.locator("#consent-input")).to_have_value("fixture")
        expect(page.locator("#base-label")).to_be_hidden()  # an audio voice has no base
        page.fill("#consent-input", "signed form, 2026-12-01")
        page.fill("#tags-input", "narrator, calm")
        page.fill("#exaggeration-input", "0.7")
        page.click("#edit-button")
        expect(page.locator("#status")).to_contain_text("Saved")
        expect(page.locator("#detail-figures")).to_contain_text("signed form, 2026-12-01")
        info = lib.show("alice")
        assert (info.consent, sorted(info.tags), info.exaggeration) == ("signed form, 2026-12-01",
                                                                         ["calm", "narrator"], 0.7)
        expect(page.locator("#voices tbody tr", has_text="alice")).to_contain_text("narrator")

        # the base of an embedding-only voice
        page.locator("#voices tbody tr", has_text="emb").click()
        expect(page.locator("#detail-name")).to_have_text("emb")
        expect(page.locator("#base-label")).to_be_visible()
        expect(page.locator("#base-select")).to_have_value("alice")
        page.fill("#base-select", "")  # suggested: voices that can be a base (not embedding-only ones)
        expect(page.locator("#base-options option")).to_have_count(2)
        assert page.locator("#base-options option").evaluate_all("os => os.map(o => o.value)") == ["alice", "carl"]
        page.fill("#base-select", "carl")
        page.click("#edit-button")
        expect(page.locator("#status")).to_contain_text("Saved base")
        assert lib.show("emb").base == "carl"

        # download the conditionals in both formats: what the API serves
        page.locator("#voices tbody tr", has_text="alice").click()
        expect(page.locator("#detail-name")).to_have_text("alice")
        headers = {"Authorization": f"Bearer {key}"}
        for fmt in ("safetensors", "pt"):
            with page.expect_download(timeout=120_000) as dl:
                page.click(f"#download-{fmt}")
            download = dl.value
            assert download.suggested_filename == f"alice.{fmt}"
            got = Path(download.path()).read_bytes()
            want = httpx.get(f"{srv.url}/v1/audio/voices/alice/conditionals", params={"format": fmt},
                             headers=headers, timeout=120).content
            assert got == want and len(got) > 1000, (fmt, len(got), len(want))
        expect(page.locator("#status")).to_contain_text("Downloaded alice.pt")
        page.screenshot(path=str(ARTIFACTS / "08-edit.png"), full_page=True)
        assert not errors, errors


def test_the_map_groups_coincident_voices_and_keeps_labels_apart(fresh_server, tmp_path):
    """Identical voices fall on one spot of the map: they are drawn as one point that lists them (each opens),
    no circle hides another, labels never overlap, and every voice stays reachable (issue 20, item 10)."""
    srv, key = fresh_server
    lib = srv.app.state.service.library
    import soundfile as sf

    wav, rate = sf.read(GOLDEN_INPUTS / "aishell_4s.wav", dtype="float32")
    for name, gain in (("alice copy", 0.999), ("alice again", 0.998)):  # the same voice, other bytes
        sf.write(tmp_path / f"{name}.wav", wav * gain, rate, subtype="FLOAT")
        lib.add(tmp_path / f"{name}.wav", name, consent="fixture", force=True)
    for name, clip in (("alice", "aishell_4s.wav"), ("bob", "p240_24k.mp3"), ("carl", "mid_12s.flac"),
                       ("dora", "odd_7p33s_48k.ogg")):
        lib.add(GOLDEN_INPUTS / clip, name, consent="fixture", force=True)
    expect = sync_api.expect
    with browser_page(srv, key, tmp_path) as (page, errors):
        expect(page.locator("#voices tbody tr")).to_have_count(6)
        group = page.locator("#map circle.group")
        expect(group).to_have_count(1)
        assert sorted(json.loads(group.get_attribute("data-ids"))) == ["alice", "alice again", "alice copy"]
        expect(page.locator("#map circle")).to_have_count(4)

        # every voice is reachable: a point of its own or a listed member of a group
        singles = page.locator("#map circle[data-id]").evaluate_all("cs => cs.map(c => c.dataset.id)")
        assert sorted(singles) == ["bob", "carl", "dora"]
        # no circle covers another: the element at each circle's centre is that circle
        page.locator("#map").scroll_into_view_if_needed()
        covered = page.eval_on_selector_all("#map circle", """cs => cs.filter(c => {
            const r = c.getBoundingClientRect();
            return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) !== c; }).map(c => c.outerHTML)""")
        assert not covered, covered
        # labels never overlap one another
        boxes = page.eval_on_selector_all("#map text.label", "ts => ts.map(t => { const r = t.getBoundingClientRect();"
                                          " return [r.left, r.top, r.right, r.bottom]; })")
        assert len(boxes) >= 3
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)

        group.click()
        listing = page.locator("#map-group")
        expect(listing).to_be_visible()
        expect(listing.locator("button[data-id]")).to_have_text(["alice", "alice again", "alice copy"])
        for name in ("alice copy", "alice again", "alice"):
            listing.locator(f"button[data-id='{name}']").click()
            expect(page.locator("#detail-name")).to_have_text(name)
            expect(group).to_have_class("group selected")
        page.locator("#map circle[data-id='dora']").click()
        expect(page.locator("#detail-name")).to_have_text("dora")
        # keyboard: a point is focusable and opens with Enter
        page.focus("#map circle[data-id='bob']")
        page.keyboard.press("Enter")
        expect(page.locator("#detail-name")).to_have_text("bob")
        page.screenshot(path=str(ARTIFACTS / "09-map-groups.png"), full_page=True)
        assert not errors, errors
