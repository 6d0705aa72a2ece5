"""Moving a catalog between SQLite and MongoDB without loss: export, import, copy, and the verifier.

``mongomock://`` is mongomock, an in-process **stand-in** for a MongoDB server (none can be installed
on the CI machines).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from mongo_stand_in import StandInCatalog
from soundalike.catalog import FAILED, OK, TrackRecord
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.catalog.transfer import compare, export_catalog, import_catalog, records
from soundalike.cli import main
from soundalike.errors import CatalogError
from soundalike.features import FEATURE_VERSION

NON_UTF8 = os.fsdecode(b"/elsewhere/caf\xe9 \xff.flac")


@pytest.fixture
def source(synth_library, tmp_path) -> SQLiteCatalog:
    """The session's analysed library (copied with SQLite's backup API) plus failures, a track of an
    old feature version, a path that is not UTF-8 and a meta value."""
    path = tmp_path / "source.sqlite"
    with sqlite3.connect(synth_library.catalog.path) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    catalog = SQLiteCatalog(path)
    first = catalog.tracks(limit=1)[0]
    reused = catalog.find_analysis(first.content_hash, FEATURE_VERSION)
    assert reused is not None
    catalog.write(
        [
            dataclasses.replace(reused, path=NON_UTF8),
            dataclasses.replace(reused, path="/elsewhere/old.mp3", feature_version=0),
            TrackRecord(path="/elsewhere/empty.mp3", content_hash="", size=0, mtime=5.0, status=FAILED,
                        error="empty (0 bytes)", error_reason="empty", feature_version=1),
            TrackRecord(path="/elsewhere/crash.ogg", content_hash="", size=9, mtime=6.0, status=FAILED,
                        error="killed the worker 4 times", error_reason="crash"),
        ]
    )
    catalog.set_meta("tuned", '{"scann": {"leaves_to_search": 12}}')
    return catalog


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_sqlite_to_mongodb_to_sqlite_keeps_every_record_and_vector(source, tmp_path):
    mongo_uri = "mongomock://round-trip/library"
    first, second, final = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz", tmp_path / "final.sqlite"
    _cli("catalog", "export", str(first), "--catalog", str(source.path), "-q")
    out = _cli("catalog", "import", str(first), "--catalog", mongo_uri, "-q")
    assert "imported 44 tracks (42 analysed, 2 failed" in out and "every record and vector matches" in out
    _cli("--catalog", mongo_uri, "catalog", "export", str(second), "-q")  # the group's option, as for any command
    _cli("catalog", "import", str(second), "--catalog", str(final), "-q")

    mongo, back = StandInCatalog(mongo_uri, create=False), SQLiteCatalog(final)
    assert compare(source, mongo) == []
    assert compare(source, back) == []
    # The same facts, checked without the verifier.
    for other in (mongo, back):
        assert [(t.id, t.path, t.status, t.error_reason, t.analysed_at) for t in other.tracks(status=None)] == [
            (t.id, t.path, t.status, t.error_reason, t.analysed_at) for t in source.tracks(status=None)
        ]
        ids = [t.id for t in source.tracks(status=OK)]
        assert other.vectors(ids).tobytes() == source.vectors(ids).tobytes()
        for version in (0, 1):
            mine = [s for batch in source.iter_segments(version) for s in batch]
            theirs = [s for batch in other.iter_segments(version) for s in batch]
            assert [s.track_id for s in theirs] == [s.track_id for s in mine]
            assert all(np.array_equal(a.vectors, b.vectors) and np.array_equal(a.starts, b.starts) for a, b in zip(mine, theirs, strict=True))
        assert other.get_by_path(NON_UTF8) is not None
        assert other.get_meta("tuned") == source.get_meta("tuned")
        assert other.revision() >= source.revision()
        assert other.stats(FEATURE_VERSION) == dataclasses.replace(source.stats(FEATURE_VERSION), revision=other.revision())


def test_copy_moves_a_catalog_in_one_command(source, tmp_path):
    out = _cli("catalog", "copy", "--from", str(source.path), "--to", "mongomock://copy/library", "-q")
    assert "copied 44 tracks" in out
    assert compare(source, StandInCatalog("mongomock://copy/library")) == []


def test_the_verifier_sees_a_changed_vector_a_missing_track_and_changed_meta(source, tmp_path):
    target = SQLiteCatalog(tmp_path / "target.sqlite")
    export_catalog(source, tmp_path / "x.jsonl.gz")
    import_catalog(tmp_path / "x.jsonl.gz", target)
    victim = next(r for r in records(target) if r.status == OK)
    assert victim.vector is not None
    target.write([dataclasses.replace(victim, vector=victim.vector + np.float32(1e-6))])  # keeps its id
    target.remove([next(r.path for r in records(target) if r.track_id > victim.track_id + 3)])
    target.set_meta("tuned", "changed")
    problems = compare(source, target)
    assert any(p.startswith(f"track {victim.track_id} ") and p.endswith("differs in vector") for p in problems)
    assert sum("is only on one side" in p for p in problems) == 1
    assert any("meta 'tuned'" in p for p in problems)
    assert len(problems) == 3, problems


def test_import_refuses_a_catalog_that_is_not_empty(source, tmp_path):
    export_catalog(source, tmp_path / "x.jsonl.gz")
    with pytest.raises(CatalogError, match="already holds 44 tracks; import into an empty catalog"):
        import_catalog(tmp_path / "x.jsonl.gz", source)


def test_an_export_cut_short_is_refused_before_anything_is_written(source, tmp_path):
    whole = tmp_path / "x.jsonl.gz"
    export_catalog(source, whole)
    lines = gzip.decompress(whole.read_bytes()).splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b"".join(lines[:-1])))  # no end marker
    target = StandInCatalog("mongomock://cut/library")
    with pytest.raises(CatalogError, match="cut short after 44 tracks"):
        import_catalog(cut, target)
    assert target.count(status=None) == 0
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CatalogError, match="damaged or cut short"):
        import_catalog(damaged, target)
    assert target.count(status=None) == 0


def test_a_file_that_is_not_an_export_is_refused(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"hello": 1}\n'))
    with pytest.raises(CatalogError, match="not a soundalike catalog export"):
        import_catalog(path, SQLiteCatalog(tmp_path / "t.sqlite"))
