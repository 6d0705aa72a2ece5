"""Recommendations on synthesised music whose instrument, groove and key are known."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from soundalike import audio, synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.errors import IndexMismatchError, TrackNotFoundError
from soundalike.index import bundle
from soundalike.ingest import SerialRunner, ingest
from soundalike.recommend import SEGMENT_CSV_FIELDS, Recommender, write_segment_csv


def _precision(library, recommender, *, aspect: str, factor: str, k: int) -> float:
    hits = []
    for track in library.catalog.tracks():
        spec = library.spec_of(track.path)
        result = recommender.similar_to_track(track.id, k=k, aspect=aspect)
        hits += [getattr(library.spec_of(r.track.path), factor) == getattr(spec, factor) for r in result.results]
    return float(np.mean(hits))


def test_rhythm_aspect_finds_the_same_groove_across_instruments(synth_library, recommender):
    # Each groove has 8 tracks (4 instruments × 2 keys): the 7 others should come first.
    p = _precision(synth_library, recommender, aspect="rhythm", factor="groove", k=7)
    assert p >= 0.95, f"rhythm P@7 for the same groove = {p:.3f}"


def test_rhythm_neighbours_include_other_instruments(synth_library, recommender):
    track = synth_library.catalog.tracks()[0]
    spec = synth_library.spec_of(track.path)
    result = recommender.similar_to_track(track.id, k=7, aspect="rhythm")
    instruments = {synth_library.spec_of(r.track.path).instrument for r in result.results}
    assert instruments - {spec.instrument}, "rhythm neighbours should span instruments"


def test_timbre_aspect_finds_the_same_instrument_across_grooves(synth_library, recommender):
    # Each instrument has 10 tracks (5 grooves × 2 keys).
    p = _precision(synth_library, recommender, aspect="timbre", factor="instrument", k=9)
    assert p >= 0.95, f"timbre P@9 for the same instrument = {p:.3f}"


def test_harmony_aspect_finds_the_same_key(synth_library, recommender):
    p = _precision(synth_library, recommender, aspect="harmony", factor="key", k=10)
    assert p >= 0.9, f"harmony P@10 for the same key = {p:.3f}"


def test_noisy_mp3_excerpt_finds_its_source_first(synth_library, recommender, tmp_path, rng):
    ranks = []
    for path, spec in synth_library.tracks:
        y = synth.render(spec)
        clip = audio.excerpt(y, sample_rate=22050, start_s=0.4 * synth_library_duration(spec), duration_s=10.0)
        clip = audio.add_noise(clip, snr_db=30.0, rng=rng)
        out = audio.encode(tmp_path / f"{spec.name}-excerpt.mp3", clip, sample_rate=22050, bitrate="96k")
        result = recommender.similar_to_file(out, k=10)
        paths = [r.track.path for r in result.results]
        ranks.append(paths.index(str(path)) + 1 if str(path) in paths else 99)
    top1 = np.mean(np.array(ranks) == 1)
    assert top1 == 1.0, f"excerpt top-1 = {top1:.3f}; ranks {ranks}"


def synth_library_duration(spec: synth.TrackSpec) -> float:
    return spec.duration


def test_similar_never_returns_the_track_or_its_byte_identical_copies(synth_library, tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    originals = [p for p, _ in synth_library.tracks[:6]]
    for p in originals:
        shutil.copy(p, music / p.name)
    shutil.copy(originals[0], music / f"copy-of-{originals[0].name}")
    catalog = SQLiteCatalog(tmp_path / "lib" / "catalog.sqlite")
    summary = ingest([music], catalog, runner=SerialRunner())
    assert summary.analysed + summary.reused == 7
    index = bundle.build(tmp_path / "lib", catalog, backend="exact")
    rec = Recommender(catalog, index)
    source = catalog.get_by_path(str(music / originals[0].name))
    result = rec.similar_to_track(source.id, k=10)
    returned = {r.track.content_hash for r in result.results}
    assert source.content_hash not in returned
    assert len(result.results) == 5


def test_track_can_be_named_by_path_or_id(synth_library, recommender):
    track = synth_library.catalog.tracks()[3]
    by_id = recommender.similar_to_track(str(track.id), k=5)
    by_path = recommender.similar_to_track(track.path, k=5)
    assert [r.track.id for r in by_id.results] == [r.track.id for r in by_path.results]


def test_unknown_track_is_a_clear_error(recommender):
    with pytest.raises(TrackNotFoundError, match="no track 'nope.mp3'"):
        recommender.similar_to_track("nope.mp3")


def test_json_has_exactly_the_documented_shape(synth_library, recommender):
    result = recommender.similar_to_track(synth_library.catalog.tracks()[0].id, k=3).to_dict()
    assert set(result) == {"query", "results", "least_similar"}
    keys = {"rank", "track_id", "path", "title", "artist", "similarity", "distance", "aspects", "windows", "why", "why_parts"}
    for item in result["results"] + result["least_similar"]:
        assert set(item) == keys
        assert 0.0 <= item["similarity"] <= 1.0
        assert set(item["aspects"]) == {"timbre", "spectral", "rhythm", "harmony", "loudness", "style"}
    assert [r["rank"] for r in result["results"]] == [1, 2, 3]


def test_similarity_blends_the_mean_of_aspects_with_the_windows_and_matches_distance(synth_library, recommender):
    from soundalike.windows import WINDOW_WEIGHT

    result = recommender.similar_to_track(synth_library.catalog.tracks()[5].id, k=5)
    for r in result.results:
        assert r.windows is not None  # issue 13: tracks are compared by their windows as well
        expected = (1 - WINDOW_WEIGHT) * np.mean(list(r.aspects.values())) + WINDOW_WEIGHT * r.windows
        assert r.similarity == pytest.approx(expected, abs=1e-5)
        c = 2 * r.similarity - 1
        assert r.distance == pytest.approx(np.sqrt(2 - 2 * c), abs=1e-5)


def test_results_are_ordered_and_least_similar_are_the_far_end(synth_library, recommender):
    result = recommender.similar_to_track(synth_library.catalog.tracks()[7].id, k=5)
    sims = [r.similarity for r in result.results]
    least = [r.similarity for r in result.least_similar]
    assert sims == sorted(sims, reverse=True)
    assert least == sorted(least)
    assert max(least) < min(sims)


def test_segment_matches_point_at_the_excerpts_place_in_its_source(synth_library, recommender, tmp_path):
    path, spec = synth_library.tracks[11]
    y = synth.render(spec)
    clip = audio.excerpt(y, sample_rate=22050, start_s=5.0, duration_s=10.0)
    out = audio.encode(tmp_path / "clip.mp3", clip, sample_rate=22050)
    result = recommender.similar_to_file(out, k=5, segments=True)
    buffer = io.StringIO()
    n = write_segment_csv(result.segment_matches, buffer)
    lines = buffer.getvalue().splitlines()
    assert lines[0].split(",") == list(SEGMENT_CSV_FIELDS)
    assert n == len(lines) - 1 > 0
    best = {}
    for m in result.segment_matches:
        if m.query_start not in best or m.similarity > best[m.query_start].similarity:
            best[m.query_start] = m
    for q_start, m in best.items():
        assert m.track.path == str(path)
        assert abs(m.track_start - (5.0 + q_start)) <= 1.3


def test_every_backend_agrees_with_exact_search(synth_library, indexes):
    exact = Recommender(synth_library.catalog, indexes["exact"])
    for backend in ("scann", "annoy"):
        approx = Recommender(synth_library.catalog, indexes[backend])
        recalls = []
        for track in synth_library.catalog.tracks():
            want = {r.track.id for r in exact.similar_to_track(track.id, k=10).results}
            got = {r.track.id for r in approx.similar_to_track(track.id, k=10).results}
            recalls.append(len(want & got) / len(want))
        assert np.mean(recalls) >= 0.95, f"{backend} recall@10 = {np.mean(recalls):.3f}"


def test_saved_index_loads_back_with_identical_results(synth_library, indexes):
    for backend, index in indexes.items():
        reloaded = bundle.load(index.directory.parent.parent, catalog=synth_library.catalog, backend=backend)
        track = synth_library.catalog.tracks()[2]
        a = Recommender(synth_library.catalog, index).similar_to_track(track.id, k=8)
        b = Recommender(synth_library.catalog, reloaded).similar_to_track(track.id, k=8)
        assert [r.track.id for r in a.results] == [r.track.id for r in b.results]


def test_an_index_for_another_catalog_revision_is_refused(synth_library, tmp_path):
    music = tmp_path / "m"
    music.mkdir()
    for p, _ in synth_library.tracks[:3]:
        shutil.copy(p, music / p.name)
    catalog = SQLiteCatalog(tmp_path / "lib" / "catalog.sqlite")
    ingest([music], catalog, runner=SerialRunner())
    bundle.build(tmp_path / "lib", catalog, backend="exact")
    p, _ = synth_library.tracks[3]
    shutil.copy(p, music / p.name)
    ingest([music], catalog, runner=SerialRunner())
    with pytest.raises(IndexMismatchError, match=r"catalog revision mismatch: expected \d+, found \d+"):
        bundle.load(tmp_path / "lib", catalog=catalog)
    index, rebuilt = bundle.ensure(tmp_path / "lib", catalog, backend="exact")
    assert rebuilt and index.count == 4


def test_a_file_query_searches_one_window_a_second_and_every_window_on_the_library_hop():
    from soundalike.recommend import search_windows

    # a 10-s clip: 11 windows every 0.5 s; the library's hop (2.5 s) is every 5th
    np.testing.assert_array_equal(search_windows(11, 5), [0, 2, 4, 5, 6, 8, 10])
    assert search_windows(0, 5).size == 0
    np.testing.assert_array_equal(search_windows(1, 5), [0])
    gaps = np.diff(search_windows(351, 5)) * 0.5  # a 3-minute upload
    assert gaps.max() <= 1.0
