"""A library's search index on disk: normalised vectors, two ANN indexes and a manifest.

Layout inside the library folder::

    index.json                  {"current": "index-<revision>-<stamp>"}  (replaced atomically)
    indexes/index-<rev>-<stamp>/
        manifest.json           backend, metric, dims, feature version, counts, catalog revision, params
        normaliser.npz          standardisation statistics and family weights (tracks and segments)
        ids.npy                 catalog track id of each row
        vectors.npy             normalised track vectors, one row per track (memory-mapped on load);
                                float16 from 100,000 rows, or int8 + vectors.scales.npy (see index.storage)
        seg_vectors.npy         normalised segment vectors, grouped by track (likewise)
        seg_rows.npy            the track row of each segment
        seg_starts.npy          segment start times in seconds
        seg_offsets.npy         segments of track row i are seg_offsets[i]:seg_offsets[i + 1]
        tracks/  segments/      the backend's own files

The build streams: the catalog is read twice in chunks of a fixed size (once for the normaliser's
statistics, once to write normalised rows into memory-mapped files), so its memory does not grow
with the library beyond what the search index itself holds. Large segment sets are indexed with
faiss (built in chunks, memory-mapped on load) and, from 20 million catalog segments, every other
catalog window is indexed (windows every 5 s instead of 2.5 s; queries still slide every 0.5 s); from
10 million indexed segments their faiss lists hold 4-bit fast-scan codes.
Every array is memory-mapped on load, so processes serving one library share its pages.

A new index is written to a fresh folder and then published by replacing ``index.json``, so a reader
(the web app) always sees either the old or the new index whole. Loading checks the manifest against
the code and the catalog and says which side differs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundalike.catalog import Catalog
from soundalike.errors import EmptyLibraryError, IndexMismatchError
from soundalike.features import FEATURE_VERSION, segment_layout, track_layout
from soundalike.features.normalise import PRIOR_TRACKS, Normaliser, Reference, reference
from soundalike.index import VectorIndex, build_index, default_params, load_index
from soundalike.index.manifest import MANIFEST_FORMAT, Manifest
from soundalike.index.storage import MatrixWriter, SearchMatrix, open_matrix, storage_for
from soundalike.vocabulary import AUTO_INDEX, INDEX_CHOICES

log = logging.getLogger(__name__)

POINTER = "index.json"
INDEXES = "indexes"


@dataclass
class LibraryIndex:
    """A loaded index: what :mod:`soundalike.recommend` searches.

    Attributes
    ----------
    manifest : Manifest
    track_norm, segment_norm : Normaliser
    ids : np.ndarray [shape=(n,), dtype=int64]
    vectors : np.ndarray or Int8Matrix [shape=(n, dim)], read as float32, memory-mapped
    seg_vectors : np.ndarray or Int8Matrix [shape=(m, seg_dim)], likewise
    seg_rows, seg_starts, seg_offsets : np.ndarray, memory-mapped
    tracks, segments : VectorIndex
    """

    directory: Path
    manifest: Manifest
    track_norm: Normaliser
    segment_norm: Normaliser
    ids: np.ndarray
    vectors: SearchMatrix
    seg_vectors: SearchMatrix
    seg_rows: np.ndarray
    seg_starts: np.ndarray
    seg_offsets: np.ndarray
    tracks: VectorIndex
    segments: VectorIndex

    @property
    def backend(self) -> str:
        return self.manifest.backend

    @property
    def count(self) -> int:
        return len(self.ids)

    def row_of(self, track_id: int) -> int | None:
        """The row of a catalog track id, or None if it is not indexed."""
        pos = int(np.searchsorted(self.ids, track_id))
        return pos if pos < len(self.ids) and self.ids[pos] == track_id else None

    def segments_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised segment vectors and start times of track row ``row``."""
        lo, hi = int(self.seg_offsets[row]), int(self.seg_offsets[row + 1])
        return self.seg_vectors[lo:hi], self.seg_starts[lo:hi]


def _weights_key(weights: Mapping[str, float] | None) -> dict[str, float]:
    return {k: float(v) for k, v in sorted((weights or {}).items())}


def current_dir(library: str | os.PathLike[str]) -> Path | None:
    """The folder of the published index, or None."""
    pointer = Path(library) / POINTER
    try:
        name = json.loads(pointer.read_text())["current"]
    except (OSError, ValueError, KeyError):
        return None
    path = Path(library) / INDEXES / name
    return path if path.is_dir() else None


