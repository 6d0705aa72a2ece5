"""The HTML pages, through the test client: upload without JavaScript, results, library, track, errors."""

from __future__ import annotations

import csv
import html
import io
import re
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

import pytest

from soundalike.recommend import SEGMENT_CSV_FIELDS
from soundalike.web import create_app
from soundalike.web.common import shared

from .conftest import PER_PAGE, UPLOAD_LIMIT

PNG = b"\x89PNG\r\n\x1a\n"


def upload(client: Any, data: bytes, name: str = "clip.mp3", **fields: str) -> Any:
    return client.post("/upload", data={"file": (io.BytesIO(data), name), **fields})


def results_page(client: Any, data: bytes, name: str = "clip.mp3", **fields: str) -> tuple[str, str]:
    """Upload without JavaScript (plain form POST) and follow the redirect; returns (url, html)."""
    reply = upload(client, data, name, **fields)
    assert reply.status_code == 303, reply.get_data(as_text=True)[:500]
    url = reply.headers["Location"]
    page = client.get(url)
    assert page.status_code == 200
    return url, page.get_data(as_text=True)


def test_home_page_has_the_upload_form_aspects_and_k(client):
    page = client.get("/").get_data(as_text=True)
    assert 'id="upload-form"' in page and 'enctype="multipart/form-data"' in page
    assert 'type="file"' in page and 'name="file"' in page
    for aspect in ("all", "timbre", "spectral", "rhythm", "harmony", "loudness"):
        assert f'<option value="{aspect}"' in page
    assert 'name="k"' in page and 'max="100"' in page
    assert f'data-max-bytes="{UPLOAD_LIMIT}"' in page
    assert "upload.js" in page and "40</strong> tracks" in page


def test_static_files_are_served(client):
    assert b"XMLHttpRequest" in client.get("/static/upload.js").data
    assert b".simbar" in client.get("/static/style.css").data


def test_upload_without_javascript_shows_results_with_players_and_links(client, clip, synth_library):
    url, page = results_page(client, clip.data, "my clip.mp3", k="6", aspect="all")
    result_id = url.rsplit("/", 1)[1]
    assert "my clip.mp3" in page
    assert f'src="/results/{result_id}/audio"' in page
    assert f'src="/results/{result_id}/picture.png"' in page
    assert f'href="/results/{result_id}/segments.csv"' in page
    best, least = page.split('class="least"', 1)
    cards = re.findall(r'<li class="rec" data-track-id="(\d+)"', best)
    assert len(cards) == 6
    source = synth_library.catalog.get_by_path(str(clip.source))
    assert int(cards[0]) == source.id
    for track_id in cards:
        assert f'src="/api/tracks/{track_id}/audio"' in best
        assert f'href="/tracks/{track_id}?aspect=all">more like this' in best
    assert best.count('class="simbar') == 6 and best.count('<dl class="aspects">') == 6
    assert len(re.findall(r'<li class="least-item"', least)) == 6


def test_the_results_page_says_which_track_the_clip_is_from(client, clip, synth_library):
    _, page = results_page(client, clip.data, "my clip.mp3", k="3", aspect="all")
    source = synth_library.catalog.get_by_path(str(clip.source))
    said = re.search(r'<p class="identified" id="identified">This clip is from <a href="/tracks/(\d+)">', page)
    assert said is not None and int(said.group(1)) == source.id  # issue 13


def test_upload_with_javascript_gets_json_with_the_results_url(client, clip):
    reply = client.post(
        "/upload", data={"file": (io.BytesIO(clip.data), "c.mp3")}, headers={"Accept": "application/json"}
    )
    assert reply.status_code == 201
    assert re.fullmatch(r"/results/[A-Za-z0-9_-]{22}", reply.json["results_url"])
    assert client.get(reply.json["results_url"]).status_code == 200


def test_results_serve_the_clip_its_picture_and_segment_csv(client, clip):
    url, _ = results_page(client, clip.data)
    audio = client.get(url + "/audio")
    assert audio.status_code == 200 and audio.content_type == "audio/mpeg" and audio.data == clip.data
    part = client.get(url + "/audio", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data == clip.data[:10]
    picture = client.get(url + "/picture.png")
    assert picture.status_code == 200 and picture.content_type == "image/png" and picture.data.startswith(PNG)
    table = client.get(url + "/segments.csv")
    assert table.status_code == 200 and "attachment" in table.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(table.get_data(as_text=True))))
    assert tuple(rows[0]) == SEGMENT_CSV_FIELDS and len(rows) >= 3


def test_client_file_name_is_escaped_and_not_used_as_a_path(client, clip):
    url, page = results_page(client, clip.data, "../../<img src=x onerror=alert(1)>.mp3")
    assert "<img src=x" not in page
    assert html.escape("<img src=x onerror=alert(1)>.mp3", quote=False) in page
    assert "../../" not in page.split("<main>", 1)[1]


