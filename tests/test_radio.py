"""Radio and path playlists (issue 14) on real libraries: synthesised tracks and ffmpeg-made copies."""

from __future__ import annotations

import os

import numpy as np
import pytest

from soundalike.radio import (
    RadioError,
    Spread,
    path,
    query_weights,
    radio,
    seed_from_file,
    seed_from_track,
)


def _seed(index, catalog, path_or_id):
    track = catalog.get(path_or_id) if isinstance(path_or_id, int) else catalog.get_by_path(str(path_or_id))
    return seed_from_track(index, track)


def _ids(playlist):
    return [e.track.id for e in playlist.entries]


@pytest.fixture(scope="module")
def exact(synth_library, indexes):
    return indexes["exact"], synth_library.catalog


def test_radio_has_n_tracks_none_of_them_a_seed_and_none_twice(exact):
    index, catalog = exact
    seeds = [_seed(index, catalog, int(index.ids[3])), _seed(index, catalog, int(index.ids[17]))]
    playlist = radio(index, catalog.get, seeds, n=30)
    ids = _ids(playlist)
    assert len(ids) == 30
    assert len(set(ids)) == 30
    assert not set(ids) & {int(index.ids[3]), int(index.ids[17])}


def test_radio_plays_every_other_track_once_when_asked_for_more_than_the_library_holds(exact):
    index, catalog = exact
    seed = _seed(index, catalog, int(index.ids[0]))
    playlist = radio(index, catalog.get, [seed], n=500)
    assert sorted(_ids(playlist)) == sorted(int(i) for i in index.ids[1:])


def test_radio_with_no_drift_is_the_seeds_nearest_tracks_in_order(exact, recommender):
    index, catalog = exact
    seed = _seed(index, catalog, int(index.ids[5]))
    playlist = radio(index, catalog.get, [seed], n=10, drift=0.0)
    nearest = recommender.similar_to_track(int(index.ids[5]), k=10)
    assert _ids(playlist) == [r.track.id for r in nearest.results]
    assert [e.to_seeds for e in playlist.entries] == pytest.approx([r.similarity for r in nearest.results], abs=1e-5)


def test_radio_first_track_with_full_drift_is_the_last_seeds_nearest(exact, recommender):
    index, catalog = exact
    seeds = [_seed(index, catalog, int(index.ids[2])), _seed(index, catalog, int(index.ids[30]))]
    playlist = radio(index, catalog.get, seeds, n=3, drift=1.0)
    nearest = recommender.similar_to_track(int(index.ids[30]), k=3).results
    best = next(r.track.id for r in nearest if r.track.id != int(index.ids[2]))
    assert playlist.entries[0].track.id == best


def test_radio_refuses_a_drift_outside_0_to_1_and_no_seeds(exact):
    index, catalog = exact
    seed = _seed(index, catalog, int(index.ids[0]))
    with pytest.raises(RadioError, match="drift"):
        radio(index, catalog.get, [seed], drift=1.5)
    with pytest.raises(RadioError, match="at least one seed"):
        radio(index, catalog.get, [], n=5)


def test_query_weights_make_the_dot_product_the_weighted_mean_of_aspect_cosines(exact):
    index, _ = exact
    weights = {"rhythm": 3.0, "timbre": 1.0}
    factors = query_weights(index.track_norm, "all", weights)
    q, x = np.asarray(index.vectors[0]), np.asarray(index.vectors[1:])
    cos = index.track_norm.aspect_similarities(q, x)
    expected = (3.0 * cos["rhythm"] + 1.0 * cos["timbre"]) / 4.0
    np.testing.assert_allclose(x @ (q * factors), expected, atol=1e-5)


def test_query_weights_for_one_aspect_score_that_family_alone(exact):
    index, _ = exact
    factors = query_weights(index.track_norm, "harmony")
    q, x = np.asarray(index.vectors[4]), np.asarray(index.vectors)
    np.testing.assert_allclose(x @ (q * factors), index.track_norm.aspect_similarities(q, x)["harmony"], atol=1e-5)


def test_rhythm_radio_keeps_the_seeds_groove_first(exact, synth_library):
    index, catalog = exact
    seed_track = catalog.get(int(index.ids[7]))
    groove = synth_library.spec_of(seed_track.path).groove
    playlist = radio(index, catalog.get, [seed_from_track(index, seed_track)], n=7, drift=0.0, aspect="rhythm")
    # 8 tracks share each groove (4 instruments × 2 keys): the 7 others come first
    assert {synth_library.spec_of(e.track.path).groove for e in playlist.entries} == {groove}


def test_unknown_aspect_weights_are_refused(exact):
    index, _ = exact
    with pytest.raises(RadioError, match="unknown aspects"):
        query_weights(index.track_norm, "all", {"melody": 1.0})
    with pytest.raises(RadioError, match="no family"):
        query_weights(index.track_norm, "all", {"rhythm": 0.0})


# -- copies of the seed ------------------------------------------------------------------------


def test_radio_never_plays_a_byte_or_transcoded_copy_of_a_seed(copies_library):
    lib = copies_library
    seeds = [_seed(lib.index, lib.catalog, lib.originals[0]), _seed(lib.index, lib.catalog, lib.originals[1])]
    playlist = radio(lib.index, lib.catalog.get, seeds, n=100)
    played = {e.track.path for e in playlist.entries}
    assert not played & (lib.groups[0] | lib.groups[1])
    # every other recording is played (once): nothing else was held back
    def recording(p: str) -> str:
        return next((min(g) for g in lib.groups if p in g), p)

    everything = {recording(t.path) for t in lib.catalog.tracks()}
    assert {recording(p) for p in played} == everything - {min(lib.groups[0]), min(lib.groups[1])}


