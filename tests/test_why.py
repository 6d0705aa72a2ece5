"""The why line: words from tempo, key and aspect similarities, on made-up numbers and on pairs of
synthetic tracks whose relation is known (same groove = same tempo, same key, same instrument)."""

from __future__ import annotations

import json

import pytest

from soundalike.catalog import Track
from soundalike.errors import CatalogError
from soundalike.features.descriptors import NONE, Descriptors
from soundalike.recommend import Recommender
from soundalike.synth import GROOVES
from soundalike.synth.specs import parse_key
from soundalike.why import (
    DIFFERENT,
    MAX_PHRASES,
    NOTHING,
    SIMILAR,
    explain,
    key_relation,
    tempo_relation,
)

A_MINOR = Descriptors(tempo_bpm=124.0, key_tonic=9, key_minor=True)
C_MAJOR = Descriptors(tempo_bpm=123.0, key_tonic=0, key_minor=False)
NEUTRAL = {name: (SIMILAR[name] + DIFFERENT[name]) / 2 for name in SIMILAR}


@pytest.mark.parametrize(
    ("query", "result", "relation"),
    [
        (124.0, 123.0, "same"),
        (100.0, 103.9, "same"),
        (100.0, 105.0, "close"),
        (100.0, 109.0, "different"),
        (62.0, 124.0, "double"),
        (124.0, 61.0, "half"),
        (100.0, 150.0, "different"),
    ],
)
def test_tempo_is_the_same_only_within_4_percent_and_octaves_are_named(query, result, relation):
    assert tempo_relation(query, result) == relation


def test_key_relations():
    assert key_relation(A_MINOR, Descriptors(key_tonic=9, key_minor=True)) == "same"
    assert key_relation(A_MINOR, C_MAJOR) == "relative" == key_relation(C_MAJOR, A_MINOR)
    assert key_relation(C_MAJOR, Descriptors(key_tonic=0, key_minor=True)) == "different"
    assert key_relation(C_MAJOR, NONE) is None


def test_same_tempo_similar_instruments_different_key():
    aspects = {**NEUTRAL, "timbre": 0.9}
    why = explain(aspects, A_MINOR, Descriptors(tempo_bpm=123.0, key_tonic=2, key_minor=False))
    assert why.text == "same tempo (~124 BPM) · similar instruments · different key (A minor → D major)"
    assert why.tempo_bpm == (124.0, 123.0) and why.key == ("A minor", "D major")
    assert why.parts()["tempo"] == "same" and why.parts()["key_relation"] == "different"


def test_agreements_lead_the_strongest_first_and_one_difference_closes_the_line():
    aspects = {"timbre": 0.95, "spectral": 0.9, "rhythm": 0.2, "harmony": 0.5, "loudness": 0.99, "style": 0.99}
    why = explain(aspects, NONE, NONE)
    assert why.phrases == ("similar style", "similar instruments", "similar tonal balance", "different groove")
    assert len(why.phrases) <= MAX_PHRASES
    assert why.aspects["rhythm"] == "different" and why.aspects["harmony"] == "neutral"


def test_a_tempo_octave_is_named_as_such():
    why = explain(NEUTRAL, Descriptors(tempo_bpm=70.0), Descriptors(tempo_bpm=141.0))
    assert why.text == "double tempo (70 → 141 BPM)"


def test_known_keys_replace_the_harmony_words():
    why = explain({**NEUTRAL, "harmony": 0.95}, C_MAJOR, C_MAJOR)
    assert "same key (C major)" in why.phrases and "similar harmony" not in why.phrases
    assert "similar harmony" in explain({**NEUTRAL, "harmony": 0.95}, NONE, NONE).phrases


def test_without_descriptors_the_line_leaves_tempo_and_key_out():
    why = explain({**NEUTRAL, "timbre": 0.9}, NONE, A_MINOR)
    assert why.text == "similar instruments"
    assert why.tempo is None and why.key_relation is None and why.key == (None, "A minor")
    assert explain(NEUTRAL, NONE, NONE).text == NOTHING


# -- pairs of synthetic tracks with known relations ----------------------------------------------


@pytest.fixture(scope="module")
def all_pairs(synth_library, recommender):
    """(query spec, result spec, Recommendation) for every ordered pair of the 40-track library."""
    out = []
    for track in synth_library.catalog.tracks():
        for r in recommender.similar_to_track(track.id, k=39).results:
            out.append((synth_library.spec_of(track.path), synth_library.spec_of(r.track.path), r))
    return out


