"""Move a catalog between backends (SQLite, MongoDB) without loss, and prove it.

Everything a catalog holds travels: every track, analysed or failed, of any feature version, with
its id, path (bytes, whatever their encoding), file facts, tags, error and reason, analysis time,
vector and segments; and the meta values. Ids are kept, so links and an index built on the source
stay meaningful; the target's revision becomes the larger of the two, so it never goes back.

The export file is gzip-compressed JSON Lines::

    {"format": "soundalike-catalog", "version": 1, "tracks": N, "meta": {...}, ...}   header
    {"id": 1, "path": "...", "vector": "<base64 float32 little-endian>", ...}          one per track
    {"end": true, "tracks": N}                                                          end marker

A file without its end marker (a copy cut short) is refused before anything is written.
After an import or a copy, every record and vector of the target is compared with the source.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from soundalike.catalog import OK, Catalog, TrackRecord, display_path
from soundalike.errors import CatalogError
from soundalike.vocabulary import Progress

log = logging.getLogger(__name__)

FORMAT = "soundalike-catalog"
FORMAT_VERSION = 1

"""``progress(event, done, total)``, as for ingest: ``"start"``, ``"file"``, ``"done"``."""


@dataclass(frozen=True)
class TransferSummary:
    """What was moved."""

    tracks: int
    analysed: int
    failed: int
    revision: int


# -- reading a whole catalog -------------------------------------------------------------------


class _Merge:
    """Values keyed by ascending track id, taken in ascending order (a merge join)."""

    def __init__(self, items: Iterator[tuple[int, Any]]) -> None:
        self._items = items
        self._head: tuple[int, Any] | None = next(items, None)

    def take(self, track_id: int) -> Any:
        while self._head is not None and self._head[0] < track_id:
            self._head = next(self._items, None)
        if self._head is not None and self._head[0] == track_id:
            value = self._head[1]
            self._head = next(self._items, None)
            return value
        return None


def _vector_items(catalog: Catalog, version: int) -> Iterator[tuple[int, np.ndarray]]:
    for ids, vectors in catalog.iter_vectors(version):
        yield from zip((int(i) for i in ids), vectors, strict=True)


def _segment_items(catalog: Catalog, version: int) -> Iterator[tuple[int, Any]]:
    for batch in catalog.iter_segments(version):
        for seg in batch:
            yield seg.track_id, seg


def records(catalog: Catalog, *, page: int = 500) -> Iterator[TrackRecord]:
    """Every track of ``catalog``, whole (id, analysis time, vector, segments), in id order.

    Streams: vectors and segments are read in chunks alongside the tracks, never all at once.
    """
    vectors: dict[int, _Merge] = {}
    segments: dict[int, _Merge] = {}
    offset = 0
    while True:
        tracks = catalog.tracks(status=None, offset=offset, limit=page)
        if not tracks:
            return
        offset += len(tracks)
        for t in tracks:
            vector = seg = None
            if t.status == OK:
                if t.feature_version is not None:
                    version = t.feature_version
                    if version not in vectors:
                        vectors[version] = _Merge(_vector_items(catalog, version))
                        segments[version] = _Merge(_segment_items(catalog, version))
                    vector = vectors[version].take(t.id)
                    seg = segments[version].take(t.id)
                if vector is None:
                    vector = catalog.vectors([t.id])[0]
            tags = {k: v for k in ("title", "artist", "album", "genre") if (v := getattr(t, k))}
            yield TrackRecord(
                path=t.path,
                content_hash=t.content_hash,
                size=t.size,
                mtime=t.mtime,
                status=t.status,
                duration=t.duration,
                tags=tags,
                error=t.error,
                error_reason=t.error_reason,
                feature_version=t.feature_version,
                vector=vector,
                segments=None if seg is None else seg.vectors,
                segment_starts=None if seg is None else seg.starts,
                track_id=t.id,
                analysed_at=t.analysed_at,
            )


# -- the export file ---------------------------------------------------------------------------


def _b64(array: np.ndarray | None) -> str | None:
    if array is None:
        return None
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _unb64(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def encode(rec: TrackRecord) -> dict[str, Any]:
    """One track as a JSON-able dict (the path's bytes kept when they are not UTF-8)."""
    raw = os.fsencode(rec.path)
    out: dict[str, Any] = {"id": rec.track_id, "path": display_path(rec.path)}
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        out["path_bytes"] = base64.b64encode(raw).decode("ascii")
    out |= {
        "content_hash": rec.content_hash,
        "size": rec.size,
        "mtime": rec.mtime,
        "status": rec.status,
        "duration": rec.duration,
        "tags": dict(rec.tags),
        "error": rec.error,
        "error_reason": rec.error_reason,
        "feature_version": rec.feature_version,
        "analysed_at": rec.analysed_at,
        "vector": _b64(rec.vector),
    }
    if rec.segments is not None and rec.segment_starts is not None:
        segments = np.atleast_2d(rec.segments)
        out["segment_dim"] = int(segments.shape[1]) if segments.size else 0
        out["segment_starts"] = _b64(rec.segment_starts)
        out["segments"] = _b64(segments)
    return out


def decode(doc: dict[str, Any]) -> TrackRecord:
    """The inverse of :func:`encode`."""
    path = os.fsdecode(base64.b64decode(doc["path_bytes"])) if "path_bytes" in doc else doc["path"]
    starts = _unb64(doc.get("segment_starts"))
    segments = _unb64(doc.get("segments"))
    if segments is not None and starts is not None:
        segments = segments.reshape(len(starts), int(doc["segment_dim"]))
    return TrackRecord(
        path=path,
        content_hash=doc["content_hash"],
        size=doc["size"],
        mtime=doc["mtime"],
        status=doc["status"],
        duration=doc["duration"],
        tags=dict(doc.get("tags") or {}),
        error=doc.get("error"),
        error_reason=doc.get("error_reason"),
        feature_version=doc.get("feature_version"),
        vector=_unb64(doc.get("vector")),
        segments=segments,
        segment_starts=starts,
        track_id=doc["id"],
        analysed_at=doc.get("analysed_at"),
    )


def export_catalog(catalog: Catalog, path: str | os.PathLike[str], *, progress: Progress | None = None) -> TransferSummary:
    """Write every track and meta value of ``catalog`` to ``path`` (replaced atomically).

    Raises
    ------
    CatalogError
        When the file cannot be written.
    """
    target = Path(path)
    total = catalog.count(status=None)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "source": catalog.location,
        "exported_at": time.time(),
        "tracks": total,
        "meta": catalog.meta_items(),
    }
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    n = analysed = 0
    if progress:
        progress("start", 0, total)
    try:
        with gzip.open(tmp, "wt", encoding="utf-8") as out:
            out.write(json.dumps(header) + "\n")
            for rec in records(catalog):
                out.write(json.dumps(encode(rec)) + "\n")
                n += 1
                analysed += rec.status == OK
                if progress:
                    progress("file", n, total)
            out.write(json.dumps({"end": True, "tracks": n}) + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CatalogError(f"{target}: cannot write the export ({exc.strerror or exc})") from exc
    if progress:
        progress("done", n, total)
    return TransferSummary(tracks=n, analysed=analysed, failed=n - analysed, revision=catalog.revision())


@dataclass(frozen=True)
class ExportHeader:
    """The first line of an export file."""

    source: str
    tracks: int
    meta: dict[str, str]


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Line number and parsed JSON of each line of a gzip'd JSON Lines file."""
    number = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):  # noqa: B007 - read in the handlers
                yield number, json.loads(line)
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: no such export file") from exc
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: line {number} is not JSON ({exc.msg})") from exc
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: not a readable soundalike export (damaged or cut short: {exc})") from exc


