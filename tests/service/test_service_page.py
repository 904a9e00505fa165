"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python): list,
upload a file, play, record with a fake microphone, rename, delete, the map renders and a click opens a voice.

Screenshots go to ``test-artifacts/service-page/`` at the repository root (gitignored).  Skipped when
Playwright or a Chromium binary is missing (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    mic = fake_mic_wav(tmp_path / "mic.wav")
    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
            "--no-sandbox"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.grant_permissions(["microphone"], origin=srv.url)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: d.accept())
            page.set_default_timeout(60_000)
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
            page.select_option("#compare-a", "alice")
            page.select_option("#compare-b", "bob")
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
        finally:
            browser.close()
    assert srv.app.state.service.library.check().ok


def test_the_api_reference_works_offline(page_server):
    """``/docs`` renders Swagger UI from files the service itself serves: every request the page makes stays
    on the server, none reaches a CDN."""
    srv, _key = page_server
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            elsewhere: list[str] = []
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(srv.url)
                       else (elsewhere.append(route.request.url), route.abort()))
            page.goto(srv.url + "/docs")
            sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("voicebank")
            sync_api.expect(page.locator(".opblock-summary-path").first).to_be_visible()
            assert page.locator(".opblock").count() > 10
            assert not elsewhere, elsewhere
        finally:
            browser.close()
