"""The MongoDB catalog: the same interface as the SQLite one, for catalogs that outgrow a file.

``--catalog mongodb://HOST[:PORT]/DB`` (or ``mongodb+srv://…``, or ``SOUNDALIKE_CATALOG``) keeps the
catalog in database ``DB`` (default ``soundalike``) through pymongo. Collections:

``tracks``
    One document per file: the track's fields, ``id`` (an integer, like SQLite's row id),
    ``path`` as the file system's bytes (BSON binary, so names that are not valid UTF-8 survive) and
    ``path_text`` (printable, searched), the vector as BSON binary float32, and the segment starts
    and vectors in the same document, so a track and its segments are written in one atomic
    document write: a killed ingest never leaves a half-written track, even on a server without
    multi-document transactions. Indexes: ``path`` unique, ``id`` unique, and ``content_hash``
    (with status and feature version) **not** unique: copies of one recording at two paths share
    a content hash and are two tracks.
``meta``
    ``{_id: key, value}``; the ``revision`` counter lives here, as in SQLite's meta table.
``state``
    The schema version and the last track id handed out (ids come from this counter, never reused).

Writes are ordered bulk upserts keyed by path, one round trip per batch. There is no transaction
across documents, so the revision is bumped both before and after a batch: whatever moment a
writer is killed at, a reader never pairs the new tracks with the old revision.

The tests run this class against an in-process stand-in for a server (``tests/mongo_stand_in.py``,
a subclass that overrides :meth:`MongoCatalog._connect`); nothing of it is in the product.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from soundalike.catalog import OK, CatalogStats, FileState, Segments, Track, TrackRecord
from soundalike.errors import CatalogError
from soundalike.vocabulary import display_path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""1: the first; 2 (issue 15): ``grams``, the trigrams searched by an index instead of a scan."""
DEFAULT_DATABASE = "soundalike"

_TRACK_FIELDS = (
    "id", "path", "content_hash", "size", "mtime", "status", "duration", "title", "artist", "album",
    "genre", "error", "error_reason", "feature_version", "analysed_at",
)  # fmt: skip
_TRACK_PROJECTION = {name: 1 for name in _TRACK_FIELDS} | {"_id": 0}
_SEARCHED = ("title", "artist", "album", "genre", "path_text")
TRIGRAM = 3
"""Searches of at least this many characters are answered from the ``grams`` index (shorter ones
scan, as SQLite's trigram index does)."""
_MIGRATION_BATCH = 1000


def trigrams(texts: Iterable[str | None]) -> list[str]:
    """The distinct lower-case trigrams of each text (none spanning two texts), sorted.

    A track's ``grams`` hold those of its searched fields; a search for ``q`` first takes the
    tracks whose grams include all of ``q``'s (an index lookup), then checks the substring itself.
    """
    grams: set[str] = set()
    for text in texts:
        if text:
            low = text.lower()
            grams.update(low[i : i + TRIGRAM] for i in range(len(low) - TRIGRAM + 1))
    return sorted(grams)



def redact(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for messages and ``location``)."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", uri)


def _key(path: str) -> Any:
    """The path as BSON binary: the file system's bytes, whatever their encoding."""
    from bson.binary import Binary

    return Binary(os.fsencode(path))


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def _floats(blob: Any) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f4")


def _track(doc: Mapping[str, Any]) -> Track:
    values: dict[str, Any] = {name: doc.get(name) for name in _TRACK_FIELDS}
    values["path"] = os.fsdecode(bytes(doc["path"]))
    return Track(**values)


