"""The upload page in a real browser: Playwright driving Debian's Chromium against a waitress server."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .conftest import ARTIFACTS


def _audio_loads(page: Page, selector: str) -> float:
    """Load one <audio> element's metadata in the browser and return its duration in seconds."""
    duration: float = page.eval_on_selector(
        selector,
        """(audio) => new Promise((resolve, reject) => {
            audio.addEventListener('loadedmetadata', () => resolve(audio.duration), {once: true});
            audio.addEventListener('error', () => reject(new Error('audio error ' + (audio.error && audio.error.code))), {once: true});
            audio.preload = 'metadata';
            audio.load();
        })""",
    )
    return duration


def test_upload_in_the_browser_shows_recommendations_players_and_more_like_this(
    page: Page, server: str, clip: Any, synth_library: Any
) -> None:
    page.goto(server + "/")
    expect(page.locator("h1")).to_have_text("What sounds like this?")
    page.set_input_files("#file", str(clip.path))
    expect(page.locator("#file-name")).to_contain_text("excerpt.mp3")
    page.select_option("#aspect", "all")
    page.fill("#k", "6")
    page.click("#submit")
    page.wait_for_url(re.compile(r".*/results/[A-Za-z0-9_-]+$"))

    cards = page.locator("li.rec")
    expect(cards).to_have_count(6)
    expect(page.locator("li.least-item")).to_have_count(6)
    expect(page.locator("li.rec audio")).to_have_count(6)
    expect(page.locator("li.rec a.more")).to_have_count(6)
    source = synth_library.catalog.get_by_path(str(clip.source))
    expect(cards.first).to_have_attribute("data-track-id", str(source.id))
    expect(page.locator(".query-name")).to_have_text("excerpt.mp3")
    # The clip and a recommendation really play in Chromium (the audio endpoints answer Range requests).
    assert _audio_loads(page, "#query-audio") == pytest.approx(8.0, abs=0.2)
    assert _audio_loads(page, "li.rec audio") == pytest.approx(20.0, abs=0.2)
    page.wait_for_function("() => { const i = document.querySelector('img.picture'); return i.complete && i.naturalWidth > 0; }")
    expect(page.locator("a[href$='segments.csv']")).to_have_count(1)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-results.png"), full_page=True)

    first_title = cards.first.locator("a.title").inner_text()
    cards.first.locator("a.more").click()
    page.wait_for_url(re.compile(rf".*/tracks/{source.id}\?aspect=all$"))
    expect(page.locator("h1")).to_have_text(first_title)
    neighbours = page.locator("#neighbours li.rec")
    expect(neighbours).to_have_count(10)
    ids = neighbours.evaluate_all("(els) => els.map((e) => e.dataset.trackId)")
    assert str(source.id) not in ids
    page.wait_for_function("() => { const i = document.querySelector('img.picture'); return i.complete && i.naturalWidth > 0; }")


def test_dropping_a_file_that_is_not_audio_shows_the_reason(page: Page, server: str) -> None:
    page.goto(server + "/")
    payload = base64.b64encode(b"this is a text file, not a song\n" * 40).decode()
    page.evaluate(
        """(payload) => {
            const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], 'notes.mp3', {type: 'audio/mpeg'}));
            const zone = document.getElementById('dropzone');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        payload,
    )
    expect(page.locator("#file-name")).to_contain_text("notes.mp3")
    page.click("#submit")
    error = page.locator("#upload-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("notes.mp3: not a recognised audio file")
    assert page.url == server + "/"


def test_a_file_over_the_limit_is_refused_before_uploading(page: Page, server: str) -> None:
    page.goto(server + "/")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url}"))
    page.set_input_files("#file", files=[{"name": "huge.wav", "mimeType": "audio/wav", "buffer": bytes(3 * 1024 * 1024)}])
    expect(page.locator("#upload-error")).to_contain_text("more than the 2 MB limit")
    page.click("#submit")  # sending it anyway: the page refuses again, and nothing leaves the browser
    expect(page.locator("#upload-error")).to_have_text("huge.wav is 3.0 MB, more than the 2 MB limit.")
    page.evaluate("() => fetch('/api/health')")  # a request after the click, so any upload would be seen before it
    assert [r for r in sent if not r.endswith("/api/health")] == [], sent
    assert page.url == server + "/"


def test_a_logged_in_browser_uploads_with_the_csrf_token(page: Page, synth_library: Any, web_index: Any, clip: Any) -> None:
    from soundalike.web import create_app
    from soundalike.web.auth import PasswordHash

    from .conftest import UPLOAD_LIMIT, LiveServer, library_folder

    app = create_app(
        {
            "SOUNDALIKE_LIBRARY": library_folder(web_index),
            "SOUNDALIKE_CATALOG": synth_library.catalog,
            "SOUNDALIKE_INDEX": web_index,
            "MAX_CONTENT_LENGTH": UPLOAD_LIMIT,
            "SOUNDALIKE_PASSWORD_HASH": PasswordHash.of("let me in"),
        }
    )
    with LiveServer(app) as live:
        page.goto(live.url + "/")
        page.wait_for_url(re.compile(r".*/login\?next=/$"))
        page.fill("#password", "let me in")
        page.click("#login")
        page.wait_for_url(live.url + "/")
        page.set_input_files("#file", str(clip.path))
        page.fill("#k", "4")
        page.click("#submit")
        page.wait_for_url(re.compile(r".*/results/[A-Za-z0-9_-]+$"))
        expect(page.locator("li.rec")).to_have_count(4)
        page.click("nav form.logout button")
        page.wait_for_url(re.compile(r".*/login$"))