def read_export(path: str | os.PathLike[str]) -> tuple[ExportHeader, Iterator[TrackRecord]]:
    """The header of an export file, and an iterator over its tracks (checked as they are read).

    Raises
    ------
    CatalogError
        When the file is not an export of a version this soundalike reads, or is damaged or cut
        short (the iterator raises when it reaches the damage).
    """
    source = Path(path)
    lines = _lines(source)
    first = next(lines, None)
    if first is None or first[1].get("format") != FORMAT:
        raise CatalogError(f"{source}: not a soundalike catalog export (no '{FORMAT}' header)")
    head = first[1]
    if head.get("version") != FORMAT_VERSION:
        raise CatalogError(
            f"{source}: export format version {head.get('version')} is not understood "
            f"(expected {FORMAT_VERSION}); use the soundalike that wrote it, or a newer one"
        )
    header = ExportHeader(source=str(head.get("source", "")), tracks=int(head["tracks"]), meta=dict(head["meta"]))

    def tracks() -> Iterator[TrackRecord]:
        count = 0
        for number, doc in lines:
            if doc.get("end"):
                if doc.get("tracks") != count:
                    raise CatalogError(f"{source}: the end marker counts {doc.get('tracks')} tracks, the file holds {count}")
                return
            try:
                rec = decode(doc)
            except (KeyError, TypeError, ValueError) as exc:
                raise CatalogError(f"{source}: line {number} is not a track record ({type(exc).__name__}: {exc})") from exc
            count += 1
            yield rec
        raise CatalogError(f"{source}: cut short after {count} tracks (no end marker)")

    return header, tracks()


def _check_empty(catalog: Catalog) -> None:
    held = catalog.count(status=None)
    if held:
        raise CatalogError(
            f"{catalog.location} already holds {held} tracks; import into an empty catalog "
            "(a new --catalog URI or library folder)"
        )


