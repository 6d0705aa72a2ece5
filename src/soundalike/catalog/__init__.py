"""The catalog: every track soundalike knows, its tags, analysis status and feature vectors.

One interface, :class:`Catalog`, with two implementations: :mod:`soundalike.catalog.sqlite` (the
default, one file inside the library folder) and :mod:`soundalike.catalog.mongo` (when a
``mongodb://`` URI is given). The catalog is also the feature cache: a file whose content hash and
feature version are already known is never analysed twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from soundalike.vocabulary import display_path

OK = "ok"
FAILED = "failed"


@dataclass(frozen=True)
class FileState:
    """What the catalog remembers of a file, enough to decide whether to analyse it again."""

    path: str
    size: int
    mtime: float
    content_hash: str
    status: str
    feature_version: int | None


@dataclass(frozen=True)
class Track:
    """One catalog entry (an analysed or failed file). Vectors are fetched separately."""

    id: int
    path: str
    content_hash: str
    size: int
    mtime: float
    status: str
    duration: float | None = None
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    error: str | None = None
    error_reason: str | None = None
    feature_version: int | None = None
    analysed_at: float | None = None

    @property
    def display_path(self) -> str:
        return display_path(self.path)

    @property
    def name(self) -> str:
        """The title if tagged, else the file name."""
        return self.title or os.path.basename(self.display_path)


@dataclass(frozen=True)
class TrackRecord:
    """A track as the ingest driver writes it: file facts, tags, and either features or an error."""

    path: str
    content_hash: str
    size: int
    mtime: float
    status: str
    duration: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_reason: str | None = None
    feature_version: int | None = None
    vector: np.ndarray | None = None
    segments: np.ndarray | None = None
    segment_starts: np.ndarray | None = None
    track_id: int | None = None
    """Keep this id (a catalog being copied); ``None``, as from ingest, lets the catalog assign one."""
    analysed_at: float | None = None
    """Keep this time (a catalog being copied); ``None`` means now."""


@dataclass(frozen=True)
class Segments:
    """The segment vectors of one track."""

    track_id: int
    starts: np.ndarray  # shape=(n,), seconds
    vectors: np.ndarray  # shape=(n, segment dim)


@dataclass(frozen=True)
class CatalogStats:
    tracks: int
    failed: int
    stale: int
    seconds: float
    revision: int


@runtime_checkable
class Catalog(Protocol):
    """The storage interface every backend implements (see ``tests/catalog/test_contract.py``)."""

    location: str

    def file_states(self) -> dict[str, FileState]:
        """Every known path with its size, mtime, hash, status and feature version."""
        ...

    def find_analysis(self, content_hash: str, feature_version: int) -> TrackRecord | None:
        """An analysed record with this content (any path), to reuse its features."""
        ...

    def write(self, records: Sequence[TrackRecord]) -> None:
        """Insert or replace these records (keyed by path) in one transaction."""
        ...

    def remove(self, paths: Iterable[str]) -> int:
        """Drop these paths; returns how many were dropped."""
        ...

    def revision(self) -> int:
        """A number that changes whenever the set of analysed vectors changes."""
        ...

    def stats(self, feature_version: int) -> CatalogStats: ...

    def get(self, track_id: int) -> Track | None: ...

    def get_by_path(self, path: str) -> Track | None: ...

    def tracks(
        self, *, status: str | None = OK, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[Track]:
        """Tracks ordered by id; ``query`` matches title, artist, album, genre or path."""
        ...

    def count(self, *, status: str | None = OK, query: str | None = None) -> int: ...

    def page(
        self, *, status: str | None = OK, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[Track]]:
        """``(count(...), tracks(...))`` read together, so that a concurrent write cannot make them disagree."""
        ...

    def iter_vectors(
        self, feature_version: int, *, chunk: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(track_ids [shape=(n,)], vectors [shape=(n, dim)])`` chunks of analysed tracks, by id."""
        ...

    def iter_segments(self, feature_version: int, *, chunk: int = 1024) -> Iterator[list[Segments]]:
        """Yield lists of :class:`Segments` of analysed tracks, by track id."""
        ...

    def vectors(self, track_ids: Sequence[int]) -> np.ndarray:
        """Raw vectors of these tracks, in the given order."""
        ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def meta_items(self) -> dict[str, str]:
        """Every meta key and value (the revision among them), to copy a catalog whole."""
        ...

    def check(self) -> list[str]:
        """Integrity problems found (empty when the catalog is sound)."""
        ...

    def close(self) -> None: ...


