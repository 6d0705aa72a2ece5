"""One library folder: its catalog, its published index and the parameters that index is built with.

A library is what a user names (``--library DIR``): a folder holding

================  =================================================================================
``catalog.sqlite``  the catalog (or a MongoDB URI in the settings)
``index.json``      the published index (see :mod:`soundalike.index.bundle`)
``choices.json``    the index backend the user last chose on the command line
``tuned.json``      parameters chosen by ``soundalike tune``, by backend
``soundalike.toml`` settings (optional)
================  =================================================================================

:class:`Library` is the one way in for both shells (``soundalike.cli`` and ``soundalike.web``): they
ask it for the catalog, the index, a recommender or the stats, and never assemble those themselves.
Like beets' ``Library`` and Flask's ``get_db``, a shell asks, never wires.

Which backend and parameters an index is built with:

1. a backend given on the command line (``ingest --index``, ``index --backend``) is used and
   remembered in ``choices.json``;
2. otherwise ``index`` from the settings file or ``SOUNDALIKE_INDEX``;
3. otherwise the remembered choice; otherwise ``auto``.

``auto`` (also a choice one can name) is ScaNN, or faiss IVF-PQ from
:data:`~soundalike.index.bundle.TRACK_FAISS_FROM` analysed tracks, where faiss measured faster
(:func:`~soundalike.index.bundle.resolve_backend`). The parameters are those ``soundalike tune``
saved for the backend it comes to, else that backend's default rule.
The index is rebuilt only when the published one does not match the catalog, the feature version,
the backend, the weights or those parameters, and the caller is told why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from soundalike.catalog import Catalog, open_catalog
from soundalike.errors import ConfigError
from soundalike.features import FEATURE_VERSION
from soundalike.index import bundle
from soundalike.index.bundle import LibraryIndex, Manifest
from soundalike.recommend import Recommender

if TYPE_CHECKING:
    from soundalike.copies import Duplicates
    from soundalike.radio import Playlist, Spread
from soundalike.settings import Settings
from soundalike.vocabulary import AUTO_INDEX, INDEX_CHOICES

log = logging.getLogger(__name__)

CHOICES_FILE = "choices.json"
UNSTYLED = "unstyled"
"""Key of ``choices.json``: true once tracks were analysed without the learned family, until an
ingest with it finds none left."""
TUNED_FILE = "tuned.json"

__all__ = ["IndexInfo", "Library", "LibraryStats", "Loaded"]


@dataclass(frozen=True)
class IndexInfo:
    """The published index at a glance."""

    backend: str
    tracks: int
    segments: int
    bytes: int
    up_to_date: bool
    feature_version: int
    catalog_revision: int
    built_at: float
    params: dict[str, Any]

    @classmethod
    def of(cls, manifest: Manifest, *, directory: Path | None, revision: int) -> IndexInfo:
        return cls(
            backend=manifest.backend,
            tracks=manifest.count,
            segments=manifest.segment_count,
            bytes=_folder_size(directory),
            up_to_date=manifest.catalog_revision == revision,
            feature_version=manifest.feature_version,
            catalog_revision=manifest.catalog_revision,
            built_at=manifest.built_at,
            params=dict(manifest.params),
        )


@dataclass(frozen=True)
class LibraryStats:
    """The library at a glance: what ``soundalike stats`` prints and ``/api/health`` summarises."""

    library: str
    catalog: str
    tracks: int
    seconds: float
    failures: int
    stale: int
    catalog_revision: int
    index: IndexInfo | None
    without_style: int | None = None
    """Tracks analysed without the learned family (``--no-style``); None when not counted."""

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``soundalike stats --json``."""
        return {
            "library": self.library,
            "catalog": self.catalog,
            "tracks": self.tracks,
            "hours": round(self.hours, 3),
            "failures": self.failures,
            "stale": self.stale,
            "without_style": self.without_style,
            "catalog_revision": self.catalog_revision,
            "index": None
            if self.index is None
            else {
                "backend": self.index.backend,
                "tracks": self.index.tracks,
                "segments": self.index.segments,
                "bytes": self.index.bytes,
                "up_to_date": self.index.up_to_date,
                "feature_version": self.index.feature_version,
            },
        }


