"""Libraries of one to five tracks still give meaningful similarities (issue 11).

Standardising over a handful of tracks degenerates: over two tracks every dimension is +1 or -1 and
every cosine is -1 (similarity 0.000 in every column). The reference statistics shipped with the
feature version fix that; these tests run synthesised tracks through the real encoders, analysis,
SQLite catalog and exact index.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundalike import synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.cli import main
from soundalike.index import bundle
from soundalike.ingest import ProcessRunner, ingest
from soundalike.recommend import Recommendation, Recommender

SPECS = {
    # the similar pair: same instrument, groove and key, different melody (seed)
    "pluck1": synth.TrackSpec("pluck", "backbeat", "C", duration=15.0, seed=1),
    "pluck2": synth.TrackSpec("pluck", "backbeat", "C", duration=15.0, seed=2),
    # three tracks that differ from the pair in instrument, groove and key
    "pad": synth.TrackSpec("pad", "waltz", "A", duration=15.0, seed=3),
    "organ": synth.TrackSpec("organ", "halftime", "F#", duration=15.0, seed=4),
    "square": synth.TrackSpec("square", "bossa", "D#", duration=15.0, seed=5),
}
PAIR = ("pluck1", "pluck2")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """All five tracks written through real encoders and ingested into one SQLite catalog."""
    root = tmp_path_factory.mktemp("small")
    written = synth.write_library(root / "music", list(SPECS.values()))
    paths = {name: path for name, (path, _) in zip(SPECS, written, strict=True)}
    catalog = SQLiteCatalog(root / "all.sqlite")
    summary = ingest([root / "music"], catalog, runner=ProcessRunner(2))
    assert summary.analysed == len(SPECS) and not summary.failed
    catalog.close()
    return root / "all.sqlite", paths


@pytest.fixture(scope="module")
def library_of(analysed, tmp_path_factory):
    """``library_of(*names)``: a library (exact index) holding only those of the analysed tracks."""
    source, paths = analysed

    def make(*names: str) -> tuple[Recommender, dict[str, Path]]:
        folder = tmp_path_factory.mktemp("lib")
        with sqlite3.connect(source) as src, sqlite3.connect(folder / "catalog.sqlite") as dst:
            src.backup(dst)
        catalog = SQLiteCatalog(folder / "catalog.sqlite")
        catalog.remove(str(p) for n, p in paths.items() if n not in names)
        index = bundle.build(folder, catalog, backend="exact")
        return Recommender(catalog, index), paths

    return make


def results_for(rec: Recommender, paths: dict[str, Path], query: str) -> dict[str, Recommendation]:
    """``similar`` for track ``query``: each other track's result by name, best first."""
    names = {p.name: n for n, p in paths.items()}
    return {names[Path(r.track.path).name]: r for r in rec.similar_to_track(str(paths[query]), k=10).results}


def assert_meaningful(r: Recommendation) -> None:
    """Not the degenerate answer: some column away from 0 and 1, and aspects that differ."""
    values = [r.similarity, *r.aspects.values()]
    assert any(0.01 < v < 0.99 for v in values), values
    assert max(r.aspects.values()) - min(r.aspects.values()) > 0.02, r.aspects


UNRELATED = (0.3, 0.7)
"""Similarity of tracks sharing no instrument, groove or key: about 0.5, "unrelated" in the README."""


def test_two_track_library_scores_the_similar_pair_as_similar(library_of):
    rec, paths = library_of(*PAIR)
    pair = results_for(rec, paths, "pluck1")["pluck2"]
    assert_meaningful(pair)
    assert pair.similarity > 0.6


def test_three_track_library_ranks_the_pair_first_and_the_odd_track_about_unrelated(library_of):
    rec, paths = library_of(*PAIR, "pad")
    results = results_for(rec, paths, "pluck1")
    assert list(results) == ["pluck2", "pad"]
    for r in results.values():
        assert_meaningful(r)
    assert results["pluck2"].similarity - results["pad"].similarity > 0.1
    assert UNRELATED[0] < results["pad"].similarity < UNRELATED[1]


def test_five_track_library_ranks_the_pair_first_and_the_others_about_unrelated(library_of):
    rec, paths = library_of(*SPECS)
    results = results_for(rec, paths, "pluck1")
    assert next(iter(results)) == "pluck2"
    others = [r for n, r in results.items() if n != "pluck2"]
    for r in results.values():
        assert_meaningful(r)
    assert results["pluck2"].similarity - max(r.similarity for r in others) > 0.1
    assert all(UNRELATED[0] < r.similarity < UNRELATED[1] for r in others), [r.similarity for r in others]


def test_similarities_hardly_depend_on_the_rest_of_a_small_library(library_of):
    pair: dict[int, float] = {}
    odd: dict[int, float] = {}
    for names in (PAIR, (*PAIR, "pad"), tuple(SPECS)):
        rec, paths = library_of(*names)
        results = results_for(rec, paths, "pluck1")
        pair[len(names)] = results["pluck2"].similarity
        if "pad" in results:
            odd[len(names)] = results["pad"].similarity
    assert max(pair.values()) - min(pair.values()) < 0.1, pair
    assert max(odd.values()) - min(odd.values()) < 0.1, odd


def test_one_track_library_scores_a_file_of_the_same_music_above_other_music(library_of):
    rec, paths = library_of("pluck1")
    same = rec.similar_to_file(paths["pluck2"], k=1).results[0]
    other = rec.similar_to_file(paths["pad"], k=1).results[0]
    assert_meaningful(same)
    assert same.similarity - other.similarity > 0.1, (same.similarity, other.similarity)


def test_cli_similar_in_a_three_track_library_prints_meaningful_columns(analysed, tmp_path):
    _, paths = analysed
    music = tmp_path / "music"
    music.mkdir()
    for name in (*PAIR, "pad"):
        shutil.copy(paths[name], music / paths[name].name)
    runner = CliRunner()
    library = str(tmp_path / "library")
    ingested = runner.invoke(main, ["--library", library, "ingest", str(music), "-j", "2", "-q"])
    assert ingested.exit_code == 0, ingested.output
    result = runner.invoke(main, ["--library", library, "similar", str(music / paths["pluck1"].name), "--json"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).stem: r for r in json.loads(result.output)["results"]}
    assert list(rows) == [paths["pluck2"].stem, paths["pad"].stem]
    pair, odd = rows[paths["pluck2"].stem], rows[paths["pad"].stem]
    for row in (pair, odd):
        assert np.ptp(list(row["aspects"].values())) > 0.02, row
    assert pair["similarity"] - odd["similarity"] > 0.1
    assert UNRELATED[0] < odd["similarity"] < UNRELATED[1], odd
