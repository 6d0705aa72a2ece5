"""Issue 15: the SQLite catalog's user paths at a size where a full scan shows.

A full scan of ``tracks`` costs at least one SQLite VM step per row, so counting the steps a call
takes (``set_progress_handler`` with a period of one instruction) on a 20,000-row catalog tells an
indexed lookup (tens to a few thousand steps) from a scan (over 100,000), whatever the machine's speed.
Calls that must visit every row (the file facts of a re-ingest, the stats' totals) are checked to
read them from a covering index instead of the table, whose rows carry the vectors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from soundalike.catalog import FAILED, OK, TrackRecord
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.features import FEATURE_VERSION

ROWS = 20_000
VERSION = FEATURE_VERSION


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> SQLiteCatalog:
    cat = SQLiteCatalog(tmp_path_factory.mktemp("big") / "catalog.sqlite")
    vector = np.zeros(16, dtype=np.float32)
    artists = ["Nina Simone", "Can", "Bill Evans", "Nick Drake", "Björk"]
    for start in range(0, ROWS, 2_000):
        cat.write(
            [
                TrackRecord(
                    path=f"/music/{i % 97:02d}/track {i:06d}.mp3", content_hash=f"h{i}", size=1000 + i, mtime=1.0,
                    status=OK if i % 10 else FAILED, duration=180.0, error=None if i % 10 else "bad",
                    tags={"title": f"Song {i}", "artist": artists[i % 5]} if i % 10 else {},
                    feature_version=VERSION if i % 10 else None, vector=vector if i % 10 else None,
                )
                for i in range(start, start + 2_000)
            ]
        )
    return cat


@contextmanager
def steps(cat: SQLiteCatalog) -> Iterator[list[int]]:
    """Count the SQLite VM instructions run inside the block."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn = cat._conn
    conn.set_progress_handler(tick, 1)
    try:
        yield count
    finally:
        conn.set_progress_handler(None, 1)


def plans(cat: SQLiteCatalog, call: Callable[[], object]) -> list[str]:
    """The query plans of every statement ``call`` runs."""
    statements: list[str] = []
    conn = cat._conn
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    probe = sqlite3.connect(cat.path)
    out = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            out += [row[3] for row in probe.execute("EXPLAIN QUERY PLAN " + sql)]
    probe.close()
    return out


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.tracks(limit=50),
        lambda c: c.tracks(offset=1_000, limit=50),
        lambda c: c.tracks(status=FAILED, limit=50),
        lambda c: c.tracks(query="Song 1999", limit=50),
        lambda c: c.tracks(query="track 01234", limit=50),
        lambda c: c.get_by_path("/music/05/track 000005.mp3"),
        lambda c: c.get(12_345),
    ],
    ids=["first page", "page 21", "failures", "search an artist", "search a path", "by path", "by id"],
)
def test_what_users_open_takes_far_fewer_steps_than_the_catalog_has_rows(catalog: SQLiteCatalog, call: Callable[[SQLiteCatalog], object]) -> None:
    with steps(catalog) as count:
        call(catalog)
    assert count[0] < ROWS / 2  # a scan takes several steps per row


def test_search_finds_the_same_tracks_as_a_substring_match_in_any_column(catalog: SQLiteCatalog) -> None:
    for query in ("nina", "Bill Ev", "track 0123", "Song 1999", "björk", "xyzzy", "ca"):
        found = [t.id for t in catalog.tracks(query=query, limit=None)]
        everything = catalog.tracks(limit=None)
        wanted = [
            t.id for t in everything
            if any(query.casefold() in (v or "").casefold() for v in (t.title, t.artist, t.album, t.genre, t.path))
        ]
        assert found == wanted, query
        assert catalog.count(query=query) == len(wanted)


def test_search_follows_a_retagged_and_a_removed_track(catalog: SQLiteCatalog, tmp_path: Path) -> None:
    cat = SQLiteCatalog(tmp_path / "catalog.sqlite")
    record = TrackRecord(path="/m/a.mp3", content_hash="a", size=1, mtime=1.0, status=OK, tags={"title": "Blue in Green"},
                         feature_version=VERSION, vector=np.zeros(4, np.float32))
    cat.write([record])
    cat.write([TrackRecord(**{**record.__dict__, "tags": {"title": "So What"}})])
    assert [t.title for t in cat.tracks(query="what")] == ["So What"]
    assert cat.tracks(query="green") == []
    cat.remove(["/m/a.mp3"])
    assert cat.tracks(query="what") == []


def test_the_file_facts_of_a_re_ingest_the_stats_and_the_counts_are_read_from_covering_indexes(catalog: SQLiteCatalog) -> None:
    for call in (
        lambda: catalog.file_states(),
        lambda: catalog.stats(VERSION),
        lambda: catalog.count(),
        lambda: catalog.count(status=FAILED),
    ):
        found = plans(catalog, call)
        reads = [p for p in found if p.split()[:2] in (["SCAN", "tracks"], ["SEARCH", "tracks"])]
        assert reads and all("COVERING INDEX" in p for p in reads), found


def test_stats_count_what_the_rows_say(catalog: SQLiteCatalog) -> None:
    stats = catalog.stats(VERSION)
    assert (stats.tracks, stats.failed, stats.stale) == (ROWS * 9 // 10, ROWS // 10, 0)
    assert stats.seconds == pytest.approx(180.0 * ROWS * 9 // 10)


def test_a_catalog_of_schema_1_is_migrated_with_its_tracks_searchable(tmp_path: Path) -> None:
    from soundalike.catalog import sqlite as module

    path = tmp_path / "catalog.sqlite"
    conn = sqlite3.connect(path)
    for statement in str(module._MIGRATIONS[0]).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO tracks (path, path_text, content_hash, size, mtime, status, title, analysed_at, error) "
        "VALUES (?, ?, 'h', 1, 1.0, 'failed', 'Naima', 1.0, 'x')",
        (b"/m/n.mp3", "/m/n.mp3"),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    cat = SQLiteCatalog(path)
    assert [t.title for t in cat.tracks(status=None, query="naim")] == ["Naima"]