def test_unknown_or_expired_results_are_a_friendly_404(client):
    for url in ("/results/AAAAAAAAAAAAAAAAAAAAAA", "/results/..%2f..%2fetc", "/results/x/audio"):
        reply = client.get(url)
        assert reply.status_code == 404 and reply.content_type.startswith("text/html")
        assert "upload the file again" in reply.get_data(as_text=True) or "nothing at" in reply.get_data(as_text=True)


def test_results_expire_after_their_time(synth_library, web_index, clip):
    app = create_app(
        {"SOUNDALIKE_CATALOG": synth_library.catalog, "SOUNDALIKE_INDEX": web_index, "SOUNDALIKE_RESULT_TTL_S": 0.0,
         "MAX_CONTENT_LENGTH": UPLOAD_LIMIT}
    )
    client = app.test_client()
    reply = upload(client, clip.data)
    assert reply.status_code == 303
    assert client.get(reply.headers["Location"]).status_code == 404
    assert len(shared(app).results) == 0


@pytest.mark.parametrize(
    "data,name,status,words",
    [
        (b"not audio at all\n" * 50, "song.mp3", 415, ("song.mp3: not a recognised audio file",)),
        (b"", "nothing.ogg", 422, ("nothing.ogg: empty (0 bytes)",)),
        (bytes(UPLOAD_LIMIT + 1), "big.wav", 413, ("That file is too large", "2 MB limit")),
    ],
)
def test_upload_errors_are_friendly_html_pages(client, data, name, status, words):
    reply = upload(client, data, name)
    assert reply.status_code == status
    assert reply.content_type.startswith("text/html")
    page = reply.get_data(as_text=True)
    for word in words:
        assert word in page
    assert "Traceback" not in page


def test_upload_errors_are_json_for_the_script(client):
    reply = client.post(
        "/upload", data={"file": (io.BytesIO(b"text" * 100), "a.mp3")}, headers={"Accept": "application/json"}
    )
    assert reply.status_code == 415 and "not a recognised audio file" in reply.json["error"]
    reply = client.post("/upload", data={"k": "3"}, headers={"Accept": "application/json"})
    assert reply.status_code == 400 and "file" in reply.json["error"]


@pytest.mark.parametrize("fields,word", [({"k": "0"}, "k must be"), ({"aspect": "mood"}, "unknown aspect")])
def test_bad_k_or_aspect_on_the_form_is_400(client, clip, fields, word):
    reply = upload(client, clip.data, **fields)
    assert reply.status_code == 400 and word in reply.get_data(as_text=True)


def test_library_page_counts_and_paginates(client):
    first = client.get("/library").get_data(as_text=True)
    assert 'id="track-count">40</strong> tracks' in first and 'id="failure-count">0</strong> failures' in first
    assert first.count("<tr>") - 1 == PER_PAGE and "page 1 of 3" in first
    assert 'href="/library?status=ok&amp;page=2"' in first
    last = client.get("/library?page=3").get_data(as_text=True)
    assert last.count("<tr>") - 1 == 40 - 2 * PER_PAGE and "page 3 of 3" in last


@pytest.mark.parametrize("query,expected", [("pluck", 10), ("backbeat", 8), ("pluck-backbeat", 2), ("zzz", 0)])
def test_library_search_by_path(client, query, expected):
    page = client.get(f"/library?q={query}").get_data(as_text=True)
    rows = re.findall(r'<td class="title"[^>]*><a href="/tracks/\d+">([^<]+)</a></td>', page)
    assert len(rows) == expected
    assert all(query in r for r in rows)


def test_library_search_with_a_control_character_is_400_html(client):
    reply = client.get("/library?q=%00")
    assert reply.status_code == 400 and reply.mimetype == "text/html"
    assert "q must not contain control characters" in reply.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/api//health", "/tracks//1", "/static//style.css"])
