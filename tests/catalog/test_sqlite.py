"""SQLite specifics: schema versioning, refusing what is not a catalog, concurrent readers."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.errors import CatalogError

from .test_contract import ok_record


def test_missing_catalog_is_an_error_when_not_creating(tmp_path):
    with pytest.raises(CatalogError, match="no catalog here"):
        SQLiteCatalog(tmp_path / "lib" / "catalog.sqlite", create=False)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match="catalog.sqlite"):
        SQLiteCatalog(path)


def test_a_newer_schema_is_refused_with_both_versions(tmp_path):
    path = tmp_path / "catalog.sqlite"
    SQLiteCatalog(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(CatalogError, match="99.*expected at most 2"):
        SQLiteCatalog(path)


def test_schema_version_is_recorded(tmp_path):
    path = tmp_path / "catalog.sqlite"
    SQLiteCatalog(path).close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_failed_batch_leaves_nothing_behind(tmp_path):
    cat = SQLiteCatalog(tmp_path / "catalog.sqlite")
    good = ok_record("/m/a.mp3", 1)
    with pytest.raises(ZeroDivisionError), cat.transaction():
        cat.write([good])
        1 / 0  # noqa: B018
    assert cat.count() == 0


def test_each_thread_reads_through_its_own_connection(tmp_path):
    cat = SQLiteCatalog(tmp_path / "catalog.sqlite")
    cat.write([ok_record(f"/m/{i}.mp3", i) for i in range(5)])
    counts: list[int] = []

    def read() -> None:
        counts.append(cat.count())
        cat.close()

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [5, 5, 5, 5]


def test_a_read_transaction_sees_one_snapshot_while_another_process_writes(tmp_path):
    path = tmp_path / "catalog.sqlite"
    reader, writer = SQLiteCatalog(path), SQLiteCatalog(path)
    writer.write([ok_record(f"/music/{i}.mp3", i) for i in range(3)])
    with reader.transaction(write=False):
        before = reader.count()
        writer.write([ok_record("/music/new.mp3", 99)])  # commits on its own connection meanwhile
        assert reader.count() == before == 3
        assert len(reader.tracks()) == 3
    assert reader.count() == 4
    assert reader.page(limit=2)[0] == 4