ROOTS_META = "music_roots"
"""Catalog meta key: JSON list of the folders ``ingest`` was given (absolute, none inside another)."""


def _outermost(folders: Iterable[str]) -> list[str]:
    """The folders that lie inside no other one of them, sorted."""
    unique = sorted(set(folders), key=len)
    out: list[str] = []
    for f in unique:
        if not any(f == o or f.startswith(o.rstrip(os.sep) + os.sep) for o in out):
            out.append(f)
    return sorted(out)


def add_music_roots(catalog: Catalog, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Remember the folders (or the folders of the files) ``ingest`` was given; returns all roots.

    The web pages and API show track paths relative to these (:func:`soundalike.vocabulary.relative_path`),
    never the server's own file system.
    """
    new = [os.path.abspath(os.fspath(p)) for p in paths]
    new = [p if os.path.isdir(p) else os.path.dirname(p) for p in new]
    roots = _outermost([*_recorded_roots(catalog), *new])
    if roots != _recorded_roots(catalog):
        catalog.set_meta(ROOTS_META, json.dumps(roots))
    return roots


def _recorded_roots(catalog: Catalog) -> list[str]:
    try:
        value = json.loads(catalog.get_meta(ROOTS_META) or "[]")
    except ValueError:
        return []
    return [str(v) for v in value if isinstance(v, str)] if isinstance(value, list) else []


def music_roots(catalog: Catalog) -> list[str]:
    """The library's music folders: those ``ingest`` was given, or for a catalog from before they were
    recorded, the deepest folder holding every track (none when that is the file system's root)."""
    recorded = _recorded_roots(catalog)
    if recorded:
        return recorded
    common: str | None = None
    offset, page = 0, 10_000
    while True:
        tracks = catalog.tracks(status=None, offset=offset, limit=page)
        for t in tracks:
            folder = os.path.dirname(t.path)
            try:
                common = folder if common is None else os.path.commonpath([common, folder])
            except ValueError:  # different drives
                return []
        if len(tracks) < page:
            break
        offset += page
    if common is None or os.path.dirname(common) == common:
        return []
    return [common]


def default_catalog_path(library: str | os.PathLike[str]) -> Path:
    return Path(library) / "catalog.sqlite"


URI_SCHEMES: dict[str, Callable[..., Catalog]] = {}
"""Further catalog URI prefixes → a class called as ``cls(uri, create=…)``; the tests plug their
in-process MongoDB stand-in in here. ``mongodb://`` and ``mongodb+srv://`` are built in."""


def open_catalog(library: str | os.PathLike[str], uri: str | None = None, *, create: bool = True) -> Catalog:
    """Open the catalog of a library folder: SQLite inside it, or MongoDB when ``uri`` says so.

    Raises
    ------
    CatalogError
        When the catalog cannot be opened (or does not exist and ``create`` is false).
    """
    for prefix, opener in URI_SCHEMES.items():
        if uri and uri.startswith(prefix):
            return opener(uri, create=create)
    if uri and uri.startswith(("mongodb://", "mongodb+srv://")):
        from soundalike.catalog.mongo import MongoCatalog

        return MongoCatalog(uri, create=create)
    from soundalike.catalog.sqlite import SQLiteCatalog

    path = Path(uri) if uri else default_catalog_path(library)
    return SQLiteCatalog(path, create=create)


__all__ = [
    "FAILED",
    "OK",
    "Catalog",
    "CatalogStats",
    "FileState",
    "Segments",
    "Track",
    "TrackRecord",
    "ROOTS_META",
    "URI_SCHEMES",
    "add_music_roots",
    "default_catalog_path",
    "display_path",
    "music_roots",
    "open_catalog",
]
