"""The JSON API, through the test client and a real waitress server: every endpoint and error."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from openapi_schema_validator import OAS31Validator

from soundalike import audio, synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.features import FEATURE_VERSION
from soundalike.recommend import SEGMENT_CSV_FIELDS, Recommender
from soundalike.web import create_app
from soundalike.web.openapi import document

from .conftest import UPLOAD_LIMIT, Reply, as_the_web_shows

ASPECTS = ("all", "timbre", "spectral", "rhythm", "harmony", "loudness")
DOCUMENT = document()


def check_schema(reply: Reply, name: str) -> Any:
    """The reply's JSON, after checking it against the OpenAPI document's schema ``name``."""
    assert "application/json" in reply.content_type, reply.content_type
    body = reply.json()
    validator = OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]})
    errors = [e.message for e in validator.iter_errors(body)]
    assert not errors, errors
    return body


def check_error(reply: Reply, status: int, *words: str) -> str:
    assert reply.status == status, (reply.status, reply.body[:300])
    body = check_schema(reply, "Error")
    assert body["status"] == status
    for word in words:
        assert word in body["error"], body["error"]
    return str(body["error"])


def track_id_of(synth_library: Any, path: Any) -> int:
    track = synth_library.catalog.get_by_path(str(path))
    assert track is not None
    return int(track.id)


# -- health and documentation ----------------------------------------------------------------


def test_health_reports_library_size_backend_and_feature_version(http, synth_library):
    reply = http.get("/api/health")
    assert reply.status == 200
    body = check_schema(reply, "Health")
    assert body["status"] == "ok"
    assert body["tracks"] == len(synth_library.tracks) == 40
    assert body["index_backend"] == "scann"
    assert body["feature_version"] == FEATURE_VERSION
    assert body["index"]["tracks"] == 40 and body["index"]["up_to_date"] is True


def test_openapi_document_is_served_and_valid(http):
    from openapi_spec_validator import validate

    reply = http.get("/api/openapi.json")
    assert reply.status == 200
    served = reply.json()
    validate(served)
    assert served == DOCUMENT


def test_openapi_paths_are_exactly_the_api_routes(app):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<int:track_id>", "{track_id}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes.add((path, method.lower()))
    documented = {(path, method) for path, ops in DOCUMENT["paths"].items() for method in ops}
    assert routes == documented


# -- POST /api/recommend ---------------------------------------------------------------------


def test_recommend_finds_the_track_a_clip_was_cut_from(http, clip, synth_library):
    reply = http.post("/api/recommend", files={"file": ("excerpt.mp3", clip.data)}, data={"k": "5"})
    assert reply.status == 200, reply.body[:300]
    body = check_schema(reply, "Recommendations")
    assert body["query"] == {"type": "file", "path": "excerpt.mp3", "duration": 8.0, "format": "mp3", "aspect": "all", "k": 5}
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    assert body["results"][0]["track_id"] == track_id_of(synth_library, clip.source)
    assert len(body["least_similar"]) == 5
    assert body["results"][0]["similarity"] > body["least_similar"][0]["similarity"]


def test_recommend_answers_exactly_what_the_cli_json_prints(http, clip, synth_library, web_index):
    reply = http.post("/api/recommend", files={"file": ("excerpt.mp3", clip.data)}, data={"k": "4", "aspect": "rhythm"})
    expected = Recommender(synth_library.catalog, web_index).similar_to_file(
        clip.path, k=4, aspect="rhythm", name="excerpt.mp3"
    )
    assert reply.json() == as_the_web_shows(expected.to_dict(), synth_library.music)


@pytest.mark.parametrize("aspect", ASPECTS)
def test_recommend_accepts_every_aspect(client, clip, aspect):
    reply = client.post(
        "/api/recommend", data={"file": (io.BytesIO(clip.data), "c.mp3"), "k": "3", "aspect": aspect}
    )
    assert reply.status_code == 200
    assert reply.json["query"]["aspect"] == aspect and len(reply.json["results"]) == 3


def test_recommend_recognises_a_file_by_content_not_name(http, synth_library):
    ogg = next(p for p, _ in synth_library.tracks if p.suffix == ".ogg")
    reply = http.post("/api/recommend", files={"file": ("notes.txt", ogg.read_bytes())}, data={"k": "1"})
    assert reply.status == 200
    assert reply.json()["query"]["format"] == "ogg"
    assert reply.json()["results"][0]["track_id"] == track_id_of(synth_library, ogg)


def test_recommend_without_a_file_is_400(http):
    check_error(http.post("/api/recommend", data={"k": "3"}), 400, "file")


def test_recommend_empty_file_is_422(http):
    check_error(http.post("/api/recommend", files={"file": ("empty.mp3", b"")}), 422, "empty.mp3", "empty")


def test_recommend_text_file_is_415_with_the_audio_error(http):
    check_error(
        http.post("/api/recommend", files={"file": ("song.mp3", b"just some text\n" * 200)}),
        415,
        "song.mp3",
        "not a recognised audio file",
    )


def test_recommend_truncated_file_is_422(http, synth_library):
    wav = next(p for p, _ in synth_library.tracks if p.suffix == ".wav").read_bytes()
    check_error(http.post("/api/recommend", files={"file": ("cut.wav", wav[: len(wav) // 3])}), 422, "truncated")


def test_recommend_silent_file_is_422(http):
    out = io.BytesIO()
    sf.write(out, np.zeros(22050 * 3, dtype=np.float32), 22050, format="WAV")
    check_error(http.post("/api/recommend", files={"file": ("quiet.wav", out.getvalue())}), 422, "silent")


def test_recommend_oversize_upload_is_413_json(http):
    big = bytes(UPLOAD_LIMIT + 1024)
    check_error(http.post("/api/recommend", files={"file": ("big.wav", big)}), 413, "2 MB")


@pytest.mark.parametrize("k", ["0", "101", "-3", "abc", "2.5", "1e3", "99999999999999999999"])
def test_recommend_bad_k_is_400(http, clip, k):
    check_error(http.post("/api/recommend", files={"file": ("c.mp3", clip.data)}, data={"k": k}), 400, "k must be")


def test_recommend_unknown_aspect_is_400(http, clip):
    check_error(
        http.post("/api/recommend", files={"file": ("c.mp3", clip.data)}, data={"aspect": "vibes"}),
        400,
        "unknown aspect 'vibes'",
    )


def test_default_upload_limit_is_50_mb(synth_library, web_index):
    app = create_app({"SOUNDALIKE_CATALOG": synth_library.catalog, "SOUNDALIKE_INDEX": web_index})
    assert app.config["MAX_CONTENT_LENGTH"] == 50 * 1024 * 1024
    reply = app.test_client().post(
        "/api/recommend", data={"file": (io.BytesIO(bytes(50 * 1024 * 1024 + 1)), "huge.wav")}
    )
    assert reply.status_code == 413
    assert reply.json == {"error": "the upload is larger than the 50 MB limit", "status": 413}


# -- GET /api/tracks -------------------------------------------------------------------------


def test_tracks_pages_through_the_whole_catalog(http):
    seen: list[int] = []
    for page in (1, 2, 3):
        reply = http.get(f"/api/tracks?page={page}&per_page=15")
        body = check_schema(reply, "TrackPage")
        assert (body["total"], body["pages"], body["page"]) == (40, 3, page)
        seen += [t["id"] for t in body["tracks"]]
    assert len(seen) == 40 and seen == sorted(set(seen))
    assert http.get("/api/tracks?page=4&per_page=15").json()["tracks"] == []


def test_tracks_search_matches_the_path(http, synth_library):
    body = check_schema(http.get("/api/tracks?q=pluck&per_page=200"), "TrackPage")
    expected = sum(1 for _, spec in synth_library.tracks if spec.instrument == "pluck")
    assert body["total"] == len(body["tracks"]) == expected == 10
    assert all("pluck" in t["path"] for t in body["tracks"])


def test_tracks_search_with_no_match_is_empty(http):
    body = http.get("/api/tracks?q=%25_no-such-thing_%25").json()
    assert (body["total"], body["tracks"]) == (0, [])


@pytest.mark.parametrize("q", ["%00", "pluck%00", "%00pluck", "plu%07ck", "pluck%1B"])
def test_tracks_search_with_a_control_character_is_400(http, q):
    check_error(http.get(f"/api/tracks?q={q}"), 400, "control characters")


@pytest.mark.parametrize(
    "query", ["page=0", "page=x", "page=99999999999999", "per_page=0", "per_page=201", "status=weird"]
)
def test_tracks_bad_paging_is_400(http, query):
    check_error(http.get(f"/api/tracks?{query}"), 400)


# -- GET /api/tracks/<id> --------------------------------------------------------------------


def test_track_by_id(http, synth_library):
    path, spec = synth_library.tracks[3]
    track_id = track_id_of(synth_library, path)
    body = check_schema(http.get(f"/api/tracks/{track_id}"), "Track")
    assert body["id"] == track_id and body["path"] == path.name and body["status"] == "ok"
    assert body["file_name"] == path.name and body["duration"] == pytest.approx(20.0, abs=0.1)
    assert body["audio_url"] == f"/api/tracks/{track_id}/audio"


@pytest.mark.parametrize(
    "path",
    [
        "/api/tracks/99999",
        "/api/tracks/0",
        "/api/tracks/99999999999999999999999",
        "/api/tracks/-1",
        "/api/tracks/abc",
        "/api/tracks/1.5",
        "/api/tracks/1%20",
        "/api/tracks/99999/similar",
        "/api/tracks/99999/audio",
        "/api/tracks/99999/segments.csv",
        "/api/tracks/x/audio",
        "/api/nothing-here",
    ],
)
def test_unknown_or_malformed_ids_are_404_json(http, path):
    check_error(http.get(path), 404)


# -- GET /api/tracks/<id>/similar ------------------------------------------------------------


def test_similar_is_what_the_cli_prints_and_never_the_track_itself(http, synth_library, web_index):
    track_id = track_id_of(synth_library, synth_library.tracks[7][0])
    reply = http.get(f"/api/tracks/{track_id}/similar?k=6&aspect=timbre")
    body = check_schema(reply, "Recommendations")
    expected = Recommender(synth_library.catalog, web_index).similar_to_track(track_id, k=6, aspect="timbre")
    assert body == as_the_web_shows(expected.to_dict(), synth_library.music)
    assert len(body["results"]) == 6
    assert track_id not in [r["track_id"] for r in body["results"]]


def test_similar_says_why_in_words_and_in_parts(http, synth_library):
    path, spec = synth_library.tracks[2]  # organ, backbeat (96 BPM), C major
    body = check_schema(http.get(f"/api/tracks/{track_id_of(synth_library, path)}/similar?k=39"), "Recommendations")
    checked = 0
    for r in body["results"]:
        other = synth_library.spec_of(synth_library.catalog.get(r["track_id"]).path)
        parts = r["why_parts"]
        assert r["why"] == " · ".join(parts["phrases"]) and parts["key"][0] == "C major"
        if other.groove == spec.groove and other.key != spec.key:
            assert parts["tempo"] == "same" and parts["key_relation"] == "different"
            assert "same tempo (~96 BPM)" in r["why"] and "different key (C major → A major)" in r["why"]
            checked += 1
    assert checked == 4


def test_similar_by_rhythm_finds_the_same_groove(http, synth_library):
    path, spec = synth_library.tracks[0]
    body = http.get(f"/api/tracks/{track_id_of(synth_library, path)}/similar?k=7&aspect=rhythm").json()
    grooves = [synth_library.spec_of(str(synth_library.music / r["path"])).groove for r in body["results"]]
    assert grooves.count(spec.groove) >= 6, grooves


@pytest.mark.parametrize("query,word", [("k=0", "k must be"), ("k=1000", "k must be"), ("k=", None), ("aspect=mood", "unknown aspect")])
def test_similar_validates_k_and_aspect(http, synth_library, query, word):
    track_id = track_id_of(synth_library, synth_library.tracks[0][0])
    reply = http.get(f"/api/tracks/{track_id}/similar?{query}")
    if word is None:  # an empty k means the default
        assert reply.status == 200 and reply.json()["query"]["k"] == 10
    else:
        check_error(reply, 400, word)


# -- GET /api/tracks/<id>/audio --------------------------------------------------------------

MIMETYPES = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".flac": "audio/flac", ".wav": "audio/wav"}


@pytest.mark.parametrize("suffix", sorted(MIMETYPES))
def test_audio_streams_the_catalog_file_with_its_mimetype(http, synth_library, suffix):
    path = next(p for p, _ in synth_library.tracks if p.suffix == suffix)
    reply = http.get(f"/api/tracks/{track_id_of(synth_library, path)}/audio")
    assert reply.status == 200
    assert reply.content_type == MIMETYPES[suffix]
    assert reply.body == path.read_bytes()
    assert reply.headers["Accept-Ranges"] == "bytes"


def test_audio_range_request_returns_206_with_those_bytes(http, synth_library):
    path = synth_library.tracks[2][0]
    data = path.read_bytes()
    url = f"/api/tracks/{track_id_of(synth_library, path)}/audio"
    reply = http.get(url, headers={"Range": "bytes=100-199"})
    assert reply.status == 206
    assert reply.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert reply.body == data[100:200]
    tail = http.get(url, headers={"Range": "bytes=-10"})
    assert tail.status == 206 and tail.body == data[-10:]
    open_ended = http.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_ended.status == 206 and open_ended.body == data[-5:]


def test_audio_range_outside_the_file_is_416(http, synth_library):
    path = synth_library.tracks[2][0]
    size = path.stat().st_size
    reply = http.get(f"/api/tracks/{track_id_of(synth_library, path)}/audio", headers={"Range": f"bytes={size + 10}-"})
    check_error(reply, 416, "outside the file")
    assert reply.headers["Content-Range"] == f"bytes */{size}"


@pytest.mark.parametrize(
    "path",
    [
        "/api/tracks/..%2f..%2f..%2f..%2fetc%2fpasswd/audio",
        "/api/tracks/1/..%2f..%2f..%2fetc%2fpasswd",
        "/api/tracks/%2e%2e%2f%2e%2e%2fetc%2fpasswd/audio",
        "/api/tracks/../../../etc/passwd/audio",
        "/api/tracks/1/audio/../../../../etc/passwd",
        "/api/tracks/%2Fetc%2Fpasswd/audio",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/../../../../../../etc/passwd",
    ],
)
def test_path_traversal_is_refused(http, path):
    reply = http.raw_get(path)
    assert reply.status in (400, 404), reply.status
    assert b"root:" not in reply.body


def test_audio_of_a_track_whose_file_vanished_is_404(tmp_path, synth_library, web_index):
    # A catalog of its own, so the shared synthetic library is untouched.
    source = synth_library.tracks[0][0]
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
    from soundalike.ingest import SerialRunner, ingest

    ingest([tmp_path], catalog, runner=SerialRunner())
    copy.unlink()
    app = create_app({"SOUNDALIKE_CATALOG": catalog, "SOUNDALIKE_INDEX": None, "MAX_CONTENT_LENGTH": UPLOAD_LIMIT})
    reply = app.test_client().get("/api/tracks/1/audio")
    assert reply.status_code == 404 and "cannot be read" in reply.json["error"]


# -- GET /api/tracks/<id>/segments.csv -------------------------------------------------------


def test_segments_csv_lists_matching_windows_of_other_tracks(http, synth_library):
    track_id = track_id_of(synth_library, synth_library.tracks[5][0])
    reply = http.get(f"/api/tracks/{track_id}/segments.csv")
    assert reply.status == 200 and reply.content_type.startswith("text/csv")
    assert "attachment" in reply.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.body.decode())))
    assert tuple(rows[0]) == SEGMENT_CSV_FIELDS
    assert len(rows) >= 3
    assert all(int(r["track_id"]) != track_id for r in rows)
    assert all(0.0 <= float(r["similarity"]) <= 1.0 for r in rows)


# -- an empty library ------------------------------------------------------------------------


def test_empty_library_health_and_queries(other_library, clip):
    app = create_app({"SOUNDALIKE_CATALOG": other_library, "SOUNDALIKE_INDEX": None, "MAX_CONTENT_LENGTH": UPLOAD_LIMIT})
    client = app.test_client()
    health = client.get("/api/health")
    assert health.status_code == 200
    assert (health.json["status"], health.json["tracks"], health.json["failures"], health.json["index"]) == ("empty", 0, 1, None)
    reply = client.post("/api/recommend", data={"file": (io.BytesIO(clip.data), "c.mp3")})
    assert reply.status_code == 503
    assert reply.json["error"].startswith("no tracks yet — run `soundalike ingest")


def test_a_failed_track_is_listed_with_its_reason_and_has_no_neighbours(other_library):
    app = create_app({"SOUNDALIKE_CATALOG": other_library, "SOUNDALIKE_INDEX": None, "MAX_CONTENT_LENGTH": UPLOAD_LIMIT})
    client = app.test_client()
    listed = client.get("/api/tracks?status=failed").json
    assert listed["total"] == 1
    failed = listed["tracks"][0]
    assert failed["status"] == "failed" and failed["error"] and failed["error_reason"]
    reply = client.get(f"/api/tracks/{failed['id']}/similar")
    assert reply.status_code == 404 and "failed analysis" in reply.json["error"]


def test_synthetic_clip_not_in_the_library_still_gets_recommendations(http, tmp_path):
    y = synth.render(synth.TrackSpec("pluck", "backbeat", "E", duration=6.0, seed=4242))
    out = audio.encode(tmp_path / "outside.flac", y, sample_rate=22050)
    body = http.post("/api/recommend", files={"file": ("outside.flac", out.read_bytes())}, data={"k": "3"}).json()
    assert body["query"]["format"] == "flac" and len(body["results"]) == 3


def test_recommend_says_which_track_a_clip_is_from_and_where(http, clip, synth_library):
    reply = http.post("/api/recommend", files={"file": ("excerpt.mp3", clip.data)}, data={"k": "3"})
    body = check_schema(reply, "Recommendations")
    ident = body["identified"]  # issue 13: exact clip identification
    assert ident["track_id"] == track_id_of(synth_library, clip.source) == body["results"][0]["track_id"]
    assert abs(ident["at_s"] - 6.0) <= 1.5 and ident["says"].startswith("this clip is from ")