def _load(
    source: Iterator[TrackRecord], target: Catalog, total: int, batch: int, progress: Progress | None
) -> tuple[int, int]:
    n = analysed = 0
    pending: list[TrackRecord] = []
    if progress:
        progress("start", 0, total)
    for rec in source:
        pending.append(rec)
        n += 1
        analysed += rec.status == OK
        if len(pending) >= batch:
            target.write(pending)
            pending.clear()
            if progress:
                progress("file", n, total)
    target.write(pending)
    if progress:
        progress("done", n, total)
    return n, analysed


def _finish_meta(meta: dict[str, str], target: Catalog) -> int:
    """Copy meta values; the revision becomes the larger of the source's and the target's."""
    for key, value in sorted(meta.items()):
        if key != "revision":
            target.set_meta(key, value)
    revision = max(int(meta.get("revision", 0)), target.revision())
    target.set_meta("revision", str(revision))
    return revision


def import_catalog(
    path: str | os.PathLike[str], target: Catalog, *, batch: int = 256, progress: Progress | None = None
) -> TransferSummary:
    """Load an export file into an empty catalog, then compare every record and vector with the file.

    The file is read through once before anything is written, so a damaged file changes nothing.

    Raises
    ------
    CatalogError
        When the file is damaged, the target is not empty, or the comparison finds a difference.
    """
    _check_empty(target)
    header, tracks = read_export(path)
    checked = sum(1 for _ in tracks)
    header, tracks = read_export(path)
    n, analysed = _load(tracks, target, checked, batch, progress)
    revision = _finish_meta(header.meta, target)
    problems = compare_records(read_export(path)[1], records(target))
    problems += compare_meta(header.meta, target.meta_items())
    if problems:
        raise CatalogError(f"{target.location}: the import does not match {path}: " + "; ".join(problems))
    return TransferSummary(tracks=n, analysed=analysed, failed=n - analysed, revision=revision)


def copy_catalog(
    source: Catalog, target: Catalog, *, batch: int = 256, progress: Progress | None = None
) -> TransferSummary:
    """Copy every track and meta value of ``source`` into the empty ``target``, then compare them.

    Raises
    ------
    CatalogError
        When the target is not empty, or the comparison finds a difference.
    """
    _check_empty(target)
    n, analysed = _load(records(source), target, source.count(status=None), batch, progress)
    revision = _finish_meta(source.meta_items(), target)
    problems = compare(source, target)
    if problems:
        raise CatalogError(f"{target.location}: the copy does not match {source.location}: " + "; ".join(problems))
    return TransferSummary(tracks=n, analysed=analysed, failed=n - analysed, revision=revision)


# -- comparing ---------------------------------------------------------------------------------

_ARRAYS = ("vector", "segments", "segment_starts")


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def record_differences(a: TrackRecord, b: TrackRecord) -> list[str]:
    """Fields in which two records differ (vectors compared bit for bit as float32)."""
    out = []
    for f in fields(TrackRecord):
        x, y = getattr(a, f.name), getattr(b, f.name)
        same = _same_array(x, y) if f.name in _ARRAYS else x == y
        if not same:
            out.append(f.name)
    return out


def compare_records(a: Iterator[TrackRecord], b: Iterator[TrackRecord], *, limit: int = 10) -> list[str]:
    """Differences between two streams of records in id order (at most ``limit`` reported)."""
    problems: list[str] = []
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and (x.track_id or 0) < (y.track_id or 0)):
            assert x is not None
            problems.append(f"track {x.track_id} ({display_path(x.path)}) is only on one side")
            x = next(a, None)
        elif x is None or (y.track_id or 0) < (x.track_id or 0):
            problems.append(f"track {y.track_id} ({display_path(y.path)}) is only on one side")
            y = next(b, None)
        else:
            diff = record_differences(x, y)
            if diff:
                problems.append(f"track {x.track_id} ({display_path(x.path)}) differs in {', '.join(diff)}")
            x, y = next(a, None), next(b, None)
        if len(problems) >= limit:
            problems.append("(stopped comparing)")
            break
    return problems


def compare_meta(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Meta keys whose values differ (the revision aside: it only ever grows)."""
    keys = (set(a) | set(b)) - {"revision"}
    return [f"meta {k!r}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(keys) if a.get(k) != b.get(k)]


def compare(a: Catalog, b: Catalog, *, limit: int = 10) -> list[str]:
    """Every record, vector, segment and meta value of two catalogs compared; empty when identical."""
    return compare_records(records(a), records(b), limit=limit) + compare_meta(a.meta_items(), b.meta_items())


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TransferSummary",
    "compare",
    "compare_records",
    "copy_catalog",
    "export_catalog",
    "import_catalog",
    "read_export",
    "records",
]
