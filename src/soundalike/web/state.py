"""What the web app shares between requests: the live index, recent upload results, picture cache.

Everything here is created once by :func:`soundalike.web.create_app` and read by many request threads
(waitress runs several). The catalog and the loaded index are read-only; the only thing that changes
is *which* index is current, and that is one reference swapped under a lock.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from soundalike.catalog import Catalog
from soundalike.errors import SoundalikeError
from soundalike.index.bundle import LibraryIndex
from soundalike.library import Library
from soundalike.recommend import Recommendations, Recommender

log = logging.getLogger(__name__)


class LiveIndex:
    """The current :class:`Recommender`, switched to a newer index when one is published.

    ``soundalike ingest`` (another process) publishes a new index by replacing ``LIBRARY/index.json``
    atomically. At most once every ``check_every`` seconds a request looks at that file's identity
    (inode, mtime, size); when it changed, the new index is loaded and swapped in as one reference,
    while other requests go on with the previous one.

    Parameters
    ----------
    catalog : Catalog
    index : LibraryIndex or None
        The index loaded at start-up; None for a library with nothing analysed yet.
    library : Library or None
        The library whose published index is watched; None disables watching.
    max_duration : float
        Longest query file accepted, in seconds.
    check_every : float
        Seconds between looks at ``index.json``.
    """

    def __init__(
        self,
        catalog: Catalog,
        index: LibraryIndex | None,
        *,
        library: Library | None,
        max_duration: float,
        check_every: float = 1.0,
    ) -> None:
        self.catalog = catalog
        self.library = library
        self.max_duration = max_duration
        self.check_every = check_every
        self._lock = threading.Lock()
        self._next_check = time.monotonic() + check_every
        self._stamp = self._pointer_stamp()
        self._current = self._recommender(index) if index is not None else None

    def _recommender(self, index: LibraryIndex) -> Recommender:
        return Recommender(self.catalog, index, max_duration=self.max_duration)

    def _pointer_stamp(self) -> tuple[int, int, int] | None:
        return self.library.published_stamp() if self.library is not None else None

    def get(self) -> Recommender | None:
        """The recommender to use for this request (None while the library has no index)."""
        self._maybe_switch()
        return self._current

    def _maybe_switch(self) -> None:
        if self.library is None:
            return
        now = time.monotonic()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return  # checked recently, or another thread is checking right now
        try:
            self._next_check = now + self.check_every
            stamp = self._pointer_stamp()
            if stamp == self._stamp:
                return
            published = self.library.published_dir()
            current = self._current.index.directory if self._current is not None else None
            if published is None or published == current:
                self._stamp = stamp
                return
            try:
                index = self.library.load_published()
            except (SoundalikeError, OSError, ValueError) as exc:
                # Keep serving the old index; the stamp is not recorded, so the next check retries.
                log.warning("%s: cannot load the newly published index (%s); keeping the current one", published, exc)
                return
            self._current = self._recommender(index)
            self._stamp = stamp
            log.info("switched to index %s (%s, %d tracks)", published.name, index.backend, index.count)
        finally:
            self._lock.release()


@dataclass
class UploadResult:
    """One analysed upload, kept briefly so its results page can play and picture the clip."""

    id: str
    name: str
    clip: bytes
    mimetype: str
    recommendations: Recommendations
    created: float = field(default_factory=time.monotonic)
    picture: bytes | None = None


class ResultStore:
    """Recent upload results in memory, keyed by a random id, dropped after ``ttl`` seconds.

    The uploaded bytes live only here (never on disk under any name); the oldest results are
    dropped first when more than ``max_bytes`` of clips are held.
    """

    def __init__(self, *, ttl: float = 1800.0, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, UploadResult] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(16)

    def add(self, item: UploadResult) -> None:
        with self._lock:
            self._items[item.id] = item
            self._expire()

    def get(self, key: str) -> UploadResult | None:
        with self._lock:
            self._expire()
            return self._items.get(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl
        while self._items:
            oldest = next(iter(self._items.values()))
            held = sum(len(i.clip) for i in self._items.values())
            if oldest.created >= cutoff and (held <= self.max_bytes or len(self._items) == 1):
                break
            self._items.popitem(last=False)


class PictureCache:
    """PNG pictures of catalog tracks, keyed by track id and content hash, least recently used out."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> bytes | None:
        with self._lock:
            png = self._items.get(key)
            if png is not None:
                self._items.move_to_end(key)
            return png

    def put(self, key: tuple[int, str], png: bytes) -> None:
        with self._lock:
            self._items[key] = png
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
