"""The listening pages where a listener tripped (issue 14, item 4), tried in Chromium on real clips.

A small library of ../shared/dev-music clips, ingested by the real CLI, with what tripped people:
two files called ``battle_theme.ogg`` in different folders, a folder and a file with very long names,
a file that fails analysis, and a transcoded copy of one clip (so that an upload of that clip cannot
be told from the copy by its windows alone).
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from dev_music import DEV_MUSIC, needs_dev_music
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.cli import main
from soundalike.web import create_app
from soundalike.web.auth import PasswordHash

from .conftest import ARTIFACTS, LiveServer

LONG_FOLDER = "A soundtrack folder with a really quite extraordinarily long name for phones"
LONG_FILE = "The_Motorway_theme_with_an_unbroken_file_name_that_goes_on_and_on_and_on.mp3"
PHONES = (360, 390, 414)
PER_PAGE = 3

pytestmark = needs_dev_music


@dataclass(frozen=True)
class Listening:
    music: Path
    library: Path
    app: Flask
    url: str
    ids: dict[str, int]
    """Track id by path relative to ``music``."""


@pytest.fixture(scope="module")
def listening(tmp_path_factory: pytest.TempPathFactory, transcoder: Any) -> Iterator[Listening]:
    root = tmp_path_factory.mktemp("listening")
    music = root / "Music"
    files = {
        "flare-game/battle_theme.ogg": "flare-game/battle_theme.ogg",
        "flare-game/boss_theme.mp3": "flare-game/boss_theme.mp3",
        "flare-game/cave_theme.ogg": "flare-game/cave_theme.ogg",
        "hedgewars-data/battle_theme.ogg": "hedgewars-data/City.ogg",  # same name, other music
        "hedgewars-data/Art.ogg": "hedgewars-data/Art.ogg",
        f"{LONG_FOLDER}/{LONG_FILE}": "openclonk-data/Motorway.mp3",
        f"{LONG_FOLDER}/Cavern.ogg": "openclonk-data/Cavern.ogg",
    }
    for target, source in files.items():
        (music / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEV_MUSIC / source, music / target)
    (music / "copies").mkdir()
    transcoder(music / "flare-game/boss_theme.mp3", music / "copies/boss_theme.160k.mp3", bitrate="160k")
    (music / "flare-game/broken.mp3").write_bytes(b"ID3" + bytes(range(256)) * 8)
    library = root / "library"
    result = CliRunner().invoke(main, ["--library", str(library), "ingest", str(music), "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    app = create_app({"SOUNDALIKE_LIBRARY": library, "SOUNDALIKE_PER_PAGE": PER_PAGE, "MAX_CONTENT_LENGTH": 8 * 1024 * 1024})
    catalog = SQLiteCatalog(library / "catalog.sqlite", create=False)
    ids = {Path(t.path).relative_to(music).as_posix(): t.id for t in catalog.tracks(status=None)}
    catalog.close()
    with LiveServer(app) as live:
        yield Listening(music=music, library=library, app=app, url=live.url, ids=ids)


def _bytes(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def _upload(page: Page, url: str, file: Path) -> None:
    page.goto(url + "/")
    page.set_input_files("#file", str(file))
    page.click("#submit")
    page.wait_for_url(re.compile(r".*/results/[A-Za-z0-9_-]+$"))


def _fits(page: Page) -> tuple[int, int, list[str]]:
    """The page's width, the window's, and the first elements sticking out on the right."""
    width, window = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
            .slice(0, 4).map((e) => `${e.tagName.toLowerCase()}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`)"""
    )
    return width, window, wide


# -- 1. every page fits a phone --------------------------------------------------------------


@pytest.mark.parametrize("width", PHONES)
def test_every_page_fits_a_phone_without_sideways_scrolling(browser: Browser, listening: Listening, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        _upload(page, listening.url, listening.music / f"{LONG_FOLDER}/{LONG_FILE}")
        results = page.url.removeprefix(listening.url)
        pages = {
            "results": results,
            "home": "/",
            "library": "/library",
            "library-2": "/library?page=2",
            "library-failed": "/library?status=failed",
            "track": f"/tracks/{listening.ids[f'{LONG_FOLDER}/{LONG_FILE}']}",
            "track-failed": f"/tracks/{listening.ids['flare-game/broken.mp3']}",
            "radio": f"/radio?seed={listening.ids[f'{LONG_FOLDER}/{LONG_FILE}']}",
            "error-404": "/tracks/987654",
            "error-400": "/library?page=nope",
        }
        too_wide = {}
        for name, path in pages.items():
            page.goto(listening.url + path)
            page.wait_for_load_state("load")
            page_width, window, wide = _fits(page)
            if page_width > window:
                too_wide[name] = (page_width, wide)
            if width == 390:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"phone-390-{name}.png"), full_page=True)
        assert too_wide == {}, f"wider than {width} px: {too_wide}"
    finally:
        context.close()


