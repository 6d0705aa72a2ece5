"""The radio page in a real browser: Playwright driving Debian's Chromium against a waitress server.

The player really plays (Chromium decodes the library's files); the end of a track is forced by
seeking to its end, which fires the ``ended`` event the page listens to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from .conftest import ARTIFACTS, CHROMIUM_ARGS, chromium

# Pages may start playing without a click (as after "Start radio"); no sound card is needed or used.
RADIO_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required", "--mute-audio"]


@pytest.fixture(scope="module")
def radio_browser() -> Iterator[Browser]:
    with chromium(RADIO_ARGS) as launched:
        yield launched


def _open(browser: Browser, width: int, height: int = 900) -> tuple[Any, Page, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


@pytest.fixture
def page(radio_browser: Browser) -> Iterator[Page]:
    context, page, errors = _open(radio_browser, 1280)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def _seed(synth_library: Any, position: int) -> int:
    return int(synth_library.catalog.get_by_path(str(synth_library.tracks[position][0])).id)


def _radio(server: str, query: str) -> list[int]:
    reply = requests.get(f"{server}/api/radio?{query}", timeout=60)
    assert reply.status_code == 200, reply.text[:300]
    return [t["track_id"] for t in reply.json()["tracks"]]


def _open_radio(page: Page, server: str, query: str) -> None:
    page.goto(f"{server}/radio?{query}")
    page.wait_for_selector("#radio.scripted")  # radio.js has taken over the list


def _now(page: Page) -> int:
    return int(page.eval_on_selector("#radio-audio", "(a) => a.dataset.trackId"))


def _queue(page: Page) -> list[int]:
    ids: list[str] = page.locator("#radio-queue li.radio-item").evaluate_all("(els) => els.map((e) => e.dataset.trackId)")
    return [int(i) for i in ids]


def _played(page: Page) -> list[int]:
    ids: list[str] = page.locator("#radio-played li.radio-item").evaluate_all("(els) => els.map((e) => e.dataset.trackId)")
    return [int(i) for i in ids]


def _wait_playing(page: Page, track_id: int) -> None:
    """Wait until the player plays ``track_id``'s audio and its time moves."""
    page.wait_for_function(
        """(id) => { const a = document.getElementById('radio-audio');
            return a.dataset.trackId === String(id) && a.src.endsWith('/api/tracks/' + id + '/audio')
                && !a.paused && a.currentTime > 0.05 && a.readyState >= 2; }""",
        arg=track_id,
    )


def _end_current_track(page: Page) -> None:
    page.eval_on_selector("#radio-audio", "(a) => { a.currentTime = a.duration; }")


def test_the_radio_plays_its_queue_in_order(page: Page, server: str, synth_library: Any) -> None:
    seed = _seed(synth_library, 6)
    expected = _radio(server, f"seed={seed}&n=6")
    _open_radio(page, server, f"seed={seed}&n=6")
    assert _now(page) == expected[0] and _queue(page) == expected[1:]
    page.eval_on_selector("#radio-audio", "(a) => a.play()")
    _wait_playing(page, expected[0])
    for i in (1, 2):
        _end_current_track(page)  # the `ended` event: the next track of the queue starts
        _wait_playing(page, expected[i])
        assert _queue(page)[: 6 - 1 - i] == expected[i + 1 :]
        assert _played(page) == expected[:i]
    track = synth_library.catalog.get(expected[2])
    expect(page.locator("#now-title")).to_have_text(track.title or os.path.basename(track.path))
    expect(page.locator("#now-duration")).to_have_text("0:20")


def test_next_previous_play_now_and_remove(page: Page, server: str, synth_library: Any) -> None:
    seed = _seed(synth_library, 14)
    expected = _radio(server, f"seed={seed}&n=8")
    _open_radio(page, server, f"seed={seed}&n=8")
    page.click("#radio-next")
    _wait_playing(page, expected[1])
    assert _played(page) == [expected[0]] and _queue(page) == expected[2:]
    page.click("#radio-prev")
    _wait_playing(page, expected[0])
    assert _played(page) == [] and _queue(page) == expected[1:]
    # play now: the chosen track plays, the ones before it stay queued
    page.locator(f"#radio-queue li[data-track-id='{expected[3]}'] button.play-now").click()
    _wait_playing(page, expected[3])
    assert _queue(page) == [expected[1], expected[2], *expected[4:]]
    page.locator(f"#radio-queue li[data-track-id='{expected[2]}'] button.remove").click()
    assert _queue(page) == [expected[1], *expected[4:]]
    assert _now(page) == expected[3]
    m3u8 = page.get_attribute("#radio-m3u8", "href")
    assert m3u8 == "/radio.m3u8?" + "&".join(f"track={i}" for i in [expected[3], expected[1], *expected[4:]])


