"""faiss backend: inverted lists that are memory-mapped when loaded, for the largest matrices.

faiss (Johnson, Douze and Jégou, 2017) is used here for what ScaNN cannot do within a memory budget:

* it **builds in chunks**: the coarse quantiser and codebooks are trained on a sample, then rows are
  added 65,536 at a time from the stored (memory-mapped, possibly int8) matrix, so a build never
  holds a float32 copy of every vector (ScaNN needs one: 25 GB for 71 million segments);
* it **loads memory-mapped** (``IO_FLAG_MMAP``) where its format allows: the 8-bit lists of
  ``ivf_sq8`` (the default) stay in the page cache, shared by every process that serves the
  library. The fast-scan lists of ``ivf_pq4`` are read into each process (44 bytes a row).

Candidates are re-scored exactly against the caller's stored matrix, as in every backend, so the
scores are the same dot products the exact index gives.

Algorithms
----------
``flat``
    Exhaustive inner product (below 2,000 rows).
``ivf_sq8`` (default from 2,000 rows)
    k-means coarse quantiser with ``nlist`` lists; each row stored as 8-bit scalar-quantised codes
    (one byte per dimension, 88 bytes for a segment); ``nprobe`` lists are scanned per query. Its
    lists are memory-mapped on load.
``ivf_pq4``
    The same lists with 4-bit product-quantised codes of ``pq_dims`` dimensions each (44 bytes for
    an 88-d segment), scanned with faiss's SIMD "fast scan", about five times faster per code. Its
    ranking is coarse, so more candidates are re-scored exactly (``max(400, 40 k)``), and its lists
    are read into memory. Measured on 2.1 million synthetic segments (``benchmarks.scale``'s model,
    windows of unseen tracks as queries): 30 lists of 1,459 and 1,000 candidates gave recall@10 0.953
    in 1.3 ms a query; ``ivf_sq8`` with the same 30 lists and 100 candidates 0.975 in 0.9 ms, hence
    the default. With ``pq_dims=1`` (one 4-bit code per dimension, 44 bytes for an 88-d segment)
    the ranking is as fine as ``ivf_sq8``'s and the scan stays fast. Lists of 8,800 rows as at a
    million tracks (3.6 million synthetic segments, 410 lists, jittered stored windows as queries,
    one thread, load average 7-11 on 2 cores), 82 lists scanned: ``ivf_sq8`` recall@10 1.000 in
    24-27 ms a query window; ``pq_dims=1`` 0.999 in 3.6-4.3 ms; ``pq_dims=2`` 0.938 (400
    candidates) to 0.986 (1,600) in 3.0-3.7 ms. :mod:`soundalike.index.bundle` uses ``pq_dims=1``
    for segment sets from 10 million rows.
``ivf_pq``
    The same lists with product-quantised codes of ``pq_dims`` dimensions per byte (the matrix is
    padded with zero columns to a multiple of ``pq_dims``; dot products are unchanged).
``hnsw``
    A graph (``hnsw_m`` links per node) over 8-bit scalar-quantised rows; ``ef_search`` is its
    query-time knob. It is loaded into memory (faiss cannot memory-map a graph).

Parameters and the rule that derives them
-----------------------------------------
``nlist = max(1, min(round(sqrt(n)), n // 100, 4,096))`` and ``nprobe = max(8, ceil(nlist / 50))``
(capped at ``nlist``): a query scans about 2 % of the rows of a large index, a quarter of a small
one (1 % gave recall 0.90 at 2.1 million rows, 2 % 0.975, 4 % 0.995). ``training_sample_size = min(n, max(100,000, 40 * nlist))``. Candidates re-scored exactly:
``max(pre_reorder_num_neighbors, pre_reorder_factor * k)``, 400 and 40 for ``ivf_pq4``, 100 and 10
otherwise. ``hnsw_m = 32``, ``ef_construction = 80``, ``ef_search = 128``; ``pq_dims`` 2 for
``ivf_pq4``, 4 for ``ivf_pq`` (8-bit codes).

faiss runs on one OpenMP thread here (``threads``, default 1): on a shared 2-core machine, more
threads spin and slow everything down. A query of several rows (a clip's windows) is the exception:
its rows are searched on up to :data:`BATCH_THREADS` threads.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Any, Self

import numpy as np

from soundalike.errors import IndexMismatchError
from soundalike.index.exact import check_query, check_vectors, merge_params, rescore, shape_result
from soundalike.index.storage import read_rows, read_sample

logger = logging.getLogger(__name__)

BACKEND = "faiss"
ALGORITHMS = ("flat", "ivf_sq8", "ivf_pq4", "ivf_pq", "hnsw")
MAX_LISTS = 4_096
"""More lists make every added row slower to assign (a build of 36 million rows: 17 minutes at 4,096)."""
FLAT_BELOW = 2_000
ADD_CHUNK = 65_536
FILENAME = "faiss/index.faiss"
BATCH_THREADS = 2
"""Most OpenMP threads for a query of several rows (at most the cores and the rows, and ``threads``
when that is more), each row on one thread: the 11 windows of a 10-s clip against 36 million 4-bit
segment codes (a million 3-minute tracks, 82 of 4,096 lists) took 27 ms p50 on one thread and 16 ms
on two; the whole 10-s clip query at a million tracks, 1 to 7 ms less in two interleaved runs
(2 cores, otherwise idle, 2026-12-03). A query of one row stays on ``threads``."""
_BUILD_KEYS = ("algorithm", "nlist", "training_sample_size", "pq_dims", "hnsw_m", "ef_construction")


@functools.cache
def _faiss() -> Any:
    import faiss  # the top-level library, not this module: imports are absolute

    return faiss


def default_params(n: int, dim: int) -> dict[str, Any]:
    """Parameters the documented rule derives for ``n`` rows of dimension ``dim``."""
    return _resolve(n, None)


def _resolve(n: int, params: dict[str, Any] | None) -> dict[str, Any]:
    keys = dict.fromkeys(
        (*_BUILD_KEYS, "nprobe", "ef_search", "pre_reorder_num_neighbors", "pre_reorder_factor", "threads")
    )
    merge_params(keys, params, BACKEND)  # refuses unknown keys
    given = dict(params or {})
    nlist = int(given.get("nlist", max(1, min(round(math.sqrt(n)), n // 100, MAX_LISTS))))
    algorithm = given.get("algorithm", "flat" if n < FLAT_BELOW else "ivf_sq8")
    coarse = algorithm == "ivf_pq4"
    p: dict[str, Any] = {
        "algorithm": algorithm,
        "nlist": nlist,
        "nprobe": int(given.get("nprobe", min(nlist, max(8, math.ceil(nlist / 50))))),
        "training_sample_size": int(given.get("training_sample_size", min(n, max(100_000, 40 * nlist)))),
        "pq_dims": int(given.get("pq_dims", 2 if coarse else 4)),
        "hnsw_m": int(given.get("hnsw_m", 32)),
        "ef_construction": int(given.get("ef_construction", 80)),
        "ef_search": int(given.get("ef_search", 128)),
        "pre_reorder_num_neighbors": int(given.get("pre_reorder_num_neighbors", 400 if coarse else 100)),
        "pre_reorder_factor": int(given.get("pre_reorder_factor", 40 if coarse else 10)),
        "threads": int(given.get("threads", 1)),
    }
    if p["algorithm"] not in ALGORITHMS:
        raise ValueError(f"unknown faiss algorithm {p['algorithm']!r}; expected one of {', '.join(ALGORITHMS)}")
    for key, value in p.items():
        if key != "algorithm" and value < 1:
            raise ValueError(f"faiss parameter {key} must be a positive integer, found {value!r}")
    return p


def query_threads(threads: int, rows: int) -> int:
    """OpenMP threads for a query of ``rows`` rows when the index's parameter says ``threads``
    (see :data:`BATCH_THREADS`)."""
    if rows < 2:
        return threads
    return max(threads, min(BATCH_THREADS, rows, os.cpu_count() or 1))


def _padded(dim: int, p: dict[str, Any]) -> int:
    return dim if p["algorithm"] not in ("ivf_pq", "ivf_pq4") else -(-dim // p["pq_dims"]) * p["pq_dims"]


def _pad(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[1] == dim:
        return x
    out = np.zeros((len(x), dim), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out


def _factory(p: dict[str, Any], dim: int) -> str:
    if p["algorithm"] == "flat":
        return "Flat"
    if p["algorithm"] == "ivf_sq8":
        return f"IVF{p['nlist']},SQ8"
    if p["algorithm"] == "ivf_pq":
        return f"IVF{p['nlist']},PQ{dim // p['pq_dims']}x8"
    if p["algorithm"] == "ivf_pq4":
        return f"IVF{p['nlist']},PQ{dim // p['pq_dims']}x4fs"
    return f"HNSW{p['hnsw_m']},SQ8"


class FaissIndex:
    """Dot-product search with faiss; candidates re-scored exactly against the stored matrix.

    Attributes
    ----------
    backend : str
        ``"faiss"``.
    dim, count : int
    params : dict
        See the module docstring; ``nprobe``, ``ef_search`` and the re-ranking keys are read at
        every query.
    """

    backend = BACKEND

    def __init__(self, index: Any, vectors: Any, params: dict[str, Any]) -> None:
        self._index = index
        self._data = vectors
        self.count, self.dim = (int(s) for s in vectors.shape)
        self.params = params

    @classmethod
    def build(cls, vectors: np.ndarray, *, params: dict[str, Any] | None = None) -> Self:
        """Train on a sample, then add the rows in chunks of 65,536 (never all at once).

        Parameters
        ----------
        vectors : np.ndarray or Int8Matrix [shape=(n, dim)]
            Unit-length (or zero) rows; kept by reference for exact re-scoring.
        params : dict, optional
            Overrides of :func:`default_params`.
        """
        data = check_vectors(vectors)
        n, dim = data.shape
        p = _resolve(n, params)
        faiss = _faiss()
        faiss.omp_set_num_threads(p["threads"])
        padded = _padded(dim, p)
        index = faiss.index_factory(padded, _factory(p, padded), faiss.METRIC_INNER_PRODUCT)
        if p["algorithm"] == "hnsw":
            index.hnsw.efConstruction = p["ef_construction"]
        if not index.is_trained:
            sample_n = min(n, p["training_sample_size"])
            rows = np.sort(np.random.default_rng(0).choice(n, sample_n, replace=False))
            index.train(_pad(read_sample(data, rows), padded))
        for start in range(0, n, ADD_CHUNK):
            index.add(_pad(read_rows(data, start, start + ADD_CHUNK), padded))
        logger.debug("built faiss index of %d × %d with %s", n, dim, p)
        return cls(index, data, p)

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` stored rows with the largest dot product with each query (see ``VectorIndex``)."""
        queries, k, single = check_query(vectors, k, self.dim, self.count)
        if len(queries) == 0:
            return shape_result(np.empty((0, k), np.int64), np.empty((0, k), np.float32), single)
        p = self.params
        faiss = _faiss()
        faiss.omp_set_num_threads(query_threads(p["threads"], len(queries)))
        if p["algorithm"] in ("ivf_sq8", "ivf_pq", "ivf_pq4"):
            self._index.nprobe = p["nprobe"]
        elif p["algorithm"] == "hnsw":
            self._index.hnsw.efSearch = max(p["ef_search"], k)
        wanted = min(self.count, max(k, p["pre_reorder_num_neighbors"], p["pre_reorder_factor"] * k))
        _, found = self._index.search(_pad(queries, self._index.d), wanted)
        found = np.asarray(found, dtype=np.int64)
        valid = found >= 0
        pos, score = rescore(self._data, queries, np.where(valid, found, 0), valid, k)
        return shape_result(pos, score, single)

    def save(self, directory: Path) -> None:
        """Write ``faiss/index.faiss`` into ``directory``."""
        target = Path(directory) / FILENAME
        target.parent.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self._index, str(target))

    @classmethod
    def load(cls, directory: Path, vectors: np.ndarray, params: dict[str, Any]) -> Self:
        """Memory-map what :meth:`save` wrote (``ivf_pq4`` lists and ``hnsw`` graphs are read into memory).

        Raises
        ------
        IndexMismatchError
            If the file is missing or does not hold ``len(vectors)`` rows of the right dimension.
        """
        data = check_vectors(vectors)
        n, dim = data.shape
        path = Path(directory) / FILENAME
        if not path.is_file():
            raise IndexMismatchError(f"{path}: no faiss index here (file is missing)")
        faiss = _faiss()
        asked = {k: v for k, v in params.items() if k not in ("nlist",)}
        p = _resolve(n, {**asked, "nlist": params.get("nlist", 1)})
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if p["algorithm"] != "hnsw" else 0
        index = faiss.read_index(str(path), flags)
        if int(index.ntotal) != n:
            raise IndexMismatchError(f"{path}: faiss index expected {n} vectors, found {index.ntotal}")
        if int(index.d) != _padded(dim, p):
            raise IndexMismatchError(f"{path}: faiss index expected dim {_padded(dim, p)}, found {index.d}")
        return cls(index, data, p)