@pytest.mark.parametrize("width", PHONES)
def test_the_login_page_fits_a_phone(browser: Browser, listening: Listening, width: int) -> None:
    app = create_app({"SOUNDALIKE_LIBRARY": listening.library, "SOUNDALIKE_PASSWORD_HASH": PasswordHash.of("let me in")})
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        with LiveServer(app) as live:
            page.goto(live.url + "/library")
            page.wait_for_url(re.compile(r".*/login\?next=/library$"))
            page.fill("#password", "wrong")
            page.click("#login")
            expect(page.locator("#login-error")).to_be_visible()
            page_width, window, wide = _fits(page)
            if width == 390:
                page.screenshot(path=str(ARTIFACTS / "phone-390-login.png"), full_page=True)
        assert page_width <= window, f"login page is {page_width} px in a {window} px window: {wide}"
    finally:
        context.close()


# -- 2. the pager link can be read -----------------------------------------------------------

_CONTRAST = """(el) => {
    const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
    const lum = ([r, g, b]) => {
        const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    let node = el, background = null;
    while (node) {  // the first ancestor that paints a background
        const c = rgb(getComputedStyle(node).backgroundColor);
        if (c.length < 4 || c[3] > 0) { background = c; break; }
        node = node.parentElement;
    }
    background = background || [255, 255, 255];
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background)];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_the_pager_link_contrasts_with_its_background(page: Page, listening: Listening) -> None:
    page.goto(listening.url + "/library")
    link = page.locator("nav.pager a[rel=next]")
    expect(link).to_have_text("next →")
    assert link.evaluate(_CONTRAST) >= 4.5
    page.goto(listening.url + "/library?page=2")
    assert page.locator("nav.pager a[rel=prev]").evaluate(_CONTRAST) >= 4.5
    assert page.locator("header.top nav a[aria-current=page]").evaluate(_CONTRAST) >= 4.5  # the header keeps its light links


# -- 3. players know their length before play ------------------------------------------------


def test_players_know_their_length_before_anyone_presses_play(page: Page, listening: Listening) -> None:
    _upload(page, listening.url, listening.music / "flare-game/cave_theme.ogg")
    players = page.locator("audio")
    assert players.count() >= 10
    # No load() or play() here: only what the page itself asks the browser to fetch.
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')].every((a) => a.readyState >= 1 && Number.isFinite(a.duration))"
    )
    durations = players.evaluate_all("(els) => els.map((a) => a.duration)")
    assert all(d == pytest.approx(30.0, abs=0.2) for d in durations), durations
    assert players.evaluate_all("(els) => els.every((a) => a.paused && a.currentTime === 0)")
    expect(page.locator("li.rec .length").first).to_have_text("0:30")
    expect(page.locator("li.least-item .length").first).to_have_text("0:30")


# -- 4. no page or answer shows the server's folders -----------------------------------------


def test_no_page_or_api_answer_shows_the_library_folder(listening: Listening) -> None:
    client = listening.app.test_client()
    ok = listening.ids["flare-game/cave_theme.ogg"]
    failed = listening.ids["flare-game/broken.mp3"]
    clip = (listening.music / "flare-game/battle_theme.ogg").read_bytes()

    def post(path: str, **data: str) -> Any:
        return client.post(path, data={"file": (_bytes(clip), "battle_theme.ogg"), **data}, content_type="multipart/form-data")

    replies = {
        "home": client.get("/"),
        "library": client.get("/library"),
        "library search": client.get("/library?q=Music"),
        "failures": client.get("/library?status=failed"),
        "track": client.get(f"/tracks/{ok}"),
        "failed track": client.get(f"/tracks/{failed}"),
        "api tracks": client.get("/api/tracks?status=all&per_page=50"),
        "api track": client.get(f"/api/tracks/{ok}"),
        "api failed track": client.get(f"/api/tracks/{failed}"),
        "api similar": client.get(f"/api/tracks/{ok}/similar?k=10"),
        "api similar of a failure": client.get(f"/api/tracks/{failed}/similar"),
        "api segments": client.get(f"/api/tracks/{ok}/segments.csv"),
        "api audio of a failure": client.get(f"/api/tracks/{failed}/audio", headers={"Range": "bytes=99999-"}),
        "api radio": client.get(f"/api/radio?seed={ok}&n=20"),
        "radio page": client.get(f"/radio?seed={ok}&n=20"),
        "radio m3u8": client.get(f"/radio.m3u8?seed={ok}&n=20"),
        "api radio upload": post("/api/radio", n="5"),
        "api recommend": post("/api/recommend", k="10"),
        "api openapi": client.get("/api/openapi.json"),
        "api health": client.get("/api/health"),
    }
    upload = post("/upload", k="10")
    assert upload.status_code == 303
    replies["results"] = client.get(upload.headers["Location"])
    replies["results csv"] = client.get(upload.headers["Location"] + "/segments.csv")
    folders = [str(listening.music), str(listening.music.parent)]
    shown = {name: [f for f in folders if f in r.get_data(as_text=True)] for name, r in replies.items()}
    assert {name: found for name, found in shown.items() if found} == {}
    # What they show instead: the path below the music folder.
    assert replies["api track"].get_json()["path"] == "flare-game/cave_theme.ogg"
    assert "flare-game/cave_theme.ogg" in replies["track"].get_data(as_text=True)
    assert {r["path"] for r in replies["api similar"].get_json()["results"]} >= {"hedgewars-data/battle_theme.ogg", "flare-game/battle_theme.ogg"}
    assert "flare-game/broken.mp3" in replies["api similar of a failure"].get_json()["error"]


# -- 5. an upload that is a library file says so ---------------------------------------------


def test_uploading_a_library_file_says_this_clip_is_that_track(page: Page, listening: Listening) -> None:
    source = listening.ids["flare-game/battle_theme.ogg"]
    _upload(page, listening.url, listening.music / "flare-game/battle_theme.ogg")
    identified = page.locator("#identified")
    expect(identified).to_contain_text("This clip is flare-game/battle_theme.ogg, track")
    expect(identified.locator("a")).to_have_attribute("href", f"/tracks/{source}")
    expect(page.locator("li.rec").first).to_have_attribute("data-track-id", str(source))

    reply = listening.app.test_client().post(
        "/api/recommend",
        data={"file": (_bytes((listening.music / "flare-game/battle_theme.ogg").read_bytes()), "mine.ogg"), "k": "3"},
        content_type="multipart/form-data",
    )
    body = reply.get_json()
    assert body["identified"]["track_id"] == source and body["results"][0]["track_id"] == source
    assert (body["identified"]["whole"], body["identified"]["same_file"]) == (True, True)
    assert body["identified"]["says"] == "this clip is battle_theme.ogg"


def test_a_library_file_with_a_transcoded_copy_is_still_named_by_its_bytes(listening: Listening) -> None:
    original = listening.ids["flare-game/boss_theme.mp3"]
    copy = listening.ids["copies/boss_theme.160k.mp3"]
    client = listening.app.test_client()
    data = (listening.music / "flare-game/boss_theme.mp3").read_bytes()
    reply = client.post("/api/recommend", data={"file": (_bytes(data), "boss.mp3"), "k": "3"}, content_type="multipart/form-data")
    body = reply.get_json()
    # The copy matches every window as well as the original, so only the bytes can decide.
    assert {r["track_id"] for r in body["results"][:2]} == {original, copy}
    assert body["identified"]["track_id"] == original and body["identified"]["same_file"] is True
    assert body["results"][0]["track_id"] == original


# -- 6. same-named files are told apart ------------------------------------------------------


def test_cli_tables_tell_two_battle_themes_apart(listening: Listening) -> None:
    lib = ["--library", str(listening.library)]
    seed = str(listening.ids["flare-game/cave_theme.ogg"])
    outputs = {
        "similar": CliRunner().invoke(main, [*lib, "similar", seed, "-k", "10"]),
        "query": CliRunner().invoke(main, [*lib, "query", str(listening.music / "flare-game/cave_theme.ogg"), "-k", "10"]),
        "radio": CliRunner().invoke(main, [*lib, "radio", seed, "-n", "8"]),
    }
    for name, result in outputs.items():
        assert result.exit_code == 0, f"{name}: {result.output}"
        lines = result.output.splitlines()
        assert any(line.endswith("] flare-game/battle_theme.ogg") for line in lines), f"{name}:\n{result.output}"
        assert any(line.endswith("] hedgewars-data/battle_theme.ogg") for line in lines), f"{name}:\n{result.output}"
        assert not any(line.endswith("] battle_theme.ogg") for line in lines), f"{name}:\n{result.output}"
        assert any(line.endswith("] Art.ogg") for line in lines), f"{name}: a name without a twin stays short\n{result.output}"


def test_pages_tell_two_battle_themes_apart(listening: Listening) -> None:
    client = listening.app.test_client()
    seed = listening.ids["flare-game/cave_theme.ogg"]
    page = client.get(f"/tracks/{seed}?k=10").get_data(as_text=True)
    titles = re.findall(r'<a class="title" href="/tracks/\d+">([^<]+)</a>', page)
    assert "flare-game/battle_theme.ogg" in titles and "hedgewars-data/battle_theme.ogg" in titles
    assert "battle_theme.ogg" not in titles and "Art.ogg" in titles
