"""``GET /api/radio`` and ``POST /api/radio`` (issue 14), through the test client and a real waitress server."""

from __future__ import annotations

import pytest

from soundalike.radio import make_radio, radio, seed_from_file
from soundalike.recommend import Recommender

from .conftest import as_the_web_shows
from .test_web_api import check_error, check_schema, track_id_of


def _ids(synth_library, *positions):
    return [track_id_of(synth_library, synth_library.tracks[i][0]) for i in positions]


def test_radio_from_seeds_has_n_tracks_and_never_a_seed(http, synth_library):
    seeds = _ids(synth_library, 3, 21)
    reply = http.get(f"/api/radio?seed={seeds[0]}&seed={seeds[1]}&n=12")
    assert reply.status == 200, reply.body[:300]
    body = check_schema(reply, "Playlist")
    ids = [t["track_id"] for t in body["tracks"]]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert not set(ids) & set(seeds)
    assert [s["track_id"] for s in body["seeds"]] == seeds


def test_radio_answers_exactly_what_the_cli_json_prints(http, synth_library, web_index):
    seed = _ids(synth_library, 9)[0]
    reply = http.get(f"/api/radio?seed={seed}&n=8&drift=0.3&aspect=timbre&spread=folder:1&weights=timbre:2")
    rec = Recommender(synth_library.catalog, web_index)
    from soundalike.radio import Spread

    expected = make_radio(
        web_index, synth_library.catalog, seeds=[seed], resolve=rec.resolve,
        n=8, drift=0.3, aspect="timbre", weights={"timbre": 2.0}, spread=Spread("folder", 1),
    )  # fmt: skip
    assert reply.json() == as_the_web_shows(expected.to_dict(), synth_library.music)


def test_radio_from_an_uploaded_clip(http, clip, synth_library, web_index):
    reply = http.post("/api/radio", files={"file": ("excerpt.mp3", clip.data)}, data={"n": "6"})
    assert reply.status == 200, reply.body[:300]
    body = check_schema(reply, "Playlist")
    assert body["seeds"] == [{"type": "file", "path": "excerpt.mp3"}]
    assert len(body["tracks"]) == 6
    expected = radio(web_index, synth_library.catalog.get, [seed_from_file(web_index, clip.path, name="excerpt.mp3")], n=6)
    assert body == as_the_web_shows(expected.to_dict(), synth_library.music)


def test_radio_upload_with_catalog_seeds_too(http, clip, synth_library):
    seed = _ids(synth_library, 30)[0]
    reply = http.post("/api/radio", files={"file": ("excerpt.mp3", clip.data)}, data={"n": "5", "seed": str(seed)})
    body = check_schema(reply, "Playlist")
    assert [s["type"] for s in body["seeds"]] == ["track", "file"]
    assert seed not in [t["track_id"] for t in body["tracks"]]


def test_radio_without_a_seed_is_400(http):
    check_error(http.get("/api/radio?n=5"), 400, "at least one seed")


def test_radio_upload_without_a_file_is_400(http):
    check_error(http.post("/api/radio", data={"n": "5"}), 400, "no audio file")


def test_radio_upload_of_text_is_415(http):
    check_error(http.post("/api/radio", files={"file": ("notes.mp3", b"not audio at all\n" * 200)}), 415)


def test_radio_with_an_unknown_seed_is_404(http):
    check_error(http.get("/api/radio?seed=987654"), 404, "987654")


@pytest.mark.parametrize(
    "query,word",
    [
        ("n=0", "n must be"),
        ("n=501", "n must be"),
        ("drift=1.5", "drift must be"),
        ("drift=abc", "drift must be"),
        ("spread=genre:2", "spread must be"),
        ("spread=artist:0", "spread must be"),
        ("weights=melody:1", "weights must be"),
        ("weights=timbre:-1", "weights must be"),
        ("aspect=mood", "unknown aspect"),
        ("seed=abc", "seed must be"),
    ],
)
def test_radio_validates_its_parameters(http, synth_library, query, word):
    seed = _ids(synth_library, 0)[0]
    check_error(http.get(f"/api/radio?seed={seed}&{query}"), 400, word)