def test_a_redirect_never_names_the_host_the_client_sent(server, path):
    conn = HTTPConnection(urlsplit(server).hostname, urlsplit(server).port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": "evil.example"})
        reply = conn.getresponse()
        reply.read()
    finally:
        conn.close()
    location = reply.getheader("Location")
    assert reply.status == 308, (path, reply.status, location)
    assert location.startswith("/") and not location.startswith("//"), location
    assert "evil.example" not in location


def test_library_bad_page_is_400_html(client):
    reply = client.get("/library?page=nope")
    assert reply.status_code == 400 and "page must be a whole number" in reply.get_data(as_text=True)


def test_track_page_shows_metadata_player_picture_and_neighbours(client, synth_library):
    path, spec = synth_library.tracks[9]
    track = synth_library.catalog.get_by_path(str(path))
    page = client.get(f"/tracks/{track.id}?k=5&aspect=timbre").get_data(as_text=True)
    assert path.name in page and str(path) not in page and str(synth_library.music) not in page
    assert f'src="/api/tracks/{track.id}/audio"' in page
    assert f'src="/tracks/{track.id}/picture.png"' in page
    neighbours = page.split('id="neighbours"', 1)[1]
    ids = [int(i) for i in re.findall(r'<li class="rec" data-track-id="(\d+)"', neighbours)]
    assert len(ids) == 5 and track.id not in ids
    instruments = {synth_library.spec_of(synth_library.catalog.get(i).path).instrument for i in ids}
    assert instruments == {spec.instrument}


SAME_PULSE = ("same tempo", "double tempo", "half tempo")  # an octave error is named as such


def _why_lines(page: str) -> list[tuple[int, str]]:
    """(track id, the why line of its card) for every result card, best and least alike."""
    items = re.findall(r'<li class="(?:rec|least-item)" data-track-id="(\d+)">(.*?)</li>', page, flags=re.S)
    out = []
    for track_id, body in items:
        found = re.findall(r'<p class="why">(.*?)</p>', body, flags=re.S)
        out.append((int(track_id), html.unescape(found[0]) if found else ""))
    return out


def test_track_page_says_why_under_each_result_in_words(client, synth_library):
    path, spec = synth_library.tracks[9]
    track = synth_library.catalog.get_by_path(str(path))
    page = client.get(f"/tracks/{track.id}?k=39").get_data(as_text=True)
    lines = _why_lines(page.split('id="neighbours"', 1)[1])
    assert len(lines) > 39 and all(line for _, line in lines)
    for track_id, line in lines:
        other = synth_library.spec_of(synth_library.catalog.get(track_id).path)
        if other.groove == spec.groove:
            assert any(words in line for words in SAME_PULSE), line
        if other.groove == spec.groove and other.key != spec.key:
            assert "different key" in line, line
        if other.instrument == spec.instrument and other.key == spec.key:
            assert "same key" in line, line


def test_results_page_says_why_under_each_result(client, clip, synth_library):
    _, page = results_page(client, clip.data, k="5")
    lines = _why_lines(page)
    assert len(lines) == 10 and all(line for _, line in lines)
    source = synth_library.catalog.get_by_path(str(clip.source))
    first = dict(lines)[source.id]  # the clip's own source: same pulse, and its key when the clip has one
    assert any(words in first for words in SAME_PULSE), first


def test_tracks_without_descriptors_still_get_a_why_line(client, synth_library, monkeypatch):
    from soundalike import recommend
    from soundalike.features.descriptors import NONE

    monkeypatch.setattr(recommend, "describe", lambda vector: NONE)  # as if nothing said tempo or key
    track = synth_library.catalog.get_by_path(str(synth_library.tracks[4][0]))
    page = client.get(f"/tracks/{track.id}?k=5").get_data(as_text=True)
    lines = _why_lines(page.split('id="neighbours"', 1)[1])
    assert len(lines) == 10 and all(line for _, line in lines)
    assert not any("tempo" in line or "key" in line for _, line in lines)


def test_track_picture_is_a_png_cached_per_track(client, app, synth_library):
    track = synth_library.catalog.get_by_path(str(synth_library.tracks[1][0]))
    reply = client.get(f"/tracks/{track.id}/picture.png")
    assert reply.status_code == 200 and reply.data.startswith(PNG)
    assert shared(app).pictures.get((track.id, track.content_hash)) == reply.data


def test_unknown_track_page_is_a_friendly_404(client):
    reply = client.get("/tracks/424242")
    assert reply.status_code == 404 and "no track 424242 in the catalog" in reply.get_data(as_text=True)
    assert client.get("/tracks/abc").status_code == 404


def test_empty_library_pages_say_run_ingest(other_library, clip):
    app = create_app({"SOUNDALIKE_CATALOG": other_library, "SOUNDALIKE_INDEX": None, "MAX_CONTENT_LENGTH": UPLOAD_LIMIT})
    client = app.test_client()
    home = client.get("/").get_data(as_text=True)
    assert "No tracks yet</strong> — run <code>soundalike ingest PATH</code>" in home
    assert 'id="submit" disabled' in home
    reply = upload(client, clip.data)
    assert reply.status_code == 503 and "no tracks yet — run `soundalike ingest" in reply.get_data(as_text=True)
    assert "No tracks yet</strong> — run <code>soundalike ingest PATH</code>" in client.get("/library").get_data(as_text=True)
    failed = client.get("/library?status=failed").get_data(as_text=True)
    assert "broken.mp3" in failed and 'id="failure-count">1</strong> failure</a>' in failed  # not "1 failures"
    track_page = client.get("/tracks/1").get_data(as_text=True)
    assert "failed analysis" in track_page and "picture.png" not in track_page