def test_radio_plays_one_recording_once_even_when_it_is_in_the_library_twice(copies_library):
    lib = copies_library
    seed = _seed(lib.index, lib.catalog, lib.originals[7])
    played = [e.track.path for e in radio(lib.index, lib.catalog.get, [seed], n=100).entries]
    for group in lib.groups:
        assert len(group & set(played)) == 1, group


def test_radio_never_plays_an_excluded_track_nor_a_copy_of_it(copies_library):
    lib = copies_library
    seed = _seed(lib.index, lib.catalog, lib.originals[7])
    heard = [lib.catalog.get_by_path(str(lib.originals[i])).id for i in (1, 2)]  # both have transcoded copies
    playlist = radio(lib.index, lib.catalog.get, [seed], n=100, exclude=[*heard, 987654])  # an unknown id is ignored
    played = {e.track.path for e in playlist.entries}
    assert not played & (lib.groups[1] | lib.groups[2])
    assert played

    def recording(p: str) -> str:
        return next((min(g) for g in lib.groups if p in g), p)

    every = {recording(e.track.path) for e in radio(lib.index, lib.catalog.get, [seed], n=100).entries}
    # every other recording is still played: only the excluded ones are held back
    assert {recording(p) for p in played} == every - {min(lib.groups[1]), min(lib.groups[2])}


def test_radio_from_a_file_outside_the_library_never_plays_that_recording(copies_library, tmp_path, transcoder):
    lib = copies_library
    outside = transcoder(lib.originals[2], tmp_path / "same-as-two.m4a", bitrate="96k")  # AAC through PyAV
    clip = seed_from_file(lib.index, outside)
    playlist = radio(lib.index, lib.catalog.get, [clip], n=100)
    assert not {e.track.path for e in playlist.entries} & lib.groups[2]
    assert playlist.seeds[0].to_dict() == {"type": "file", "path": str(outside)}


# -- spacing -----------------------------------------------------------------------------------


def test_spread_by_artist_never_puts_one_artist_twice_in_a_row(copies_library):
    lib = copies_library
    seed = _seed(lib.index, lib.catalog, lib.originals[0])
    plain = radio(lib.index, lib.catalog.get, [seed], n=8)
    assert any(a.track.artist == b.track.artist for a, b in zip(plain.entries, plain.entries[1:], strict=False))
    # 6 tracks: after them only one artist's tracks are left, and the rule is relaxed (see below)
    spaced = radio(lib.index, lib.catalog.get, [seed], n=6, spread=Spread("artist", 1))
    artists = [e.track.artist for e in spaced.entries]
    # untagged tracks (the re-encoded copies) are never held back; tagged ones never follow their artist
    assert all(a is None or a != b for a, b in zip(artists, artists[1:], strict=False)), " ".join(f"{e.track.artist}:{e.relaxed}" for e in spaced.entries)
    assert not any(e.relaxed for e in spaced.entries)


def test_spread_by_folder_keeps_n_places_between_tracks_of_one_folder(copies_library):
    lib = copies_library
    seed = _seed(lib.index, lib.catalog, lib.originals[6])
    spaced = radio(lib.index, lib.catalog.get, [seed], n=6, spread=Spread("folder", 2))
    folders = [os.path.dirname(e.track.path) for e in spaced.entries]
    for i in range(len(folders)):
        assert folders[i] not in folders[max(0, i - 2) : i], folders


def test_spread_that_cannot_be_kept_is_relaxed_and_marked(copies_library):
    lib = copies_library
    seed = _seed(lib.index, lib.catalog, lib.originals[0])
    # 3 folders (two artists and the copies): a 5-place rule cannot hold for 10 tracks
    playlist = radio(lib.index, lib.catalog.get, [seed], n=10, spread=Spread("folder", 5))
    assert len(playlist.entries) == 10
    assert any(e.relaxed for e in playlist.entries)


# -- path --------------------------------------------------------------------------------------


def test_path_starts_at_from_and_ends_at_to_with_n_tracks(exact):
    index, catalog = exact
    a, b = _seed(index, catalog, int(index.ids[0])), _seed(index, catalog, int(index.ids[39]))
    playlist = path(index, catalog.get, a, b, n=8)
    ids = _ids(playlist)
    assert len(ids) == 8 and len(set(ids)) == 8
    assert ids[0] == int(index.ids[0]) and ids[-1] == int(index.ids[39])


def test_path_moves_towards_its_end(exact):
    index, catalog = exact
    a, b = _seed(index, catalog, int(index.ids[0])), _seed(index, catalog, int(index.ids[39]))
    playlist = path(index, catalog.get, a, b, n=6)
    to_end = [float(np.asarray(index.vectors[index.row_of(t.id)]) @ b.vector) for t in playlist.tracks]
    to_start = [float(np.asarray(index.vectors[index.row_of(t.id)]) @ a.vector) for t in playlist.tracks]
    assert to_end[-1] == pytest.approx(1.0, abs=1e-5) and to_start[0] == pytest.approx(1.0, abs=1e-5)
    assert np.mean(to_end[3:]) > np.mean(to_end[:3])
    assert np.mean(to_start[:3]) > np.mean(to_start[3:])


def test_path_between_one_track_and_itself_is_refused(exact):
    index, catalog = exact
    a = _seed(index, catalog, int(index.ids[0]))
    with pytest.raises(RadioError, match="two different tracks"):
        path(index, catalog.get, a, a, n=5)
