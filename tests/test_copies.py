"""Duplicates (issue 14): byte copies and transcodes made with ffmpeg, scored against the ground truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from soundalike.copies import align, find_duplicates, same_recording


@pytest.fixture(scope="module")
def found(copies_library):
    return find_duplicates(copies_library.index, copies_library.catalog.get)


def _pairs(groups):
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


def test_duplicates_find_every_copy_and_no_false_pair(copies_library, found):
    truth = _pairs(copies_library.groups)
    reported = _pairs({t.path for t in g.tracks} for g in found.groups)
    true_positives = len(truth & reported)
    precision = true_positives / len(reported)
    recall = true_positives / len(truth)
    assert (precision, recall) == (1.0, 1.0), (sorted(map(sorted, reported - truth)), sorted(map(sorted, truth - reported)))


def test_duplicate_groups_are_exactly_the_recordings(copies_library, found):
    assert sorted(sorted(t.path for t in g.tracks) for g in found.groups) == sorted(sorted(g) for g in copies_library.groups)


def test_a_byte_copy_is_reported_as_byte_identical(copies_library, found):
    group = next(g for g in found.groups if {t.path for t in g.tracks} == copies_library.groups[0])
    assert [p.byte_identical for p in group.pairs] == [True]


def test_added_silence_is_found_at_a_two_second_offset(copies_library, found):
    group = next(g for g in found.groups if {t.path for t in g.tracks} == copies_library.groups[3])
    (pair,) = group.pairs
    assert pair.alignment is not None
    offset = pair.alignment.offset if pair.a.path == str(copies_library.originals[3]) else -pair.alignment.offset
    assert offset == pytest.approx(2.0, abs=1.25)  # windows hop 2.5 s: the nearest step to 2 s
    assert min(pair.alignment.coverage_a, pair.alignment.coverage_b) >= 0.7


def test_tracks_sharing_instrument_and_groove_are_not_duplicates(copies_library):
    lib = copies_library
    index = lib.index
    c = lib.catalog.get_by_path(str(lib.originals[0]))  # pluck backbeat C
    a = lib.catalog.get_by_path(str(lib.originals[1]))  # pluck backbeat A
    alignment = same_recording(index, index.row_of(c.id), index.row_of(a.id))
    assert not alignment.same_recording()


def test_an_excerpt_is_not_the_same_recording_as_its_track(copies_library):
    index = copies_library.index
    segs, starts = index.segments_of(0)
    segs = np.asarray(segs)
    half = len(segs) // 2
    alignment = align(segs, starts, segs[:half], starts[:half])
    assert alignment.coverage_b == 1.0 and alignment.coverage_a < 0.7
    assert not alignment.same_recording()


def test_duplicates_json_lists_tracks_and_evidence(found):
    data = found.to_dict()
    assert data["groups"] and {"tracks", "evidence"} <= set(data["groups"][0])
    assert all(len(g["evidence"]) == len(g["tracks"]) - 1 for g in data["groups"])
