"""The catalog contract: every backend behaves the same (run against each backend).

Backends: ``sqlite``; ``mongomock``, MongoDB's API served in-process by the :mod:`mongomock`
library — a **stand-in** for a MongoDB server, which cannot be installed on the CI machines; and
``mongodb``, a real server, whenever ``SOUNDALIKE_TEST_MONGODB_URI`` is set (for example
``mongodb://localhost:27017``). Each test then gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from mongo_stand_in import StandInCatalog
from soundalike.catalog import FAILED, OK, Catalog, TrackRecord

DIM, SEG_DIM = 7, 3

REAL_MONGODB_URI = os.environ.get("SOUNDALIKE_TEST_MONGODB_URI")
BACKENDS = ["sqlite", "mongomock"] + (["mongodb"] if REAL_MONGODB_URI else [])


@pytest.fixture(params=BACKENDS)
def catalog(request, tmp_path) -> Catalog:
    database = f"soundalike_test_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        from soundalike.catalog.sqlite import SQLiteCatalog

        cat: Catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
    elif request.param == "mongomock":
        from soundalike.catalog.mongo import MongoCatalog

        cat = StandInCatalog(f"mongomock://contract/{database}")  # the in-process stand-in
    else:
        from soundalike.catalog.mongo import MongoCatalog

        cat = MongoCatalog(REAL_MONGODB_URI, database=database)
    yield cat
    if request.param != "sqlite":
        cat._client.drop_database(database)  # type: ignore[attr-defined]
    cat.close()


def ok_record(path: str, seed: int, *, version: int = 1, digest: str | None = None, title: str | None = None) -> TrackRecord:
    rng = np.random.default_rng(seed)
    n_seg = 2 + seed % 3
    return TrackRecord(
        path=path,
        content_hash=digest or f"hash{seed}",
        size=1000 + seed,
        mtime=1_700_000_000.0 + seed,
        status=OK,
        duration=30.0 + seed,
        tags={"title": title or f"Song {seed}", "artist": "Tester", "genre": "Synth"},
        feature_version=version,
        vector=rng.standard_normal(DIM).astype(np.float32),
        segments=rng.standard_normal((n_seg, SEG_DIM)).astype(np.float32),
        segment_starts=np.arange(n_seg, dtype=np.float32) * 2.5,
    )


def failed_record(path: str) -> TrackRecord:
    return TrackRecord(
        path=path, content_hash="", size=3, mtime=1.0, status=FAILED, error="empty (0 bytes)", error_reason="empty",
        feature_version=1,
    )


def test_written_tracks_read_back_with_tags_and_vectors(catalog):
    rec = ok_record("/music/a.mp3", 1)
    catalog.write([rec])
    track = catalog.get_by_path("/music/a.mp3")
    assert track is not None and track.status == OK
    assert (track.title, track.artist, track.genre, track.duration) == ("Song 1", "Tester", "Synth", 31.0)
    assert catalog.get(track.id) == track
    np.testing.assert_array_equal(catalog.vectors([track.id])[0], rec.vector)


def test_rewriting_a_path_replaces_it_without_duplicates(catalog):
    catalog.write([ok_record("/music/a.mp3", 1)])
    catalog.write([ok_record("/music/a.mp3", 2)])
    assert catalog.count() == 1
    assert catalog.get_by_path("/music/a.mp3").title == "Song 2"


def test_failures_are_kept_apart_from_analysed_tracks(catalog):
    catalog.write([ok_record("/music/a.mp3", 1), failed_record("/music/bad.mp3")])
    assert catalog.count() == 1
    assert catalog.count(status=FAILED) == 1
    (bad,) = catalog.tracks(status=FAILED)
    assert (bad.error_reason, bad.error) == ("empty", "empty (0 bytes)")


def test_vectors_stream_in_id_order_in_chunks(catalog):
    catalog.write([ok_record(f"/music/{i}.mp3", i) for i in range(10)])
    chunks = list(catalog.iter_vectors(1, chunk=4))
    assert [len(ids) for ids, _ in chunks] == [4, 4, 2]
    ids = np.concatenate([c[0] for c in chunks])
    assert list(ids) == sorted(ids)
    assert all(v.shape[1] == DIM for _, v in chunks)


def test_segments_round_trip(catalog):
    rec = ok_record("/music/a.mp3", 4)
    catalog.write([rec])
    (seg,) = [s for batch in catalog.iter_segments(1) for s in batch]
    np.testing.assert_array_equal(seg.vectors, rec.segments)
    np.testing.assert_array_equal(seg.starts, rec.segment_starts)


def test_old_feature_versions_are_not_served_as_current(catalog):
    catalog.write([ok_record("/music/old.mp3", 1, version=0), ok_record("/music/new.mp3", 2, version=1)])
    ids = np.concatenate([ids for ids, _ in catalog.iter_vectors(1)])
    assert len(ids) == 1
    stats = catalog.stats(1)
    assert (stats.tracks, stats.stale) == (1, 1)


def test_revision_changes_when_analysed_tracks_change(catalog):
    r0 = catalog.revision()
    catalog.write([ok_record("/music/a.mp3", 1)])
    r1 = catalog.revision()
    catalog.write([failed_record("/music/bad.mp3")])
    r2 = catalog.revision()
    catalog.remove(["/music/a.mp3"])
    r3 = catalog.revision()
    assert r0 != r1 and r2 == r1 and r3 != r2


def test_find_analysis_reuses_features_by_content(catalog):
    rec = ok_record("/music/a.mp3", 1, digest="abc")
    catalog.write([rec])
    found = catalog.find_analysis("abc", 1)
    assert found is not None
    np.testing.assert_array_equal(found.vector, rec.vector)
    assert catalog.find_analysis("abc", 2) is None
    assert catalog.find_analysis("zzz", 1) is None


def test_remove_drops_tracks_and_their_segments(catalog):
    catalog.write([ok_record("/music/a.mp3", 1), ok_record("/music/b.mp3", 2)])
    assert catalog.remove(["/music/a.mp3", "/music/none.mp3"]) == 1
    assert catalog.get_by_path("/music/a.mp3") is None
    assert len([s for batch in catalog.iter_segments(1) for s in batch]) == 1
    assert catalog.check() == []


def test_search_matches_tags_and_paths_and_paginates(catalog):
    catalog.write([ok_record(f"/music/{i}.mp3", i, title="Blue Moon" if i % 3 == 0 else None) for i in range(9)])
    assert catalog.count(query="blue") == 3
    assert catalog.count(query="/music/4") == 1
    page = catalog.tracks(query="blue", offset=1, limit=1)
    assert len(page) == 1 and page[0].title == "Blue Moon"
    assert catalog.count(query="100%_") == 0
    total, rows = catalog.page(query="blue", offset=1, limit=1)
    assert total == 3 and [t.id for t in rows] == [t.id for t in page]


def test_search_wants_the_substring_not_only_its_pieces(catalog):
    # "Abc Bcd" holds every trigram of "abcd" (abc, bcd) but not "abcd" itself.
    catalog.write([ok_record("/music/x.mp3", 1, title="Abc Bcd"), ok_record("/music/y.mp3", 2, title="xABCDx")])
    assert [t.path for t in catalog.tracks(query="abcd")] == ["/music/y.mp3"]
    assert catalog.count(query="bc") == 2  # shorter than a trigram: matched all the same


def test_file_states_describe_every_path(catalog):
    catalog.write([ok_record("/music/a.mp3", 1), failed_record("/music/bad.mp3")])
    states = catalog.file_states()
    assert set(states) == {"/music/a.mp3", "/music/bad.mp3"}
    assert states["/music/a.mp3"].size == 1001 and states["/music/bad.mp3"].status == FAILED


def test_meta_values_persist(catalog):
    catalog.set_meta("tuned", '{"x": 1}')
    assert catalog.get_meta("tuned") == '{"x": 1}'
    assert catalog.get_meta("missing") is None


def test_non_utf8_paths_survive(catalog):
    import os

    path = os.fsdecode(b"/music/caf\xe9.mp3")
    catalog.write([ok_record(path, 1)])
    track = catalog.get_by_path(path)
    assert track is not None and track.path == path
    assert "\ufffd" in track.display_path


def test_a_sound_catalog_passes_the_check(catalog):
    catalog.write([ok_record(f"/music/{i}.mp3", i) for i in range(3)])
    assert catalog.check() == []


def test_ids_are_never_reused(catalog):
    catalog.write([ok_record("/music/a.mp3", 1), ok_record("/music/b.mp3", 2)])
    gone = catalog.get_by_path("/music/b.mp3").id
    catalog.remove(["/music/b.mp3"])
    catalog.write([ok_record("/music/c.mp3", 3)])
    assert catalog.get_by_path("/music/c.mp3").id > gone


def test_copies_of_one_recording_are_two_tracks(catalog):
    catalog.write([ok_record("/music/a.mp3", 1, digest="same"), ok_record("/backup/a.mp3", 1, digest="same")])
    assert catalog.count() == 2
    assert {s.content_hash for s in catalog.file_states().values()} == {"same"}


def test_a_copied_record_keeps_its_id_and_analysis_time(catalog):
    import dataclasses

    rec = dataclasses.replace(ok_record("/music/a.mp3", 1), track_id=42, analysed_at=1_600_000_000.5)
    catalog.write([rec])
    catalog.write([ok_record("/music/b.mp3", 2)])
    track = catalog.get(42)
    assert track is not None and (track.path, track.analysed_at) == ("/music/a.mp3", 1_600_000_000.5)
    assert catalog.get_by_path("/music/b.mp3").id > 42


def test_meta_items_list_every_value_with_the_revision(catalog):
    catalog.set_meta("tuned", "yes")
    catalog.write([ok_record("/music/a.mp3", 1)])
    items = catalog.meta_items()
    assert items["tuned"] == "yes"
    assert int(items["revision"]) == catalog.revision()


def test_the_check_finds_vectors_of_different_lengths(catalog):
    import dataclasses

    odd = ok_record("/music/b.mp3", 2)
    catalog.write([ok_record("/music/a.mp3", 1), dataclasses.replace(odd, vector=np.zeros(DIM + 1, np.float32))])
    assert any("vectors of 2 different lengths" in p for p in catalog.check())
