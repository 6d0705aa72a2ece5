"""Upgrades: vectors from an older feature version are detected, re-analysed, never mixed with new ones."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.errors import IndexMismatchError
from soundalike.features import FEATURE_VERSION
from soundalike.index import bundle
from soundalike.ingest import SerialRunner, ingest


@pytest.fixture
def aged_library(synth_library, tmp_path):
    """A library where 4 of 8 tracks were analysed by 'version 0' (shorter vectors, as an old release wrote)."""
    music = tmp_path / "music"
    music.mkdir()
    for p, _ in synth_library.tracks[:8]:
        shutil.copy(p, music / p.name)
    db = tmp_path / "lib" / "catalog.sqlite"
    catalog = SQLiteCatalog(db)
    ingest([music], catalog, runner=SerialRunner())
    with sqlite3.connect(db) as conn:
        old = [r[0] for r in conn.execute("SELECT id FROM tracks ORDER BY id LIMIT 4")]
        for track_id in old:
            conn.execute(
                "UPDATE tracks SET feature_version = 0, vector = ? WHERE id = ?",
                (np.ones(50, dtype=np.float32).tobytes(), track_id),
            )
    return music, tmp_path / "lib", SQLiteCatalog(db), old


def test_old_vectors_are_reported_as_stale_and_kept_out_of_the_index(aged_library):
    music, library, catalog, old = aged_library
    stats = catalog.stats(FEATURE_VERSION)
    assert (stats.tracks, stats.stale) == (4, 4)
    index = bundle.build(library, catalog, backend="exact")
    assert index.count == 4 and not set(old) & set(index.ids.tolist())
    assert index.vectors.shape[1] != 50


def test_reingest_reanalyses_the_old_tracks(aged_library):
    music, library, catalog, old = aged_library
    summary = ingest([music], catalog, runner=SerialRunner())
    assert (summary.analysed, summary.unchanged) == (4, 4)
    stats = catalog.stats(FEATURE_VERSION)
    assert (stats.tracks, stats.stale) == (8, 0)
    assert catalog.check() == []


def test_an_index_of_another_feature_version_is_refused_by_name(aged_library):
    music, library, catalog, _ = aged_library
    index = bundle.build(library, catalog, backend="exact")
    manifest_path = index.directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["feature_version"] = FEATURE_VERSION - 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match=f"feature version mismatch: expected {FEATURE_VERSION}, found {FEATURE_VERSION - 1}"):
        bundle.load(library)
    rebuilt, was_rebuilt = bundle.ensure(library, catalog, backend="exact")
    assert was_rebuilt and rebuilt.manifest.feature_version == FEATURE_VERSION