def test_the_queue_is_topped_up_when_it_runs_low(page: Page, server: str, synth_library: Any) -> None:
    seed = _seed(synth_library, 25)
    first = _radio(server, f"seed={seed}&n=4")
    _open_radio(page, server, f"seed={seed}&n=4")
    assert _queue(page) == first[1:]
    page.locator(f"#radio-queue li[data-track-id='{first[1]}'] button.remove").click()
    # 2 left (fewer than 3): more are asked for, never the seed, what plays, is queued or was removed
    page.wait_for_function("() => document.querySelectorAll('#radio-queue li.radio-item').length > 2")
    queue = _queue(page)
    assert queue[:2] == first[2:]
    exclude = "&".join(f"exclude={i}" for i in [first[0], *first[2:], first[1]])
    assert queue[2:] == _radio(server, f"seed={seed}&n=4&{exclude}")
    assert seed not in queue and first[1] not in queue and len(set(queue)) == len(queue)


def test_more_like_this_reseeds_the_queue_from_the_current_track(page: Page, server: str, synth_library: Any) -> None:
    seed = _seed(synth_library, 33)
    expected = _radio(server, f"seed={seed}&n=5")
    _open_radio(page, server, f"seed={seed}&n=5")
    page.click("#radio-next")
    _wait_playing(page, expected[1])
    page.click("#radio-more")
    expect(page.locator("#radio-status")).to_contain_text("Up next: more like")
    current = expected[1]
    assert _now(page) == current  # the track playing goes on
    queue = _queue(page)
    assert queue == _radio(server, f"seed={current}&n=5&exclude={expected[0]}")
    assert expected[0] not in queue and current not in queue
    _wait_playing(page, current)


def test_start_radio_on_a_track_page_plays_a_radio(page: Page, server: str, synth_library: Any) -> None:
    seed = _seed(synth_library, 19)
    page.goto(f"{server}/tracks/{seed}")
    page.click("#start-radio")
    page.wait_for_url(f"{server}/radio?seed={seed}")
    first = _radio(server, f"seed={seed}&n=20")
    _wait_playing(page, first[0])
    assert _queue(page) == first[1:]
    expect(page.locator(".radio-page .eyebrow").first).to_contain_text("Radio after")


def test_desktop_layout_and_screenshot(page: Page, server: str, synth_library: Any) -> None:
    seed = _seed(synth_library, 2)
    _open_radio(page, server, f"seed={seed}&n=8")
    page.click("#radio-next")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "radio-desktop.png"), full_page=True)


@pytest.mark.parametrize("width", [360, 390, 414])
def test_no_horizontal_scroll_on_phones(radio_browser: Browser, server: str, synth_library: Any, width: int) -> None:
    context, page, errors = _open(radio_browser, width, 800)
    try:
        seed = _seed(synth_library, 2)
        _open_radio(page, server, f"seed={seed}&n=8")
        page.click("#radio-next")
        sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert sizes[0] <= sizes[1], sizes
        for selector in ("#radio-next", "#radio-more", "#radio-queue li.radio-item button.remove"):
            box = page.locator(selector).first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
        if width == 390:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "radio-phone.png"), full_page=True)
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_a_logged_in_browser_plays_and_tops_up_the_radio(page: Page, synth_library: Any, web_index: Any) -> None:
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
    seed = _seed(synth_library, 8)
    with LiveServer(app) as live:
        page.goto(f"{live.url}/radio?seed={seed}&n=3")
        page.wait_for_url(re.compile(r".*/login\?next=/radio"))
        page.fill("#password", "let me in")
        page.click("#login")
        page.wait_for_url(f"{live.url}/radio?seed={seed}&n=3")
        page.wait_for_selector("#radio.scripted")
        first = _now(page)
        _wait_playing(page, first)
        # 2 queued, fewer than 3: the page asks /api/radio for more with the session's cookie
        page.wait_for_function("() => document.querySelectorAll('#radio-queue li.radio-item').length > 2")
        queued = _queue(page)
        assert first not in queued and seed not in queued and len(set(queued)) == len(queued)
        _end_current_track(page)
        _wait_playing(page, queued[0])
        expect(page.locator("#radio-status")).not_to_contain_text("Could not")


def test_without_javascript_the_radio_is_a_readable_list(radio_browser: Browser, server: str, synth_library: Any) -> None:
    seed = _seed(synth_library, 27)
    expected = _radio(server, f"seed={seed}&n=5")
    context = radio_browser.new_context(viewport={"width": 390, "height": 800}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server}/radio?seed={seed}&n=5")
        assert _now(page) == expected[0] and _queue(page) == expected[1:]
        expect(page.locator("#radio-audio")).to_be_visible()
        expect(page.locator(".transport")).to_be_hidden()  # the buttons need the script
        expect(page.locator("#radio-queue li.radio-item a.listen")).to_have_count(4)
        for track_id in expected[1:]:
            expect(page.locator(f"#radio-queue li[data-track-id='{track_id}'] a.title")).to_be_visible()
        expect(page.locator("#radio-m3u8")).to_have_attribute("href", f"/radio.m3u8?seed={seed}&n=5")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        context.close()