def read_manifest(library: str | os.PathLike[str]) -> Manifest | None:
    """The published index's manifest, or None when there is none (or it cannot be read)."""
    directory = current_dir(library)
    if directory is None:
        return None
    try:
        return _read_manifest(directory)
    except IndexMismatchError:
        return None


def _read_manifest(directory: Path) -> Manifest:
    try:
        data = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexMismatchError(f"{directory}: unreadable manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise IndexMismatchError(f"{directory}: unreadable manifest (not a JSON object)")
    return Manifest.from_dict(data, where=directory)


TRACK_FAISS_FROM = 750_000
"""From this many tracks, the default index choice (``auto``) builds the track index with faiss
IVF-PQ (:func:`track_faiss_params`) instead of ScaNN. Measured on the benchmarks' synthetic track
vectors at equal recall@10 (``benchmarks/results/scale.md``, anchors, 2026-12-02): ScaNN answers
more queries a second up to 500,000 tracks (1.1x faiss there), faiss from 750,000 (1.2x) and at
1,000,000 (1.3-1.6x); faiss builds in half the time with 40-50 % of ScaNN's peak memory from
300,000 tracks (2.9 against 7.7 GB at 1,000,000, against an 8 GB bar)."""
TRACK_FAISS_PROBED = 30
"""The track index scans one list in this many (at least 32): at 1,000,000 tracks, 34 of 1,000."""
TRACK_FAISS_RERANK_FACTOR = 10
"""The track index re-scores ``max(400, 10 k)`` candidates exactly, not faiss's ``ivf_pq4`` default
``max(400, 40 k)``. A clip query asks the track index for a pool of 160; re-scoring 6,400 candidates
read 6,400 scattered float16 rows from the memory-mapped matrix (17 ms of a 140 ms clip query at
1,000,000 tracks, warm) for no recall: recall@160 was 0.977 with 1,600 candidates and with 6,400
(0.924 with 400; 100 jittered tracks as queries, 34 lists scanned). At ``k = 10`` both rules re-score 400."""


def track_faiss_params(n: int) -> dict[str, Any]:
    """The faiss parameters of ``auto``'s track index for ``n`` tracks: 4-bit fast-scan IVF-PQ
    scanning about 3 % of its lists. The faiss rule's 2 % (20 of 1,000 lists at 1,000,000 tracks)
    reaches recall@10 0.99 for a track's neighbours but 0.82 for its least similar tracks; 34 lists
    give 0.995 and 0.90 (ScaNN's rule 0.996 and 0.93) at 0.8-1.2x ScaNN's speed in two runs, 48 lists
    0.997 and 0.94. Candidates re-scored: :data:`TRACK_FAISS_RERANK_FACTOR`."""
    nlist = int(default_params("faiss", n, track_layout().dim)["nlist"])
    return {
        "algorithm": "ivf_pq4",
        "nprobe": min(nlist, max(32, math.ceil(nlist / TRACK_FAISS_PROBED))),
        "pre_reorder_factor": TRACK_FAISS_RERANK_FACTOR,
    }


SEGMENT_FAISS_FROM = 2_000_000
"""Segment sets this large are indexed with faiss whatever the track backend (ScaNN and Annoy build
from an in-memory float32 copy of every vector: 700 MB at 2 million 88-d segments)."""
SEGMENT_STRIDE_FROM = 20_000_000
"""From this many catalog segments, every other window is indexed (catalog hop 2.5 s → 5 s)."""
SEGMENT_FAST_SCAN_FROM = 10_000_000
"""From this many indexed segments, the faiss segment index stores 4-bit fast-scan codes
(:data:`SEGMENT_FAST_SCAN_PARAMS`) instead of 8-bit ones: a 10-s clip query at a million tracks
spent most of its time scanning 8-bit lists (401 ms p50 against a 100 ms bar)."""
SEGMENT_FAST_SCAN_PARAMS: dict[str, Any] = {"algorithm": "ivf_pq4", "pq_dims": 1}


def resolve_backend(choice: str, n: int) -> tuple[str, dict[str, Any] | None]:
    """The track backend, and its parameter overrides, that ``choice`` means for ``n`` tracks.

    Parameters
    ----------
    choice : str
        A backend, or ``"auto"``: ScaNN below :data:`TRACK_FAISS_FROM` tracks, faiss IVF-PQ from it.
    n : int
        Tracks in the index.

    Returns
    -------
    backend : str
    params : dict or None
        Overrides of the backend's rule (None: its rule as it is).
    """
    if choice not in INDEX_CHOICES:
        raise ValueError(f"unknown index backend {choice!r}; expected one of {', '.join(INDEX_CHOICES)}")
    if choice != AUTO_INDEX:
        return choice, None
    return ("faiss", track_faiss_params(n)) if n >= TRACK_FAISS_FROM else ("scann", None)


READ_CHUNK = 4096
"""Tracks read from the catalog at a time (vectors; segments are read 1,024 tracks at a time)."""


class _CatalogMoved(Exception):
    """The catalog changed between the build's two passes; the build starts again."""


def build(
    library: str | os.PathLike[str],
    catalog: Catalog,
    *,
    backend: str = AUTO_INDEX,
    params: Mapping[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
    storage: str | None = None,
    segment_backend: str | None = None,
    segment_stride: int | None = None,
    chunk: int = READ_CHUNK,
) -> LibraryIndex:
    """Build the index of every analysed track in ``catalog`` and publish it in ``library``.

    Streams: the catalog is read in chunks of ``chunk`` tracks, twice (statistics, then normalised
    rows written to memory-mapped files), so memory does not grow with the catalog except for the
    backend's own index and a few integers per track and segment.

    Parameters
    ----------
    library : path-like
        The library folder.
    catalog : Catalog
    backend : {"auto", "scann", "annoy", "exact", "faiss"}
        ``auto``: see :func:`resolve_backend` (decided on the analysed tracks counted by the build).
    params : dict, optional
        Overrides of the backend's default parameters (for the track index); with ``auto``, of
        those it chose.
    weights : dict, optional
        Family weights (default: all equal).
    progress : callable, optional
        Called with a short description of each step.
    storage : {"float32", "float16", "int8"}, optional
        How both search matrices are stored; default :func:`~soundalike.index.storage.storage_for`
        of each matrix's rows.
    segment_backend : str, optional
        Default: ``backend``, except ``faiss`` from :data:`SEGMENT_FAISS_FROM` segments when the
        backend is ScaNN or Annoy.
    segment_stride : int, optional
        Index every n-th catalog window; default 1, or 2 from :data:`SEGMENT_STRIDE_FROM` segments.
    chunk : int
        Tracks read from the catalog at a time.

    Raises
    ------
    EmptyLibraryError
        When the catalog has no analysed track.
    """
    resolve_backend(backend, 0)  # refuses an unknown name before any work
    for attempt in range(3):
        try:
            return _build_once(
                Path(library), catalog, backend=backend, params=params, weights=weights,
                say=progress or (lambda _msg: None), storage=storage, segment_backend=segment_backend,
                segment_stride=segment_stride, chunk=chunk,
            )
        except _CatalogMoved as exc:
            log.info("the catalog changed during the build (%s); starting again (attempt %d)", exc, attempt + 2)
    raise IndexMismatchError(f"{catalog.location}: the catalog kept changing during three builds; try again when the ingest is done")


def _track_rows(catalog: Catalog, ids: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rows, raw vectors)`` of the tracks in ``ids`` (sorted), read again from the catalog in chunks."""
    for got, vecs in catalog.iter_vectors(FEATURE_VERSION, chunk=chunk):
        rows = np.searchsorted(ids, got)
        keep = (rows < len(ids)) & (ids[np.minimum(rows, len(ids) - 1)] == got)
        if keep.any():
            yield rows[keep], vecs[keep]


def _segment_batches(
    catalog: Catalog, ids: np.ndarray, stride: int, chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, counts, starts, raw vectors)`` of a batch of indexed tracks' (strided) segments."""
    for batch in catalog.iter_segments(FEATURE_VERSION, chunk=max(1, chunk // 4)):
        rows, counts, starts, vectors = [], [], [], []
        for s in batch:
            r = int(np.searchsorted(ids, s.track_id))
            if r >= len(ids) or ids[r] != s.track_id:
                continue  # analysed after the vectors were read; the next build takes it
            rows.append(r)
            counts.append(len(s.starts[::stride]))
            starts.append(s.starts[::stride])
            vectors.append(s.vectors[::stride])
        if rows:
            yield (
                np.asarray(rows, dtype=np.int64),
                np.asarray(counts, dtype=np.int64),
                np.concatenate(starts).astype(np.float32),
                np.concatenate(vectors),
            )


def _bound(norm: Normaliser) -> np.ndarray:
    """The largest absolute value each dimension of a normalised vector can take (its family's scale)."""
    out = np.zeros(norm.layout.dim, dtype=np.float32)
    for family, scale in norm.family_scales("all").items():
        out[norm.layout.slices[family]] = scale
    return out


def _build_once(
    library: Path,
    catalog: Catalog,
    *,
    backend: str,
    params: Mapping[str, Any] | None,
    weights: Mapping[str, float] | None,
    say: Callable[[str], None],
    storage: str | None,
    segment_backend: str | None,
    segment_stride: int | None,
    chunk: int,
) -> LibraryIndex:
    started = time.perf_counter()
    revision = catalog.revision()
    tl, sl = track_layout(), segment_layout()

    say("reading vectors (statistics)")
    id_chunks: list[np.ndarray] = []

    def raw_vectors() -> Iterator[np.ndarray]:
        for ids_, vecs in catalog.iter_vectors(FEATURE_VERSION, chunk=chunk):
            id_chunks.append(ids_)
            yield vecs

    track_norm = Normaliser.fit(raw_vectors(), tl, weights or {}, prior=reference("track"))
    if not id_chunks:
        raise EmptyLibraryError("no analysed tracks in the library yet: run `soundalike ingest PATH` first")
    ids = np.concatenate(id_chunks)
    id_chunks.clear()
    n = len(ids)
    backend, chosen = resolve_backend(backend, n)
    params = {**(chosen or {}), **(params or {})} or None

    say("reading segments (statistics)")
    catalog_segments = 0
    counts = np.zeros(n, dtype=np.int64)

    def raw_segments() -> Iterator[np.ndarray]:
        nonlocal catalog_segments
        for rows, got, _starts, vecs in _segment_batches(catalog, ids, 1, chunk):
            counts[rows] = got
            catalog_segments += len(vecs)
            yield vecs

    segment_norm = Normaliser.fit(raw_segments(), sl, {}, prior=lambda rows: _per_track(reference("segment"), rows, n))
    stride = segment_stride or (2 if catalog_segments >= SEGMENT_STRIDE_FROM else 1)
    if stride != 1:
        counts = -(-counts // stride)  # windows 0, stride, 2 * stride, ... of each track
    m = int(counts.sum())
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    seg_backend = segment_backend or (
        "faiss" if backend in ("scann", "annoy") and m >= SEGMENT_FAISS_FROM else backend
    )
    storages = {"tracks": storage or storage_for(n), "segments": storage or storage_for(m)}

    (library / INDEXES).mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=f"index-{revision}-", dir=library / INDEXES))
    try:
        say(f"writing {n} normalised track vectors ({storages['tracks']})")
        writer = MatrixWriter(directory, "vectors", n, tl.dim, storages["tracks"], bound=_bound(track_norm))
        row = 0
        for rows, vecs in _track_rows(catalog, ids, chunk):
            if rows[0] != row or rows[-1] != row + len(rows) - 1:
                raise _CatalogMoved(f"track row {row} is gone")
            writer.write(track_norm.transform(vecs))
            row += len(rows)
        if row != n:
            raise _CatalogMoved(f"{n - row} tracks are gone")
        writer.close()
        np.save(directory / "ids.npy", ids)
        np.save(directory / "seg_offsets.npy", offsets)

        say(f"writing {m} normalised segment vectors ({storages['segments']}, every {stride} window)")
        seg_writer = MatrixWriter(directory, "seg_vectors", m, sl.dim, storages["segments"], bound=_bound(segment_norm))
        seg_rows = np.lib.format.open_memmap(directory / "seg_rows.npy", mode="w+", dtype=np.int32, shape=(m,))
        seg_starts = np.lib.format.open_memmap(directory / "seg_starts.npy", mode="w+", dtype=np.float32, shape=(m,))
        at = 0
        for rows, got, starts, vecs in _segment_batches(catalog, ids, stride, chunk):
            if at != offsets[rows[0]] or not np.array_equal(got, counts[rows]):
                raise _CatalogMoved(f"the segments of track row {int(rows[0])} changed")
            seg_writer.write(segment_norm.transform(vecs) if len(vecs) else vecs)
            seg_rows[at : at + len(vecs)] = np.repeat(rows, got).astype(np.int32)
            seg_starts[at : at + len(vecs)] = starts
            at += len(vecs)
        if at != m:
            raise _CatalogMoved(f"{m - at} segments are gone")
        seg_writer.close()
        seg_rows.flush()
        seg_starts.flush()
        del seg_rows, seg_starts
        norm_arrays: dict[str, Any] = {f"track_{k}": v for k, v in track_norm.to_arrays().items()}
        norm_arrays.update({f"segment_{k}": v for k, v in segment_norm.to_arrays().items()})
        np.savez(directory / "normaliser.npz", **norm_arrays)

        vectors = open_matrix(directory, "vectors")
        say(f"building the {backend} track index ({n} tracks)")
        t0 = time.perf_counter()
        track_index = build_index(backend, vectors, params=dict(params) if params else None)
        (directory / "tracks").mkdir()
        track_index.save(directory / "tracks")
        track_params = dict(track_index.params)
        del track_index
        track_seconds = time.perf_counter() - t0
        seg_vectors = open_matrix(directory, "seg_vectors")
        say(f"building the {seg_backend} segment index ({m} segments)")
        t0 = time.perf_counter()
        fast_scan = seg_backend == "faiss" and m >= SEGMENT_FAST_SCAN_FROM
        segment_index = build_index(seg_backend, seg_vectors, params=dict(SEGMENT_FAST_SCAN_PARAMS) if fast_scan else None)
        (directory / "segments").mkdir()
        segment_index.save(directory / "segments")
        seg_params, seg_backend_name = dict(segment_index.params), segment_index.backend
        del segment_index
        segment_seconds = time.perf_counter() - t0
        manifest = Manifest(
            backend=backend,
            segment_backend=seg_backend_name,
            dim=tl.dim,
            segment_dim=sl.dim,
            feature_version=FEATURE_VERSION,
            count=n,
            segment_count=m,
            catalog_revision=revision,
            catalog=catalog.location,
            params=track_params,
            segment_params=seg_params,
            weights=dict(track_norm.weights),
            built_at=time.time(),
            build_seconds={"tracks": track_seconds, "segments": segment_seconds, "total": time.perf_counter() - started},
            storage=storages,
            segment_stride=stride,
        )
        (directory / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2, default=_json_default))
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    _publish(library, directory)
    return load(library, catalog=None)


def _per_track(prior: Reference | None, rows: int, tracks: int) -> Reference | None:
    """The segment prior worth ``PRIOR_TRACKS`` of *this* library's tracks (its own windows per
    track), so that a library of short tracks is not outweighed by the reference's long ones."""
    if prior is None or rows == 0 or tracks == 0:
        return prior
    return dataclasses.replace(prior, pseudo_count=PRIOR_TRACKS * rows / tracks)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _publish(library: Path, directory: Path) -> None:
    """Point ``index.json`` at ``directory`` atomically, then remove all but the two newest."""
    previous = current_dir(library)
    tmp = library / f".{POINTER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"current": directory.name}))
    os.replace(tmp, library / POINTER)
    keep = {directory.name} | ({previous.name} if previous else set())
    for old in (library / INDEXES).iterdir():
        if old.name not in keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def load(
    library: str | os.PathLike[str],
    *,
    catalog: Catalog | None = None,
    backend: str | None = None,
) -> LibraryIndex:
    """Load the published index of ``library``.

    Parameters
    ----------
    catalog : Catalog, optional
        When given, the index must have been built from this catalog's current revision.
    backend : str, optional
        When given, the index must use this backend (``auto``: the one it means for the index's
        track count).

    Raises
    ------
    IndexMismatchError
        No index, or one built by other code, for another catalog revision or another backend; the
        message names what was expected and what was found.
    """
    directory = current_dir(library)
    if directory is None:
        raise IndexMismatchError(f"{library}: no index built yet")
    manifest = _read_manifest(directory)
    mismatch = _mismatch(manifest, catalog=catalog, backend=backend)
    if mismatch is not None:
        what, expected, found = mismatch
        raise IndexMismatchError(f"{directory}: {what} mismatch: expected {expected}, found {found}")
    tl, sl = track_layout(), segment_layout()
    arrays = np.load(directory / "normaliser.npz")
    track_norm = Normaliser.from_arrays({k[6:]: arrays[k] for k in arrays.files if k.startswith("track_")}, tl)
    segment_norm = Normaliser.from_arrays({k[8:]: arrays[k] for k in arrays.files if k.startswith("segment_")}, sl)
    vectors = open_matrix(directory, "vectors", random_access=True)
    seg_vectors = open_matrix(directory, "seg_vectors", random_access=True)
    if vectors.shape != (manifest.count, manifest.dim):
        raise IndexMismatchError(
            f"{directory}: vectors shape mismatch: expected {(manifest.count, manifest.dim)}, found {vectors.shape}"
        )
    tracks = load_index(manifest.backend, directory / "tracks", vectors, manifest.params)
    segments = load_index(manifest.segment_backend, directory / "segments", seg_vectors, manifest.segment_params)
    return LibraryIndex(
        directory=directory,
        manifest=manifest,
        track_norm=track_norm,
        segment_norm=segment_norm,
        ids=np.load(directory / "ids.npy", mmap_mode="r"),
        vectors=vectors,
        seg_vectors=seg_vectors,
        seg_rows=np.load(directory / "seg_rows.npy", mmap_mode="r"),
        seg_starts=np.load(directory / "seg_starts.npy", mmap_mode="r"),
        seg_offsets=np.load(directory / "seg_offsets.npy", mmap_mode="r"),
        tracks=tracks,
        segments=segments,
    )


def _mismatch(
    manifest: Manifest, *, catalog: Catalog | None, backend: str | None
) -> tuple[str, object, object] | None:
    """The first way ``manifest`` differs from the code, the catalog or the backend asked for."""
    checks: list[tuple[str, object, object]] = [
        ("index format", MANIFEST_FORMAT, manifest.format),
        ("feature version", FEATURE_VERSION, manifest.feature_version),
        ("dimension", track_layout().dim, manifest.dim),
        ("segment dimension", segment_layout().dim, manifest.segment_dim),
    ]
    if catalog is not None:
        checks.append(("catalog revision", catalog.revision(), manifest.catalog_revision))
    if backend is not None:
        checks.append(("backend", resolve_backend(backend, manifest.count)[0], manifest.backend))
    for what, expected, found in checks:
        if expected != found:
            return what, expected, found
    return None


_REASONS = {
    "index format": "the index was written by another version of soundalike",
    "feature version": "the tracks were analysed by another feature version",
    "dimension": "the feature layout changed",
    "segment dimension": "the feature layout changed",
    "catalog revision": "the catalog changed",
}


def stale_reason(
    library: str | os.PathLike[str],
    catalog: Catalog,
    *,
    backend: str,
    params: Mapping[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
) -> str | None:
    """Why the published index does not serve this catalog with these settings, or None if it does.

    Returns
    -------
    str or None
        A phrase such as ``"the catalog changed"``, ``"the backend changed (scann → annoy)"`` or
        ``"there is no index yet"``, made to follow "rebuilt because".
    """
    directory = current_dir(library)
    if directory is None:
        return "there is no index yet"
    try:
        manifest = _read_manifest(directory)
    except IndexMismatchError:
        return "the published index is unreadable"
    mismatch = _mismatch(manifest, catalog=catalog, backend=None)
    if mismatch is not None:
        return _REASONS[mismatch[0]]
    backend, chosen = resolve_backend(backend, manifest.count)
    params = {**(chosen or {}), **(params or {})} or None
    if manifest.backend != backend:
        return f"the backend changed ({manifest.backend} → {backend})"
    wanted = _weights_key({f: (weights or {}).get(f, 1.0) for f in track_layout().families})
    if _weights_key(manifest.weights) != wanted:
        return "the family weights changed"
    if params is not None and any(manifest.params.get(k) != v for k, v in params.items()):
        return "the index parameters changed"
    return None


def ensure(
    library: str | os.PathLike[str],
    catalog: Catalog,
    *,
    backend: str = AUTO_INDEX,
    params: Mapping[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[LibraryIndex, str | None]:
    """Load the index if it matches the catalog and settings, else rebuild it.

    Returns
    -------
    index : LibraryIndex
    reason : str or None
        Why it was rebuilt (see :func:`stale_reason`); None when the published index was loaded.
    """
    reason = stale_reason(library, catalog, backend=backend, params=params, weights=weights)
    if reason is None:
        try:
            return load(library, catalog=catalog, backend=backend), None
        except IndexMismatchError as exc:  # changed between the look and the load, or damaged
            reason = f"the published index could not be loaded ({exc})"
    log.info("rebuilding the index: %s", reason)
    return build(library, catalog, backend=backend, params=params, weights=weights, progress=progress), reason