class MongoCatalog:
    """A catalog in a MongoDB database.

    Parameters
    ----------
    uri : str
        ``mongodb://[USER:PASSWORD@]HOST[:PORT]/DB[?OPTIONS]`` or ``mongodb+srv://…``.
    create : bool
        If false, a database without a soundalike catalog is an error instead of a new catalog.
    database : str, optional
        Use this database instead of the one named in ``uri``.
    timeout_s : float
        How long to wait for the server when connecting, unless the URI sets
        ``serverSelectionTimeoutMS``.

    Raises
    ------
    CatalogError
        When the server cannot be reached, or the database holds a newer or foreign catalog.
    """

    def __init__(
        self, uri: str, *, create: bool = True, database: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.uri = uri
        self.location = redact(uri)
        try:
            self._client, named = self._connect(uri, timeout_s)
            db_name = database or named
            self._db = self._client[db_name]
            self._tracks = self._db["tracks"]
            self._meta = self._db["meta"]
            self._state = self._db["state"]
            self.database = db_name
            if database is not None:
                self.location = f"{self.location} (database {db_name})"
            self._open(create)
        except CatalogError:
            raise
        except Exception as exc:  # pymongo.errors.*, ValueError/ConfigurationError for a bad URI
            raise CatalogError(f"{self.location}: cannot open the MongoDB catalog ({_reason(exc)})") from exc

    # -- opening ------------------------------------------------------------------------------

    def _connect(self, uri: str, timeout_s: float) -> tuple[Any, str]:
        """A client for ``uri`` and the database the URI names (default ``soundalike``)."""
        import pymongo

        options: dict[str, Any] = {}
        if "serverselectiontimeoutms" not in uri.lower():
            options["serverSelectionTimeoutMS"] = int(timeout_s * 1000)
        client = pymongo.MongoClient(uri, **options)
        return client, client.get_default_database(DEFAULT_DATABASE).name

    def _is_driver_error(self, exc: BaseException) -> bool:
        import pymongo.errors

        return isinstance(exc, pymongo.errors.PyMongoError)

    def _open(self, create: bool) -> None:
        db = self._db
        db.command("ping")
        schema = db["state"].find_one({"_id": "schema"})
        if schema is None:
            if not create:
                raise CatalogError(f"{self.location}: no soundalike catalog in this database (run `soundalike ingest` first)")
            if "tracks" in db.list_collection_names() and db["tracks"].estimated_document_count():
                raise CatalogError(f"{self.location}: collection 'tracks' exists but is not a soundalike catalog")
            self._create_schema()
            return
        version = int(schema.get("version", 0))
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.location}: catalog schema version {version} is newer than this soundalike "
                f"understands (expected at most {SCHEMA_VERSION}); upgrade soundalike"
            )
        if version < 2:
            self._add_grams()

    def _add_grams(self) -> None:
        """Schema 1 → 2: every track gets its ``grams`` (in batches), then their index."""
        from pymongo import ASCENDING, UpdateOne

        projection = {name: 1 for name in _SEARCHED} | {"_id": 1, "id": 1}
        done, last = 0, None
        while True:  # walked by id (its unique index), so each batch is one index range, not a scan
            where: dict[str, Any] = {} if last is None else {"id": {"$gt": last}}
            batch = list(self._tracks.find(where, projection).sort("id", ASCENDING).limit(_MIGRATION_BATCH))
            if not batch:
                break
            self._bulk_write(
                [UpdateOne({"_id": d["_id"]}, {"$set": {"grams": trigrams(d.get(n) for n in _SEARCHED)}}) for d in batch]
            )
            done, last = done + len(batch), batch[-1]["id"]
        self._tracks.create_index([("grams", ASCENDING)], name="grams")
        self._db["state"].update_one({"_id": "schema"}, {"$set": {"version": SCHEMA_VERSION}}, upsert=True)
        log.info("%s: catalog schema 2: %d tracks made searchable by index", self.location, done)

    def _create_schema(self) -> None:
        import pymongo

        tracks = self._db["tracks"]
        tracks.create_index([("path", pymongo.ASCENDING)], unique=True, name="path_unique")
        tracks.create_index([("id", pymongo.ASCENDING)], unique=True, name="id_unique")
        # Not unique: copies of one recording at several paths share a content hash.
        tracks.create_index(
            [("content_hash", pymongo.ASCENDING), ("status", pymongo.ASCENDING), ("feature_version", pymongo.ASCENDING)],
            name="content_hash",
        )
        tracks.create_index(
            [("status", pymongo.ASCENDING), ("feature_version", pymongo.ASCENDING), ("id", pymongo.ASCENDING)],
            name="status_version_id",
        )
        tracks.create_index([("grams", pymongo.ASCENDING)], name="grams")
        self._db["meta"].update_one({"_id": "revision"}, {"$setOnInsert": {"value": 0}}, upsert=True)
        self._db["state"].update_one({"_id": "track_id"}, {"$setOnInsert": {"last": 0}}, upsert=True)
        self._db["state"].update_one({"_id": "schema"}, {"$set": {"version": SCHEMA_VERSION}}, upsert=True)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn driver errors into one-line CatalogErrors that name the catalog."""
        try:
            yield
        except CatalogError:
            raise
        except Exception as exc:
            if self._is_driver_error(exc):
                raise CatalogError(f"{self.location}: cannot {doing} ({_reason(exc)})") from exc
            raise

    def close(self) -> None:
        self._client.close()

    # -- writing ------------------------------------------------------------------------------

    def write(self, records: Sequence[TrackRecord]) -> None:
        if not records:
            return
        from pymongo import ReplaceOne

        now = time.time()
        keys = [_key(r.path) for r in records]
        with self._errors("write tracks"):
            replaced_ok = self._tracks.count_documents({"path": {"$in": keys}, "status": OK}) > 0
            changed = replaced_ok or any(r.status == OK for r in records)
            ids = self._assign_ids(records)
            if changed:
                self._bump()
            ops = [
                ReplaceOne({"path": key}, self._document(rec, key, track_id, now), upsert=True)
                for rec, key, track_id in zip(records, keys, ids, strict=True)
            ]
            self._bulk_write(ops)
            if changed:
                self._bump()

    def _assign_ids(self, records: Sequence[TrackRecord]) -> list[int]:
        """Ids for a batch: kept when given (a copied catalog), else new ones from the counter."""
        from pymongo import ReturnDocument

        fresh = sum(r.track_id is None for r in records)
        given = [r.track_id for r in records if r.track_id is not None]
        if given:
            self._state.update_one({"_id": "track_id"}, {"$max": {"last": int(max(given))}}, upsert=True)
        if not fresh:
            return [int(r.track_id) for r in records if r.track_id is not None]
        doc = self._state.find_one_and_update(
            {"_id": "track_id"}, {"$inc": {"last": fresh}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        next_id = int(doc["last"]) - fresh + 1
        out = []
        for r in records:
            if r.track_id is None:
                out.append(next_id)
                next_id += 1
            else:
                out.append(int(r.track_id))
        return out

    @staticmethod
    def _document(rec: TrackRecord, key: Any, track_id: int, now: float) -> dict[str, Any]:
        from bson.binary import Binary

        doc: dict[str, Any] = {
            "id": track_id,
            "path": key,
            "path_text": display_path(rec.path),
            "content_hash": rec.content_hash,
            "size": int(rec.size),
            "mtime": float(rec.mtime),
            "status": rec.status,
            "duration": None if rec.duration is None else float(rec.duration),
            "title": rec.tags.get("title"),
            "artist": rec.tags.get("artist"),
            "album": rec.tags.get("album"),
            "genre": rec.tags.get("genre"),
            "error": rec.error,
            "error_reason": rec.error_reason,
            "feature_version": rec.feature_version,
            "analysed_at": now if rec.analysed_at is None else float(rec.analysed_at),
            "vector": None,
            "dim": None,
        }
        doc["grams"] = trigrams(doc[name] for name in _SEARCHED)
        if rec.vector is not None:
            doc["vector"] = Binary(_blob(rec.vector))
            doc["dim"] = int(np.size(rec.vector))
        if rec.status == OK and rec.segments is not None and rec.segment_starts is not None:
            segments = np.atleast_2d(rec.segments)
            doc["seg_n"] = int(len(rec.segment_starts))
            doc["seg_dim"] = int(segments.shape[1]) if segments.size else 0
            doc["seg_starts"] = Binary(_blob(rec.segment_starts))
            doc["seg_vectors"] = Binary(_blob(segments))
        return doc

    def _bulk_write(self, ops: list[Any]) -> None:
        """One ordered bulk write: one round trip."""
        self._tracks.bulk_write(ops, ordered=True)

    def _bump(self) -> None:
        self._meta.update_one({"_id": "revision"}, {"$inc": {"value": 1}}, upsert=True)

    def remove(self, paths: Iterable[str]) -> int:
        keys = [_key(p) for p in paths]
        removed = 0
        with self._errors("remove tracks"):
            for start in range(0, len(keys), 1000):
                removed += self._tracks.delete_many({"path": {"$in": keys[start : start + 1000]}}).deleted_count
            if removed:
                self._bump()
        return removed

    def set_meta(self, key: str, value: str) -> None:
        stored: Any = value
        if key == "revision":  # kept as a number so that writers can increment it atomically
            try:
                stored = int(value)
            except ValueError as exc:
                raise CatalogError(f"{self.location}: revision must be an integer, got {value!r}") from exc
        with self._errors("write meta"):
            self._meta.update_one({"_id": key}, {"$set": {"value": stored}}, upsert=True)

    # -- reading ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._errors("read meta"):
            doc = self._meta.find_one({"_id": key})
        return None if doc is None else str(doc["value"])

    def meta_items(self) -> dict[str, str]:
        with self._errors("read meta"):
            return {str(d["_id"]): str(d["value"]) for d in self._meta.find().sort("_id", 1)}

    def revision(self) -> int:
        return int(self.get_meta("revision") or 0)

    def file_states(self) -> dict[str, FileState]:
        projection = {"_id": 0, "path": 1, "size": 1, "mtime": 1, "content_hash": 1, "status": 1, "feature_version": 1}
        out: dict[str, FileState] = {}
        with self._errors("read tracks"):
            for d in self._tracks.find({}, projection):
                path = os.fsdecode(bytes(d["path"]))
                out[path] = FileState(
                    path=path,
                    size=d["size"],
                    mtime=d["mtime"],
                    content_hash=d["content_hash"],
                    status=d["status"],
                    feature_version=d.get("feature_version"),
                )
        return out

    def find_analysis(self, content_hash: str, feature_version: int) -> TrackRecord | None:
        with self._errors("read tracks"):
            d = self._tracks.find_one(
                {"content_hash": content_hash, "status": OK, "feature_version": feature_version}, sort=[("id", 1)]
            )
        if d is None:
            return None
        starts = segments = None
        if d.get("seg_starts") is not None:
            starts = _floats(d["seg_starts"])
            segments = _floats(d["seg_vectors"]).reshape(d["seg_n"], -1)
        return TrackRecord(
            path=os.fsdecode(bytes(d["path"])),
            content_hash=d["content_hash"],
            size=d["size"],
            mtime=d["mtime"],
            status=OK,
            duration=d.get("duration"),
            tags={k: d[k] for k in ("title", "artist", "album", "genre") if d.get(k)},
            feature_version=d["feature_version"],
            vector=_floats(d["vector"]),
            segments=segments,
            segment_starts=starts,
        )

    def stats(self, feature_version: int) -> CatalogStats:
        current = {"status": OK, "feature_version": feature_version}
        with self._errors("read statistics"):
            ok = self._tracks.count_documents(current)
            failed = self._tracks.count_documents({"status": "failed"})
            stale = self._tracks.count_documents({"status": OK, "feature_version": {"$ne": feature_version}})
            total = list(
                self._tracks.aggregate(
                    [{"$match": current}, {"$group": {"_id": None, "seconds": {"$sum": "$duration"}}}]
                )
            )
        return CatalogStats(
            tracks=ok,
            failed=failed,
            stale=stale,
            seconds=float(total[0]["seconds"] or 0.0) if total else 0.0,
            revision=self.revision(),
        )

    def get(self, track_id: int) -> Track | None:
        with self._errors("read a track"):
            d = self._tracks.find_one({"id": int(track_id)}, _TRACK_PROJECTION)
        return _track(d) if d else None

    def get_by_path(self, path: str) -> Track | None:
        with self._errors("read a track"):
            d = self._tracks.find_one({"path": _key(path)}, _TRACK_PROJECTION)
        return _track(d) if d else None

    @staticmethod
    def _filter(status: str | None, query: str | None) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if status is not None:
            where["status"] = status
        if query:
            if len(query) >= TRIGRAM:  # found in the grams index; the pattern below checks the substring
                where["grams"] = {"$all": trigrams([query])}
            pattern = {"$regex": re.escape(query), "$options": "i"}
            where["$or"] = [{name: pattern} for name in _SEARCHED]
        return where

    def tracks(
        self, *, status: str | None = OK, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[Track]:
        with self._errors("read tracks"):
            cursor = self._tracks.find(self._filter(status, query), _TRACK_PROJECTION).sort("id", 1).skip(int(offset))
            if limit == 0:
                return []
            if limit is not None and limit > 0:  # a negative limit means none, as in SQLite
                cursor = cursor.limit(int(limit))
            return [_track(d) for d in cursor]

    def count(self, *, status: str | None = OK, query: str | None = None) -> int:
        with self._errors("count tracks"):
            return int(self._tracks.count_documents(self._filter(status, query)))

    def page(
        self, *, status: str | None = OK, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[Track]]:
        # No snapshot across two reads without a replica-set session: read the page first and never
        # report fewer tracks than it shows (writes only add or replace tracks between the reads).
        rows = self.tracks(status=status, query=query, offset=offset, limit=limit)
        return max(self.count(status=status, query=query), offset + len(rows)), rows

    def iter_vectors(
        self, feature_version: int, *, chunk: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = 0
        while True:
            with self._errors("read vectors"):
                docs = list(
                    self._tracks.find(
                        {"status": OK, "feature_version": feature_version, "id": {"$gt": last}},
                        {"_id": 0, "id": 1, "vector": 1},
                    )
                    .sort("id", 1)
                    .limit(chunk)
                )
            if not docs:
                return
            ids = np.array([d["id"] for d in docs], dtype=np.int64)
            yield ids, np.stack([_floats(d["vector"]) for d in docs])
            last = int(ids[-1])

    def iter_segments(self, feature_version: int, *, chunk: int = 1024) -> Iterator[list[Segments]]:
        last = 0
        while True:
            with self._errors("read segments"):
                docs = list(
                    self._tracks.find(
                        {"status": OK, "feature_version": feature_version, "id": {"$gt": last}, "seg_starts": {"$ne": None}},
                        {"_id": 0, "id": 1, "seg_n": 1, "seg_starts": 1, "seg_vectors": 1},
                    )
                    .sort("id", 1)
                    .limit(chunk)
                )
            if not docs:
                return
            yield [
                Segments(
                    track_id=d["id"],
                    starts=_floats(d["seg_starts"]),
                    vectors=_floats(d["seg_vectors"]).reshape(d["seg_n"], -1),
                )
                for d in docs
            ]
            last = int(docs[-1]["id"])

    def vectors(self, track_ids: Sequence[int]) -> np.ndarray:
        ids = [int(i) for i in track_ids]
        found: dict[int, np.ndarray] = {}
        with self._errors("read vectors"):
            for start in range(0, len(ids), 1000):
                part = ids[start : start + 1000]
                for d in self._tracks.find({"id": {"$in": part}, "vector": {"$ne": None}}, {"_id": 0, "id": 1, "vector": 1}):
                    found[d["id"]] = _floats(d["vector"])
        missing = [i for i in ids if i not in found]
        if missing:
            raise CatalogError(f"{self.location}: no vector for track ids {missing[:5]}")
        return np.stack([found[i] for i in ids]) if ids else np.zeros((0, 0), dtype=np.float32)

    def check(self) -> list[str]:
        problems: list[str] = []
        with self._errors("check the catalog"):
            indexes = self._tracks.index_information()
            for name, field in (("path_unique", "path"), ("id_unique", "id")):
                if not indexes.get(name, {}).get("unique"):
                    problems.append(f"tracks: the unique index on {field} is missing")
            if "grams" not in indexes:
                problems.append("tracks: the search index on grams is missing (searches scan every track)")
            lacking = self._tracks.count_documents({"status": OK, "$or": [{"vector": None}, {"seg_starts": None}]})
            if lacking:
                problems.append(f"{lacking} analysed tracks lack a vector or segments")
            # Lengths as written (``dim``, ``seg_dim``), grouped on the server: no blob leaves it.
            shapes = self._tracks.aggregate(
                [
                    {"$match": {"status": OK}},
                    {"$group": {"_id": "$feature_version", "dims": {"$addToSet": "$dim"}, "seg_dims": {"$addToSet": "$seg_dim"}}},
                ]
            )
            for group in shapes:
                if len(group["dims"]) > 1:
                    problems.append(f"feature version {group['_id']}: vectors of {len(group['dims'])} different lengths")
                if len(group["seg_dims"]) > 1:
                    problems.append(f"feature version {group['_id']}: segments of {len(group['seg_dims'])} different lengths")
            top = list(self._tracks.find({}, {"_id": 0, "id": 1}).sort("id", -1).limit(1))
            counter = self._state.find_one({"_id": "track_id"})
            last = int(counter["last"]) if counter else 0
            if top and int(top[0]["id"]) > last:
                problems.append(f"the track id counter ({last}) is behind the largest id ({top[0]['id']})")
            if self._meta.find_one({"_id": "revision"}) is None:
                problems.append("meta: the revision counter is missing")
        return problems


def _reason(exc: BaseException) -> str:
    """The useful part of a driver error, on one line."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # Server selection errors append timeouts and a topology dump to the cause.
    text = re.sub(r" \(configured timeouts:[^)]*\)", "", text).split(", Timeout:")[0]
    return text if len(text) < 300 else text[:297] + "..."
