"""The radio page ``/radio`` and its M3U8 download ``/radio.m3u8`` (issue 14), over HTTP.

The download runs through the test client and a real waitress server (the ``http`` fixture); its URLs
are fetched back from the server they name.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask

from soundalike.playlists import m3u8_text
from soundalike.radio import make_radio
from soundalike.recommend import Recommender
from soundalike.web import create_app
from soundalike.web.auth import PasswordHash
from soundalike.web.radio_page import PAGE_N

from .conftest import UPLOAD_LIMIT, library_folder
from .test_web_api import check_error
from .test_web_pages import results_page


def _ids(synth_library: Any, *positions: int) -> list[int]:
    return [synth_library.catalog.get_by_path(str(synth_library.tracks[i][0])).id for i in positions]


def _api_radio(client: Any, query: str) -> list[int]:
    reply = client.get(f"/api/radio?{query}")
    assert reply.status_code == 200, reply.get_data(as_text=True)[:300]
    return [t["track_id"] for t in reply.get_json()["tracks"]]


def _page_ids(page: str) -> list[int]:
    """Track ids of the page in play order: the one playing, then the queue."""
    now = re.search(r'id="now-playing"[^>]*data-track-id="(\d+)"', page)
    assert now, page[:2000]
    return [int(now.group(1))] + [int(i) for i in re.findall(r'<li class="radio-item" data-track-id="(\d+)"', page)]


def _entries(body: str) -> list[tuple[str, str]]:
    """(EXTINF line, location) pairs of an M3U8 text, after checking its header."""
    lines = body.splitlines()
    assert lines[0] == "#EXTM3U"
    assert len(lines) % 2 == 1
    pairs = list(zip(lines[1::2], lines[2::2], strict=True))
    assert all(info.startswith("#EXTINF:") for info, _ in pairs), pairs
    return pairs


# -- the page ----------------------------------------------------------------------------------


def test_radio_page_lists_the_radio_of_the_api_after_the_seeds(client, synth_library):
    seeds = _ids(synth_library, 3, 21)
    reply = client.get(f"/radio?seed={seeds[0]}&seed={seeds[1]}&n=8")
    assert reply.status_code == 200 and reply.mimetype == "text/html"
    page = reply.get_data(as_text=True)
    ids = _page_ids(page)
    assert ids == _api_radio(client, f"seed={seeds[0]}&seed={seeds[1]}&n=8")
    assert len(ids) == 8 and not set(ids) & set(seeds)
    assert f'<audio id="radio-audio" controls preload="metadata" data-track-id="{ids[0]}" src="/api/tracks/{ids[0]}/audio">' in page
    assert page.count("<audio") == 1  # one player for the whole queue
    assert 'src="/static/radio.js"' in page


def test_radio_page_shows_title_path_below_the_music_folder_and_duration_of_each_track(client, synth_library):
    seed = _ids(synth_library, 5)[0]
    page = html.unescape(client.get(f"/radio?seed={seed}&n=4").get_data(as_text=True))
    for track_id in _page_ids(page):
        t = synth_library.catalog.get(track_id)
        below_music = os.path.relpath(t.path, synth_library.music)  # as the pages show paths
        assert f'href="/tracks/{track_id}">{t.title or os.path.basename(t.path)}</a>' in page
        assert below_music in page
        total = round(t.duration)
        assert f"{total // 60}:{total % 60:02d}" in page
    assert str(synth_library.music) not in page  # never the server's folder


def test_radio_page_without_n_queues_the_page_default(client, synth_library):
    seed = _ids(synth_library, 12)[0]
    assert len(_page_ids(client.get(f"/radio?seed={seed}").get_data(as_text=True))) == PAGE_N


@pytest.mark.parametrize(
    "query,status,words",
    [
        ("", 400, ("at least one seed",)),
        ("seed=abc", 400, ("seed must be a track id",)),
        ("seed=987654", 404, ("987654",)),
        ("seed={seed}&n=0", 400, ("n must be a whole number from 1 to 500",)),
        ("seed={seed}&n=501", 400, ("n must be a whole number from 1 to 500",)),
        ("seed={seed}&n=lots", 400, ("n must be",)),
    ],
)
def test_bad_seeds_or_n_are_friendly_error_pages(client, synth_library, query, status, words):
    seed = _ids(synth_library, 0)[0]
    reply = client.get("/radio?" + query.format(seed=seed))
    assert reply.status_code == status, reply.get_data(as_text=True)[:300]
    assert reply.mimetype == "text/html"
    page = html.unescape(reply.get_data(as_text=True))
    assert 'class="error-box"' in page
    for word in words:
        assert word in page


def test_radio_page_of_an_empty_library_says_run_ingest(other_library):
    app = create_app({"SOUNDALIKE_CATALOG": other_library, "SOUNDALIKE_INDEX": None, "MAX_CONTENT_LENGTH": UPLOAD_LIMIT})
    client = app.test_client()
    reply = client.get("/radio?seed=1")
    assert reply.status_code == 200
    assert "No tracks yet</strong> — run <code>soundalike ingest PATH</code>" in reply.get_data(as_text=True)
    m3u8 = client.get("/radio.m3u8?seed=1")
    assert m3u8.status_code == 503 and "no tracks yet — run `soundalike ingest" in m3u8.get_data(as_text=True)


def test_track_page_has_a_start_radio_button(client, synth_library):
    seed = _ids(synth_library, 7)[0]
    page = client.get(f"/tracks/{seed}").get_data(as_text=True)
    assert f'id="start-radio" href="/radio?seed={seed}"' in page


def test_results_page_starts_a_radio_from_the_top_three_recommendations(client, clip):
    _, page = results_page(client, clip.data, k="6")
    cards = [int(i) for i in re.findall(r'<li class="rec" data-track-id="(\d+)"', page)]
    link = re.search(r'id="start-radio" href="([^"]+)"', page)
    assert link, page[:2000]
    assert html.unescape(link.group(1)) == "/radio?" + "&".join(f"seed={i}" for i in cards[:3])
    radio = client.get(html.unescape(link.group(1)))
    assert radio.status_code == 200 and not set(_page_ids(radio.get_data(as_text=True))) & set(cards[:3])


# -- exclude: what has been played stays out ---------------------------------------------------


def test_api_radio_never_plays_an_excluded_track(client, synth_library, web_index):
    seed = _ids(synth_library, 9)[0]
    first = _api_radio(client, f"seed={seed}&n=10&drift=0")
    heard = first[:5]
    query = f"seed={seed}&n=10&drift=0&" + "&".join(f"exclude={i}" for i in heard)
    again = _api_radio(client, query)
    assert len(again) == 10 and not set(again) & set(heard)
    assert again[:5] == first[5:]  # drift 0 ranks by the seeds alone: the rest of the radio comes first, in order
    rec = Recommender(synth_library.catalog, web_index)
    expected = make_radio(web_index, synth_library.catalog, seeds=[seed], resolve=rec.resolve, n=10, drift=0.0, exclude=heard)
    assert again == [t.id for t in expected.tracks]


def test_api_radio_validates_exclude(http, synth_library):
    seed = _ids(synth_library, 0)[0]
    check_error(http.get(f"/api/radio?seed={seed}&exclude=abc"), 400, "exclude must be track ids")
    many = "&".join(f"exclude={i}" for i in range(1, 1002))
    check_error(http.get(f"/api/radio?seed={seed}&{many}"), 400, "exclude at most 1000")


# -- the M3U8 download -------------------------------------------------------------------------


def test_m3u8_lists_absolute_audio_urls_with_durations_and_titles(http, synth_library):
    seed = _ids(synth_library, 17)[0]
    reply = http.get(f"/radio.m3u8?seed={seed}&n=6")
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["Content-Type"] == "audio/x-mpegurl"
    assert reply.headers["Content-Disposition"] == 'attachment; filename="soundalike-radio.m3u8"'
    body = reply.body.decode("utf-8")
    pairs = _entries(body)
    expected = _api_radio_http(http, f"seed={seed}&n=6")
    assert len(pairs) == 6
    ids = []
    for (info, url), track_id in zip(pairs, expected, strict=True):
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.netloc and parts.path == f"/api/tracks/{track_id}/audio", url
        t = synth_library.catalog.get(track_id)
        stem = os.path.splitext(os.path.basename(t.path))[0]
        who = f"{t.artist} – {t.title}" if t.artist and t.title else (t.title or stem)
        assert info == f"#EXTINF:20,{who}"  # the synthetic tracks are 20 s long
        assert round(t.duration) == 20
        ids.append(track_id)
    assert seed not in ids
    # the entries play: each URL answers audio, from the server it names
    for _, url in pairs:
        audio = _fetch(http, url)
        assert audio.status == 200 and audio.content_type.startswith("audio/"), (url, audio.status, audio.content_type)
        assert len(audio.body) > 10_000


def test_m3u8_never_names_a_server_path(http, synth_library):
    seed = _ids(synth_library, 2)[0]
    body = http.get(f"/radio.m3u8?seed={seed}&n=12").body.decode("utf-8")
    assert str(synth_library.music) not in body and str(synth_library.folder) not in body
    for _, location in _entries(body):
        assert location.startswith("http")
        track = synth_library.catalog.get(int(urlsplit(location).path.split("/")[3]))
        assert track.path not in body and os.path.dirname(track.path) not in body


def test_m3u8_of_listed_tracks_keeps_their_order(http, synth_library):
    ids = _ids(synth_library, 30, 4, 11)
    body = http.get("/radio.m3u8?" + "&".join(f"track={i}" for i in ids)).body.decode("utf-8")
    assert [int(urlsplit(url).path.split("/")[3]) for _, url in _entries(body)] == ids


@pytest.mark.parametrize(
    "query,status,word",
    [
        ("", 400, "at least one seed"),
        ("seed=987654", 404, "987654"),
        ("seed={seed}&n=501", 400, "n must be"),
        ("track=987654", 404, "987654"),
        ("track=x", 400, "track must be track ids"),
        ("track=" + ",".join(["1"] * 501), 400, "at most 500 tracks"),
    ],
)
def test_m3u8_refuses_bad_input(client, synth_library, query, status, word):
    seed = _ids(synth_library, 0)[0]
    reply = client.get("/radio.m3u8?" + query.format(seed=seed))
    assert reply.status_code == status and word in html.unescape(reply.get_data(as_text=True))


def test_m3u8_text_takes_urls_or_paths(synth_library):
    tracks = [synth_library.catalog.get(i) for i in _ids(synth_library, 0, 1)]
    by_url = m3u8_text(tracks, locate=lambda t: f"https://example.org/a/{t.id}")
    assert by_url.splitlines()[2] == f"https://example.org/a/{tracks[0].id}"
    by_path = m3u8_text(tracks, synth_library.music / "radio.m3u8")
    assert by_path.splitlines()[1] == by_url.splitlines()[1]  # the same EXTINF either way
    assert not by_path.splitlines()[2].startswith("http")


# -- behind the password -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked_app(synth_library: Any, web_index: Any) -> Flask:
    return create_app(
        {
            "SOUNDALIKE_LIBRARY": library_folder(web_index),
            "SOUNDALIKE_CATALOG": synth_library.catalog,
            "SOUNDALIKE_INDEX": web_index,
            "MAX_CONTENT_LENGTH": UPLOAD_LIMIT,
            "SOUNDALIKE_PASSWORD_HASH": PasswordHash.of("radio password"),
        }
    )


@pytest.mark.parametrize("path", ["/radio?seed={seed}", "/radio.m3u8?seed={seed}", "/radio.m3u8?track={seed}"])
def test_radio_page_and_download_need_the_password(locked_app, synth_library, path):
    seed = _ids(synth_library, 1)[0]
    client = locked_app.test_client()
    url = path.format(seed=seed)
    refused = client.get(url)
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/login?next=/radio")
    assert str(synth_library.music) not in refused.get_data(as_text=True)
    allowed = client.get(url, headers={"Authorization": "Bearer radio password"})
    assert allowed.status_code == 200
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert token
    client.post("/login", data={"password": "radio password", "csrf_token": token.group(1)})
    assert client.get(url).status_code == 200  # and with the session of a logged-in browser


# -- helpers over both transports ---------------------------------------------------------------


def _api_radio_http(http: Any, query: str) -> list[int]:
    reply = http.get(f"/api/radio?{query}")
    assert reply.status == 200, reply.body[:300]
    return [t["track_id"] for t in reply.json()["tracks"]]


def _fetch(http: Any, url: str) -> Any:
    """GET an absolute URL of the download: over TCP for the real server, by its path for the test client."""
    from .conftest import Reply

    if http.name == "waitress":
        r = requests.get(url, timeout=60)
        return Reply(r.status_code, r.headers, r.content)
    parts = urlsplit(url)
    assert parts.netloc == "localhost"  # the test client's host
    return http.get(parts.path)