def _share(pairs, words: str) -> float:
    return sum(words in r.why.text for *_, r in pairs) / len(pairs)


def test_same_groove_different_key_says_same_tempo_and_different_key(all_pairs):
    pairs = [(a, b, r) for a, b, r in all_pairs if a.groove == b.groove and a.key != b.key]
    tempo, key = _share(pairs, "same tempo"), _share(pairs, "different key")
    print(f"same groove, other key ({len(pairs)} pairs): 'same tempo' {tempo:.0%}, 'different key' {key:.0%}")
    assert tempo >= 0.9 and key >= 0.9


def test_other_tempo_same_key_says_different_tempo_and_same_key(all_pairs):
    far = [g for g in GROOVES if g != "halftime"]  # halftime (70 BPM) is often heard at 140: "double"
    pairs = [
        (a, b, r) for a, b, r in all_pairs if a.groove != b.groove and a.groove in far and b.groove in far and a.key == b.key
    ]
    tempo, key = _share(pairs, "different tempo"), _share(pairs, "same key")
    print(f"other groove, same key ({len(pairs)} pairs): 'different tempo' {tempo:.0%}, 'same key' {key:.0%}")
    assert tempo >= 0.9 and key >= 0.9
    assert _share(pairs, "same tempo") == 0.0


def test_same_instrument_says_similar_instruments_and_others_rarely_do(all_pairs):
    same = [(a, b, r) for a, b, r in all_pairs if a.instrument == b.instrument]
    other = [(a, b, r) for a, b, r in all_pairs if a.instrument != b.instrument]
    hit = sum(r.why.aspects["timbre"] == "similar" for *_, r in same) / len(same)
    false = sum(r.why.aspects["timbre"] == "similar" for *_, r in other) / len(other)
    worded = _share(same, "similar instruments")
    print(f"same instrument: timbre 'similar' {hit:.0%} (worded {worded:.0%}); other instruments {false:.0%}")
    assert hit >= 0.9 and worded >= 0.5 and false <= 0.05


def test_json_gives_the_line_and_its_parts(synth_library, recommender):
    track = synth_library.catalog.tracks()[0]
    spec = synth_library.spec_of(track.path)
    tonic, minor = parse_key(spec.key)
    data = json.loads(json.dumps(recommender.similar_to_track(track.id, k=5).to_dict()))
    for item in data["results"] + data["least_similar"]:
        assert isinstance(item["why"], str) and item["why"] == " · ".join(item["why_parts"]["phrases"])
        parts = item["why_parts"]
        assert set(parts) == {"phrases", "tempo_bpm", "tempo", "key", "key_relation", "aspects"}
        assert parts["tempo_bpm"][0] == pytest.approx(GROOVES[spec.groove].bpm, rel=0.04)
        assert parts["key"][0] == Descriptors(key_tonic=tonic, key_minor=minor).key_name


class _NoVectors:
    """A catalog whose vectors cannot be read for the results (like a track removed meanwhile)."""

    def __init__(self, catalog, query_id: int) -> None:
        self._catalog, self._query = catalog, query_id

    def vectors(self, ids):
        if list(ids) != [self._query]:
            raise CatalogError("no vector for those tracks")
        return self._catalog.vectors(ids)

    def __getattr__(self, name):
        return getattr(self._catalog, name)


def test_results_without_descriptors_still_have_a_line(synth_library, indexes):
    track: Track = synth_library.catalog.tracks()[0]
    recommender = Recommender(_NoVectors(synth_library.catalog, track.id), indexes["exact"])  # type: ignore[arg-type]
    result = recommender.similar_to_track(track.id, k=5)
    for r in result.results + result.least_similar:
        assert r.why is not None and r.why.text
        assert r.why.tempo is None and r.why.key_relation is None
        assert "tempo" not in r.why.text and "key" not in r.why.text


def test_a_mongodb_catalog_gives_the_same_lines(synth_library, indexes):
    from mongo_stand_in import StandInCatalog
    from soundalike.catalog.transfer import copy_catalog

    mongo = StandInCatalog("mongomock://why/library")
    copy_catalog(synth_library.catalog, mongo)
    track = synth_library.catalog.tracks()[7]
    lines = [
        [r.why.text for r in Recommender(catalog, indexes["exact"]).similar_to_track(track.id, k=8).results]  # type: ignore[union-attr]
        for catalog in (synth_library.catalog, mongo)
    ]
    assert lines[0] == lines[1] and all("tempo" in line for line in lines[1])