@dataclass(frozen=True)
class Loaded:
    """An index ready to search, and why it was rebuilt (None when the published one was current)."""

    index: LibraryIndex
    rebuilt_because: str | None

    @property
    def rebuilt(self) -> bool:
        return self.rebuilt_because is not None


class Library:
    """One library folder: catalog, published index, its parameters and the settings.

    Use :meth:`open`. Methods that may build an index take ``progress``, called with a short
    description of each step.

    Attributes
    ----------
    settings : Settings
    catalog : Catalog
    folder : Path
    """

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.folder = Path(settings.library)

    @classmethod
    def open(cls, settings: Settings, *, create: bool = False) -> Library:
        """Open the library the settings name.

        Parameters
        ----------
        settings : Settings
        create : bool
            Create the folder and an empty catalog when missing (``ingest``); otherwise a missing
            catalog is a :class:`~soundalike.errors.CatalogError`.
        """
        return cls(settings, open_catalog(settings.library, settings.catalog, create=create))

    # -- which index ------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """The backend an index of this library is built with (see the module docstring)."""
        if "index" in self.settings.given:
            return self.settings.index
        return self._chosen_backend() or self.settings.index

    def choose_backend(self, backend: str) -> None:
        """Remember ``backend`` (given on the command line) for the commands that follow."""
        if backend not in INDEX_CHOICES:
            raise ConfigError(f"index: unknown backend {backend!r}; expected one of {', '.join(INDEX_CHOICES)}")
        _write_json(self.folder / CHOICES_FILE, {**_read_json(self.folder / CHOICES_FILE), "backend": backend})

    def overridden_by_settings(self, backend: str) -> bool:
        """Whether the settings (file or environment) name another backend than ``backend``."""
        return "index" in self.settings.given and self.settings.index != backend

    @property
    def style(self) -> bool:
        """Whether tracks are analysed with the learned style family and it weighs in the index:
        the settings' ``style`` when a file or the environment sets it, else the last ``ingest
        [--no-style]`` choice, else on."""
        if "style" in self.settings.given:
            return self.settings.style
        chosen = _read_json(self.folder / CHOICES_FILE).get("style")
        return chosen if isinstance(chosen, bool) else True

    def choose_style(self, on: bool) -> None:
        """Remember ``ingest --no-style`` or ``ingest --style`` for the commands that follow."""
        choices = _read_json(self.folder / CHOICES_FILE)
        if on and choices.get("style") is False:  # a library from before UNSTYLED was recorded
            choices.setdefault(UNSTYLED, True)
        _write_json(self.folder / CHOICES_FILE, {**choices, "style": on})

    def note_unstyled(self) -> None:
        """Record that tracks are about to be analysed without the learned family, so that a later
        ingest with it knows to look for them (:meth:`unstyled_paths`)."""
        _write_json(self.folder / CHOICES_FILE, {**_read_json(self.folder / CHOICES_FILE), UNSTYLED: True})

    def unstyled_paths(self) -> list[str]:
        """Paths of the analysed tracks whose learned (style) family is zeros: analysed with ``--no-style``.

        Reads every track vector, so only when :meth:`note_unstyled` (or ``--no-style``) was ever
        used in this library; once none is left that record is cleared and the next call reads
        nothing. Tracks of an older feature version are not counted (ingest analyses them anyway).
        """
        choices = _read_json(self.folder / CHOICES_FILE)
        if not choices.get(UNSTYLED, choices.get("style") is False):
            return []
        from soundalike.features import track_layout

        learned = track_layout().slices["style"]
        ids: list[int] = []
        for chunk_ids, vectors in self.catalog.iter_vectors(FEATURE_VERSION):
            ids.extend(int(i) for i in np.asarray(chunk_ids)[~np.any(np.asarray(vectors)[:, learned], axis=1)])
        paths = [t.path for t in map(self.catalog.get, ids) if t is not None]
        if not paths and choices.get(UNSTYLED) is not False:
            _write_json(self.folder / CHOICES_FILE, {**_read_json(self.folder / CHOICES_FILE), UNSTYLED: False})
        return paths

    @property
    def weights(self) -> dict[str, float]:
        """Family weights of the ``all`` similarity (the learned family's is 0 when style is off)."""
        return dataclasses.replace(self.settings, style=self.style).family_weights

    def _chosen_backend(self) -> str | None:
        chosen = _read_json(self.folder / CHOICES_FILE).get("backend")
        return chosen if chosen in INDEX_CHOICES else None

    @property
    def index_backend(self) -> str:
        """The backend the index is built with: :attr:`backend`, with ``auto`` decided."""
        return str(self._build_options(None, remember=False)["backend"])

    def tuned_params(self, backend: str) -> dict[str, Any] | None:
        """Parameters ``soundalike tune`` saved for ``backend``, if any."""
        params = _read_json(self.folder / TUNED_FILE).get(backend)
        return dict(params) if isinstance(params, dict) else None

    def save_tuned(self, backend: str, params: dict[str, Any]) -> Path:
        """Record ``params`` for ``backend`` in ``tuned.json``, keeping other backends' entries.

        The next use of the index rebuilds it with them when the published index differs.

        Returns
        -------
        Path
            The file written.
        """
        path = self.folder / TUNED_FILE
        _write_json(path, {**_read_json(path), backend: params})
        return path

    # -- the index ---------------------------------------------------------------------------

    def index(self, *, backend: str | None = None, progress: Callable[[str], None] | None = None) -> Loaded:
        """The published index, rebuilt first when it does not match the catalog or the choices.

        Parameters
        ----------
        backend : str, optional
            A backend chosen on the command line: used now and remembered (see :meth:`choose_backend`).

        Raises
        ------
        EmptyLibraryError
            When nothing is analysed yet.
        """
        index, reason = bundle.ensure(self.folder, self.catalog, **self._build_options(backend), progress=progress)
        return Loaded(index, reason)

    def stale_reason(self) -> str | None:
        """Why the next :meth:`index` would rebuild, or None."""
        return bundle.stale_reason(self.folder, self.catalog, **self._build_options(None, remember=False))

    def rebuild(self, *, backend: str | None = None, progress: Callable[[str], None] | None = None) -> LibraryIndex:
        """Build and publish a new index now; a ``backend`` given here is remembered."""
        return bundle.build(self.folder, self.catalog, **self._build_options(backend), progress=progress)

    def _build_options(self, backend: str | None, *, remember: bool = True) -> dict[str, Any]:
        """Backend, parameters and weights of this library's index (``backend``: chosen just now)."""
        if backend is not None and remember:
            self.choose_backend(backend)
        choice = backend or self.backend
        backend, chosen = bundle.resolve_backend(choice, self._track_count() if choice == AUTO_INDEX else 0)
        return {"backend": backend, "params": self.tuned_params(backend) or chosen, "weights": self.weights}

    def _track_count(self) -> int:
        """Tracks the next index holds: the published index's count while it is current (no catalog
        read), else the catalog's analysed tracks: what ``auto`` is decided on."""
        manifest = bundle.read_manifest(self.folder)
        if manifest is not None and manifest.catalog_revision == self.catalog.revision():
            return manifest.count
        return self.catalog.stats(FEATURE_VERSION).tracks

    def load_published(self) -> LibraryIndex:
        """The published index as it is (another process may have just published it)."""
        return bundle.load(self.folder)

    def published_dir(self) -> Path | None:
        """The folder of the published index, or None."""
        return bundle.current_dir(self.folder)

    def published_stamp(self) -> tuple[int, int, int] | None:
        """Identity of the pointer to the published index (inode, mtime, size): it changes when
        another process publishes a new index."""
        try:
            st = (self.folder / bundle.POINTER).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def recommender(self, index: LibraryIndex | None = None) -> Recommender:
        """A recommender over ``index`` (default: :meth:`index`, rebuilt if needed)."""
        return Recommender(self.catalog, index or self.index().index, max_duration=self.settings.max_duration)

    # -- playlists and duplicates -----------------------------------------------------------

    def radio(
        self,
        seeds: list[str | int],
        *,
        clip: str | os.PathLike[str] | None = None,
        n: int = 50,
        drift: float = 0.5,
        aspect: str = "all",
        weights: dict[str, float] | None = None,
        spread: Spread | None = None,
        exclude: Collection[int] = (),
        index: LibraryIndex | None = None,
    ) -> Playlist:
        """A radio from catalog tracks (ids or paths) and/or an audio file ``clip`` (see :mod:`soundalike.radio`).

        ``exclude``: track ids never to play (nor copies of them), e.g. what a listener has heard.
        """
        from soundalike import radio

        rec = self.recommender(index)
        seed = radio.seed_from_file(rec.index, clip, max_duration=self.settings.max_duration) if clip is not None else None
        return radio.make_radio(
            rec.index, self.catalog, seeds=seeds, clip=seed, resolve=rec.resolve,
            n=n, drift=drift, aspect=aspect, weights=weights, spread=spread, exclude=exclude,
        )  # fmt: skip

    def path(
        self,
        start: str | int,
        end: str | int,
        *,
        n: int = 10,
        aspect: str = "all",
        weights: dict[str, float] | None = None,
        spread: Spread | None = None,
        index: LibraryIndex | None = None,
    ) -> Playlist:
        """``n`` tracks moving from ``start`` to ``end`` in even steps (see :func:`soundalike.radio.path`)."""
        from soundalike import radio

        rec = self.recommender(index)
        return radio.make_path(
            rec.index, self.catalog, start, end, resolve=rec.resolve, n=n, aspect=aspect, weights=weights, spread=spread
        )

    def music_root(self) -> Path | None:
        """The deepest folder holding every analysed track (where M3U8 paths may be relative), or None."""
        root: str | None = None
        offset, page = 0, 10_000
        while True:
            tracks = self.catalog.tracks(offset=offset, limit=page)
            for t in tracks:
                folder = os.path.dirname(os.path.abspath(t.path))
                try:
                    root = folder if root is None else os.path.commonpath([root, folder])
                except ValueError:  # different drives: no common root
                    return None
            if len(tracks) < page:
                return Path(root) if root else None
            offset += page

    def duplicates(self, *, index: LibraryIndex | None = None, progress: Callable[[str], None] | None = None) -> Duplicates:
        """Groups of tracks that are the same recording (see :mod:`soundalike.copies`)."""
        from soundalike.copies import find_duplicates

        return find_duplicates(index or self.index().index, self.catalog.get, progress=progress)

    # -- at a glance -------------------------------------------------------------------------

    def stats(self, *, count_unstyled: bool = False) -> LibraryStats:
        """The library at a glance; with ``count_unstyled``, also the tracks analysed without the
        learned family (see :meth:`unstyled_paths`: it may read every vector)."""
        s = self.catalog.stats(FEATURE_VERSION)
        manifest = bundle.read_manifest(self.folder)
        info = None
        if manifest is not None:
            info = IndexInfo.of(manifest, directory=bundle.current_dir(self.folder), revision=s.revision)
        return LibraryStats(
            library=str(self.folder),
            catalog=self.catalog.location,
            tracks=s.tracks,
            seconds=s.seconds,
            failures=s.failed,
            stale=s.stale,
            catalog_revision=s.revision,
            index=info,
            without_style=len(self.unstyled_paths()) if count_unstyled else None,
        )


def _folder_size(path: Path | None) -> int:
    if path is None:
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Replace ``path`` atomically (a reader sees the old file or the new one, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
