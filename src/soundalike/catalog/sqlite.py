"""The default catalog: one SQLite file inside the library folder.

* WAL journal, so readers (the web app) keep reading while an ingest writes;
* one connection per thread, and a nestable transaction helper (``BEGIN IMMEDIATE`` at the outside);
* schema migrations numbered in ``PRAGMA user_version``;
* paths stored as the file system's bytes, so names that are not valid UTF-8 survive;
* vectors stored as float32 blobs; a track row and its segment row are written in one transaction,
  so a killed ingest never leaves a half-written track.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from soundalike.catalog import OK, CatalogStats, FileState, Segments, Track, TrackRecord
from soundalike.errors import CatalogError
from soundalike.vocabulary import display_path

log = logging.getLogger(__name__)

_MIGRATIONS: tuple[str | tuple[str, ...], ...] = (
    """
    CREATE TABLE tracks (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        path            BLOB NOT NULL UNIQUE,
        path_text       TEXT NOT NULL,
        content_hash    TEXT NOT NULL,
        size            INTEGER NOT NULL,
        mtime           REAL NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        duration        REAL,
        title           TEXT,
        artist          TEXT,
        album           TEXT,
        genre           TEXT,
        error           TEXT,
        error_reason    TEXT,
        feature_version INTEGER,
        vector          BLOB,
        analysed_at     REAL NOT NULL,
        CHECK (status = 'failed' OR vector IS NOT NULL)
    );
    CREATE INDEX tracks_hash ON tracks (content_hash);
    CREATE INDEX tracks_status ON tracks (status, feature_version);
    CREATE TABLE segments (
        track_id  INTEGER PRIMARY KEY REFERENCES tracks (id) ON DELETE CASCADE,
        n         INTEGER NOT NULL,
        starts    BLOB NOT NULL,
        vectors   BLOB NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('revision', '0');
    """,
    # 2 (issue 15): nothing a user does reads the whole table (1.5 KB of vector per row) at a million
    # rows. Re-ingest reads file facts from a covering index; listings walk (status, id); stats
    # aggregate a covering index; search uses an FTS5 trigram index (substring matches like LIKE).
    (
        "CREATE INDEX tracks_files ON tracks (path, size, mtime, content_hash, status, feature_version)",
        "CREATE INDEX tracks_listing ON tracks (status, id)",
        "CREATE INDEX tracks_stats ON tracks (status, feature_version, duration)",
        "CREATE VIRTUAL TABLE tracks_text USING fts5 (title, artist, album, genre, path_text, "
        "content = 'tracks', content_rowid = 'id', tokenize = 'trigram')",
        "CREATE TRIGGER tracks_text_insert AFTER INSERT ON tracks BEGIN "
        "INSERT INTO tracks_text (rowid, title, artist, album, genre, path_text) "
        "VALUES (new.id, new.title, new.artist, new.album, new.genre, new.path_text); END",
        "CREATE TRIGGER tracks_text_delete AFTER DELETE ON tracks BEGIN "
        "INSERT INTO tracks_text (tracks_text, rowid, title, artist, album, genre, path_text) "
        "VALUES ('delete', old.id, old.title, old.artist, old.album, old.genre, old.path_text); END",
        "CREATE TRIGGER tracks_text_update AFTER UPDATE ON tracks BEGIN "
        "INSERT INTO tracks_text (tracks_text, rowid, title, artist, album, genre, path_text) "
        "VALUES ('delete', old.id, old.title, old.artist, old.album, old.genre, old.path_text); "
        "INSERT INTO tracks_text (rowid, title, artist, album, genre, path_text) "
        "VALUES (new.id, new.title, new.artist, new.album, new.genre, new.path_text); END",
        "INSERT INTO tracks_text (tracks_text) VALUES ('rebuild')",
    ),
)
"""Schema migrations, numbered from 1 in ``PRAGMA user_version``: a script split at ``;``, or a tuple
of statements (needed when a statement holds ``;``, as triggers do)."""

TRIGRAM = 3
"""The search index matches substrings of at least this many characters; shorter ones are scanned."""

_TRACK_COLUMNS = (
    "id, path, content_hash, size, mtime, status, duration, title, artist, album, genre, "
    "error, error_reason, feature_version, analysed_at"
)


def _key(path: str) -> bytes:
    return os.fsencode(path)


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=np.float32).tobytes()


def _track(row: sqlite3.Row) -> Track:
    values = dict(row)
    values["path"] = os.fsdecode(values["path"])
    return Track(**values)


class SQLiteCatalog:
    """A catalog in one SQLite file.

    Parameters
    ----------
    path : path-like
        The database file; its folder is created if needed.
    create : bool
        If false, a missing file is an error instead of a new catalog.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        if not self.path.exists():
            if not create:
                raise CatalogError(f"{self.path}: no catalog here (run `soundalike ingest` first)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(f"{self.path.parent}: cannot create the library folder ({exc.strerror})") from exc
        self._local = threading.local()
        self._migrate()

    # -- connections and transactions ---------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise CatalogError(f"{self.path}: cannot open the catalog ({exc})") from exc
            self._local.conn = conn
            self._local.depth = 0
        return conn

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested uses join the outermost one.

        With ``write=False``, a read transaction: every query in it sees the catalog as it was at
        its first query (WAL snapshot), whatever other processes commit meanwhile.
        """
        conn = self._conn
        if self._local.depth == 0:
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            except sqlite3.Error as exc:
                raise CatalogError(f"{self.path}: cannot write ({exc})") from exc
        self._local.depth += 1
        try:
            yield conn
        except BaseException:
            self._local.depth -= 1
            if self._local.depth == 0:
                conn.execute("ROLLBACK")
            raise
        else:
            self._local.depth -= 1
            if self._local.depth == 0:
                conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: {exc}") from exc

    def _migrate(self) -> None:
        try:
            with self.transaction() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > len(_MIGRATIONS):
                    raise CatalogError(
                        f"{self.path}: catalog schema version {version} is newer than this soundalike "
                        f"understands (expected at most {len(_MIGRATIONS)}); upgrade soundalike"
                    )
                for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                    for statement in script.split(";") if isinstance(script, str) else script:
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: not a usable soundalike catalog ({exc})") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- writing ------------------------------------------------------------------------------

    def write(self, records: Sequence[TrackRecord]) -> None:
        if not records:
            return
        now = time.time()
        with self.transaction() as conn:
            changed = False
            for rec in records:
                old = conn.execute(
                    "SELECT id, status FROM tracks WHERE path = ?", (_key(rec.path),)
                ).fetchone()
                if old is not None:
                    changed = changed or old["status"] == OK
                    conn.execute("DELETE FROM tracks WHERE id = ?", (old["id"],))
                vector = _blob(rec.vector) if rec.vector is not None else None
                cur = conn.execute(
                    "INSERT INTO tracks (id, path, path_text, content_hash, size, mtime, status, duration, "
                    "title, artist, album, genre, error, error_reason, feature_version, vector, analysed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.track_id,  # None: SQLite assigns the next id
                        _key(rec.path),
                        display_path(rec.path),
                        rec.content_hash,
                        rec.size,
                        rec.mtime,
                        rec.status,
                        rec.duration,
                        rec.tags.get("title"),
                        rec.tags.get("artist"),
                        rec.tags.get("album"),
                        rec.tags.get("genre"),
                        rec.error,
                        rec.error_reason,
                        rec.feature_version,
                        vector,
                        now if rec.analysed_at is None else rec.analysed_at,
                    ),
                )
                if rec.status == OK and rec.segments is not None and rec.segment_starts is not None:
                    conn.execute(
                        "INSERT INTO segments (track_id, n, starts, vectors) VALUES (?, ?, ?, ?)",
                        (cur.lastrowid, len(rec.segment_starts), _blob(rec.segment_starts), _blob(rec.segments)),
                    )
                changed = changed or rec.status == OK
            if changed:
                self._bump(conn)

    def remove(self, paths: Iterable[str]) -> int:
        removed = 0
        with self.transaction() as conn:
            for path in paths:
                removed += conn.execute("DELETE FROM tracks WHERE path = ?", (_key(path),)).rowcount
            if removed:
                self._bump(conn)
        return removed

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- reading ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def meta_items(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._query("SELECT key, value FROM meta ORDER BY key")}

    def revision(self) -> int:
        return int(self.get_meta("revision") or 0)

    def file_states(self) -> dict[str, FileState]:
        rows = self._query(
            "SELECT path, size, mtime, content_hash, status, feature_version FROM tracks INDEXED BY tracks_files"
        )
        return {
            os.fsdecode(r["path"]): FileState(
                path=os.fsdecode(r["path"]),
                size=r["size"],
                mtime=r["mtime"],
                content_hash=r["content_hash"],
                status=r["status"],
                feature_version=r["feature_version"],
            )
            for r in rows
        }

    def find_analysis(self, content_hash: str, feature_version: int) -> TrackRecord | None:
        rows = self._query(
            "SELECT t.*, s.starts, s.vectors AS seg FROM tracks t LEFT JOIN segments s ON s.track_id = t.id "
            "WHERE t.content_hash = ? AND t.status = 'ok' AND t.feature_version = ? LIMIT 1",
            (content_hash, feature_version),
        )
        if not rows:
            return None
        r = rows[0]
        starts = np.frombuffer(r["starts"], dtype=np.float32) if r["starts"] is not None else None
        segments = (
            np.frombuffer(r["seg"], dtype=np.float32).reshape(len(starts), -1)
            if r["seg"] is not None and starts is not None
            else None
        )
        tags = {k: r[k] for k in ("title", "artist", "album", "genre") if r[k]}
        return TrackRecord(
            path=os.fsdecode(r["path"]),
            content_hash=r["content_hash"],
            size=r["size"],
            mtime=r["mtime"],
            status=OK,
            duration=r["duration"],
            tags=tags,
            feature_version=r["feature_version"],
            vector=np.frombuffer(r["vector"], dtype=np.float32),
            segments=segments,
            segment_starts=starts,
        )

    def stats(self, feature_version: int) -> CatalogStats:
        # Grouped on the covering index tracks_stats: a walk of a small index, never of the table.
        rows = self._query(
            "SELECT status, feature_version, COUNT(*) AS n, TOTAL(duration) AS seconds "
            "FROM tracks INDEXED BY tracks_stats GROUP BY status, feature_version"
        )
        ok = sum(r["n"] for r in rows if r["status"] == OK and r["feature_version"] == feature_version)
        return CatalogStats(
            tracks=ok,
            failed=sum(r["n"] for r in rows if r["status"] != OK),
            stale=sum(r["n"] for r in rows if r["status"] == OK and r["feature_version"] != feature_version),
            seconds=float(sum(r["seconds"] for r in rows if r["status"] == OK and r["feature_version"] == feature_version)),
            revision=self.revision(),
        )

    def get(self, track_id: int) -> Track | None:
        rows = self._query(f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE id = ?", (int(track_id),))
        return _track(rows[0]) if rows else None

    def get_by_path(self, path: str) -> Track | None:
        rows = self._query(f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE path = ?", (_key(path),))
        return _track(rows[0]) if rows else None

    @staticmethod
    def _where(status: str | None, query: str | None) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if query and len(query) >= TRIGRAM:
            # A quoted FTS5 phrase of trigrams: the rows holding ``query`` as a substring of any
            # column, found in the index (case-insensitively, as LIKE does).
            clauses.append("id IN (SELECT rowid FROM tracks_text WHERE tracks_text MATCH ?)")
            params.append('"' + query.replace('"', '""') + '"')
        elif query:
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like = "%" + escaped + "%"
            clauses.append(
                "(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in ("title", "artist", "album", "genre", "path_text")) + ")"
            )
            params.extend([like] * 5)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def tracks(
        self, *, status: str | None = OK, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[Track]:
        where, params = self._where(status, query)
        sql = f"SELECT {_TRACK_COLUMNS} FROM tracks {where} ORDER BY id LIMIT ? OFFSET ?"
        return [_track(r) for r in self._query(sql, [*params, -1 if limit is None else limit, offset])]

    def count(self, *, status: str | None = OK, query: str | None = None) -> int:
        where, params = self._where(status, query)
        return int(self._query(f"SELECT COUNT(*) AS n FROM tracks {where}", params)[0]["n"])

    def page(
        self, *, status: str | None = OK, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[Track]]:
        with self.transaction(write=False):
            return self.count(status=status, query=query), self.tracks(status=status, query=query, offset=offset, limit=limit)

    def iter_vectors(
        self, feature_version: int, *, chunk: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = 0
        while True:
            rows = self._query(
                "SELECT id, vector FROM tracks WHERE status = 'ok' AND feature_version = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (feature_version, last, chunk),
            )
            if not rows:
                return
            ids = np.array([r["id"] for r in rows], dtype=np.int64)
            yield ids, np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
            last = int(ids[-1])

    def iter_segments(self, feature_version: int, *, chunk: int = 1024) -> Iterator[list[Segments]]:
        last = 0
        while True:
            rows = self._query(
                "SELECT s.track_id, s.n, s.starts, s.vectors FROM segments s JOIN tracks t ON t.id = s.track_id "
                "WHERE t.status = 'ok' AND t.feature_version = ? AND s.track_id > ? ORDER BY s.track_id LIMIT ?",
                (feature_version, last, chunk),
            )
            if not rows:
                return
            yield [
                Segments(
                    track_id=r["track_id"],
                    starts=np.frombuffer(r["starts"], dtype=np.float32),
                    vectors=np.frombuffer(r["vectors"], dtype=np.float32).reshape(r["n"], -1),
                )
                for r in rows
            ]
            last = int(rows[-1]["track_id"])

    def vectors(self, track_ids: Sequence[int]) -> np.ndarray:
        ids = [int(i) for i in track_ids]
        found: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for r in self._query(f"SELECT id, vector FROM tracks WHERE id IN ({marks}) AND vector IS NOT NULL", part):
                found[r["id"]] = np.frombuffer(r["vector"], dtype=np.float32)
        missing = [i for i in ids if i not in found]
        if missing:
            raise CatalogError(f"{self.path}: no vector for track ids {missing[:5]}")
        return np.stack([found[i] for i in ids]) if ids else np.zeros((0, 0), dtype=np.float32)

    def check(self) -> list[str]:
        problems: list[str] = []
        try:
            result = self._conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [f"integrity check failed: {exc}"]
        problems += [f"sqlite: {r[0]}" for r in result if r[0] != "ok"]
        problems += [f"foreign key: {tuple(r)}" for r in self._conn.execute("PRAGMA foreign_key_check").fetchall()]
        rows = self._query(
            "SELECT COUNT(*) AS n FROM tracks t LEFT JOIN segments s ON s.track_id = t.id "
            "WHERE t.status = 'ok' AND (t.vector IS NULL OR s.track_id IS NULL)"
        )
        if rows[0]["n"]:
            problems.append(f"{rows[0]['n']} analysed tracks lack a vector or segments")
        dims = self._query("SELECT feature_version, COUNT(DISTINCT LENGTH(vector)) AS n FROM tracks WHERE status='ok' GROUP BY feature_version")
        problems += [
            f"feature version {r['feature_version']}: vectors of {r['n']} different lengths" for r in dims if r["n"] > 1
        ]
        dup = self._query("SELECT COUNT(*) - COUNT(DISTINCT path) AS n FROM tracks")
        if dup[0]["n"]:
            problems.append(f"{dup[0]['n']} duplicate paths")
        return problems
