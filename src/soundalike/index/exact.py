"""Exact (brute-force) dot-product search: the reference every other backend is measured against.

The score of a query ``q`` against a stored row ``x`` is ``q @ x``. Stored rows have unit length (or
are all zero), so for a full query this is the cosine similarity; for a query whose other families
are zeroed it is the similarity of one aspect; for a negated query the best hits are the least
similar items. The exact index ranks by that number with no approximation at all, and the
approximate backends use the helpers here to re-score their candidates, so that scores from every
backend are the same float32 dot products and can be compared directly.

Parameters
----------
There are no build-time parameters: building only keeps a reference to the matrix. Query-time
parameters bound memory, not quality:

``query_chunk`` (default 256)
    Queries scored together in one matrix product.
``block_rows`` (default ``max(1, 2**23 // query_chunk)`` = 32,768)
    Stored rows scored per matrix product. One score block holds ``query_chunk * block_rows``
    float32 values (32 MiB by default) whatever the library size, and the matrix is read once per
    chunk of queries. With argpartition's int64 indices the temporaries peak near 160 MiB
    (measured: 1,000 queries over a 1,000,000 × 300 memory-mapped matrix), on top of the pages of
    the matrix itself.

Latency grows linearly with the library. A single query is memory-bound: it reads the whole matrix
(156 MB for 100,000 × 390 rows, about 15 ms). Batches share that read: 1,000 queries over
1,000,000 × 300 rows took 5 s on 2 cores with the matrix in the page cache (5 ms per query). Recall is 1 by definition.
"""

from __future__ import annotations

import logging
from numbers import Integral
from pathlib import Path
from typing import Any, Self

import numpy as np

from soundalike.index.storage import Int8Matrix, scanning

logger = logging.getLogger(__name__)

BACKEND = "exact"
SCORE_BLOCK_ELEMENTS = 2**23
"""Float32 scores held at once by one block of the exact search (32 MiB)."""

RESCORE_BLOCK_ELEMENTS = 2**23
"""Float32 values of gathered candidate rows held at once while re-scoring (32 MiB)."""


def default_params(n: int, dim: int) -> dict[str, Any]:
    """Parameters of the exact index; they do not depend on ``n`` or ``dim``.

    Parameters
    ----------
    n : int
        Number of stored rows.
    dim : int
        Dimension of the rows.

    Returns
    -------
    dict
        ``{"query_chunk": 256, "block_rows": 32768}``; see the module docstring.
    """
    query_chunk = 256
    return {"query_chunk": query_chunk, "block_rows": max(1, SCORE_BLOCK_ELEMENTS // query_chunk)}


def merge_params(
    defaults: dict[str, Any], params: dict[str, Any] | None, backend: str
) -> dict[str, Any]:
    """Overlay ``params`` on ``defaults``, refusing keys the backend does not know."""
    merged = dict(defaults)
    if params:
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown {backend} index parameter(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(defaults))}"
            )
        merged.update(params)
    return merged


def check_vectors(vectors: np.ndarray) -> np.ndarray:
    """Validate a build matrix; return it as C-contiguous float32 (no copy if it already is).

    A float16 array or an :class:`~soundalike.index.storage.Int8Matrix` (compact storage, see
    :mod:`soundalike.index.storage`) is returned as it is: every reader converts the rows it reads
    to float32, so a memory-mapped matrix is never materialised.
    """
    if isinstance(vectors, Int8Matrix) or (isinstance(vectors, np.ndarray) and vectors.dtype == np.float16 and vectors.ndim == 2):
        if vectors.shape[0] == 0:
            raise ValueError("cannot build an index of 0 vectors")
        return vectors  # type: ignore[return-value]
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a 2-D matrix (n, dim), found shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("cannot build an index of 0 vectors")
    if array.shape[1] == 0:
        raise ValueError("cannot build an index of 0-dimensional vectors")
    if array.dtype != np.float32:
        logger.debug("converting %s build matrix to float32", array.dtype)
    return np.ascontiguousarray(array, dtype=np.float32)


def check_query(vectors: np.ndarray, k: int, dim: int, count: int) -> tuple[np.ndarray, int, bool]:
    """Validate a query and return it as a float32 ``(m, dim)`` batch, the usable k and 1-D-ness."""
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise ValueError(f"k must be a positive integer, found {k!r}")
    if k <= 0:
        raise ValueError(f"k must be a positive integer, found {k}")
    queries = np.asarray(vectors)
    if queries.ndim not in (1, 2):
        raise ValueError(
            f"query must be a vector (dim,) or a batch (n, dim), found shape {queries.shape}"
        )
    found = queries.shape[-1]
    if found != dim:
        raise ValueError(f"query vectors: expected dim {dim}, found {found}")
    single = queries.ndim == 1
    batch = np.ascontiguousarray(queries.reshape(-1, dim), dtype=np.float32)
    if not np.isfinite(batch).all():
        raise ValueError("query vectors contain NaN or infinite values")
    return batch, min(int(k), count), single


def sort_rows(positions: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``k`` best of each row, sorted by descending score then ascending position."""
    if positions.shape[1] > k:
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        positions = np.take_along_axis(positions, keep, axis=1)
        scores = np.take_along_axis(scores, keep, axis=1)
    # lexsort's last key is the primary one; ties go to the lower position so results are stable.
    order = np.lexsort((positions, -scores), axis=1)
    return np.take_along_axis(positions, order, axis=1), np.take_along_axis(scores, order, axis=1)


def exact_search(
    data: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    query_chunk: int = 256,
    block_rows: int = SCORE_BLOCK_ELEMENTS // 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by dot product, in blocks so memory stays bounded.

    Parameters
    ----------
    data : np.ndarray [shape=(n, dim), dtype=float32]
        Stored rows; may be memory-mapped.
    queries : np.ndarray [shape=(m, dim), dtype=float32]
    k : int
        Neighbours per query, ``1 <= k <= n``.
    query_chunk, block_rows : int
        Block sizes; see the module docstring.

    Returns
    -------
    positions : np.ndarray [shape=(m, k), dtype=int64]
    scores : np.ndarray [shape=(m, k), dtype=float32]
        Sorted by descending score.
    """
    with scanning(data):  # every row, in order: read ahead even when mapped for random reads
        return _exact_search(data, queries, k, query_chunk=query_chunk, block_rows=block_rows)


def _exact_search(
    data: np.ndarray, queries: np.ndarray, k: int, *, query_chunk: int, block_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    n = data.shape[0]
    m = queries.shape[0]
    query_chunk = max(1, int(query_chunk))
    block_rows = max(1, int(block_rows))
    out_pos = np.empty((m, k), dtype=np.int64)
    out_score = np.empty((m, k), dtype=np.float32)
    for q0 in range(0, m, query_chunk):
        chunk = queries[q0 : q0 + query_chunk]
        best_pos = np.empty((len(chunk), 0), dtype=np.int64)
        best_score = np.empty((len(chunk), 0), dtype=np.float32)
        for r0 in range(0, n, block_rows):
            block = np.asarray(data[r0 : r0 + block_rows], dtype=np.float32)
            # Negated in place: argpartition then finds the best without a second score block.
            negated = chunk @ block.T
            np.negative(negated, out=negated)
            kk = min(k, block.shape[0])
            if kk < block.shape[0]:
                top = np.argpartition(negated, kk - 1, axis=1)[:, :kk]
            else:
                top = np.broadcast_to(np.arange(block.shape[0]), negated.shape)
            top_scores = -np.take_along_axis(negated, top, axis=1)
            best_pos = np.concatenate([best_pos, top + r0], axis=1)
            best_score = np.concatenate([best_score, top_scores], axis=1)
            if best_pos.shape[1] > k:
                keep = np.argpartition(-best_score, k - 1, axis=1)[:, :k]
                best_pos = np.take_along_axis(best_pos, keep, axis=1)
                best_score = np.take_along_axis(best_score, keep, axis=1)
        pos, score = sort_rows(best_pos, best_score, k)
        out_pos[q0 : q0 + len(chunk)] = pos
        out_score[q0 : q0 + len(chunk)] = score
    return out_pos, out_score


def rescore(
    data: np.ndarray,
    queries: np.ndarray,
    candidates: np.ndarray,
    valid: np.ndarray,
    k: int,
    *,
    query_chunk: int = 256,
    block_rows: int = SCORE_BLOCK_ELEMENTS // 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score approximate candidates by exact dot product and keep the best ``k`` of each query.

    Queries that have fewer than ``k`` valid candidates (an approximate search can come back short)
    are answered by :func:`exact_search` instead, so every row has ``k`` results.

    Parameters
    ----------
    data : np.ndarray [shape=(n, dim), dtype=float32]
        Stored rows; may be memory-mapped.
    queries : np.ndarray [shape=(m, dim), dtype=float32]
    candidates : np.ndarray [shape=(m, c), dtype=int]
        Candidate positions from the approximate search.
    valid : np.ndarray [shape=(m, c), dtype=bool]
        False where the approximate search padded a row instead of returning a candidate.
    k : int
        Neighbours per query, ``1 <= k <= n``.
    query_chunk, block_rows : int
        Passed to :func:`exact_search` for the fallback.

    Returns
    -------
    positions : np.ndarray [shape=(m, k), dtype=int64]
    scores : np.ndarray [shape=(m, k), dtype=float32]
        Exact dot products, sorted by descending score.
    """
    m, dim = queries.shape
    candidates = np.asarray(candidates, dtype=np.int64).reshape(m, -1)
    valid = np.asarray(valid, dtype=bool).reshape(m, -1)
    c = candidates.shape[1]
    out_pos = np.empty((m, k), dtype=np.int64)
    out_score = np.empty((m, k), dtype=np.float32)
    short = valid.sum(axis=1) < k
    step = max(1, RESCORE_BLOCK_ELEMENTS // max(1, c * dim))
    for q0 in range(0, m, step):
        sl = slice(q0, q0 + step)
        cand = np.where(valid[sl], candidates[sl], 0)
        # Gathering sorted unique rows touches a memory-mapped file in order, once per row.
        rows, inverse = np.unique(cand, return_inverse=True)
        gathered = np.asarray(data[rows], dtype=np.float32)[inverse.reshape(cand.shape)]
        scores = np.matmul(gathered, queries[sl][:, :, None])[:, :, 0]
        scores = np.where(valid[sl], scores, -np.inf).astype(np.float32)
        kk = min(k, c)
        pos, sc = sort_rows(cand, scores, kk)
        out_pos[sl, :kk] = pos
        out_score[sl, :kk] = sc
    if short.any():
        logger.debug(
            "%d of %d queries came back short; answering them exactly", int(short.sum()), m
        )
        pos, sc = exact_search(
            data, queries[short], k, query_chunk=query_chunk, block_rows=block_rows
        )
        out_pos[short] = pos
        out_score[short] = sc
    return out_pos, out_score


def shape_result(
    positions: np.ndarray, scores: np.ndarray, single: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(k,)`` arrays for a 1-D query and ``(m, k)`` arrays for a batch."""
    if single:
        return positions[0], scores[0]
    return positions, scores


class ExactIndex:
    """Brute-force dot-product search over the build matrix.

    Attributes
    ----------
    backend : str
        ``"exact"``.
    dim : int
    count : int
    params : dict
        ``query_chunk`` and ``block_rows``; see the module docstring.
    """

    backend = BACKEND

    def __init__(self, vectors: np.ndarray, params: dict[str, Any]) -> None:
        self._data = vectors
        self.count, self.dim = (int(s) for s in vectors.shape)
        self.params = params

    @classmethod
    def build(cls, vectors: np.ndarray, *, params: dict[str, Any] | None = None) -> Self:
        """Wrap ``vectors`` [shape=(n, dim), dtype=float32]; nothing is copied or trained."""
        data = check_vectors(vectors)
        n, dim = data.shape
        return cls(data, merge_params(default_params(n, dim), params, BACKEND))

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` stored rows with the largest dot product with each query.

        Parameters
        ----------
        vectors : np.ndarray [shape=(dim,) or (m, dim)]
            Query vectors; need not be unit length.
        k : int
            Neighbours wanted; ``min(k, count)`` are returned.

        Returns
        -------
        positions : np.ndarray [shape=(k,) or (m, k), dtype=int64]
            Row numbers of the build matrix.
        scores : np.ndarray [shape=(k,) or (m, k), dtype=float32]
            Dot products, descending.

        Raises
        ------
        ValueError
            If ``k <= 0`` or the query dimension is not ``dim``.
        """
        queries, k, single = check_query(vectors, k, self.dim, self.count)
        pos, score = exact_search(
            self._data,
            queries,
            k,
            query_chunk=self.params["query_chunk"],
            block_rows=self.params["block_rows"],
        )
        return shape_result(pos, score, single)

    def save(self, directory: Path) -> None:
        """Nothing to write: the exact index is the build matrix, which the caller stores."""

    @classmethod
    def load(cls, directory: Path, vectors: np.ndarray, params: dict[str, Any]) -> Self:
        """Wrap the caller's (memory-mapped) build matrix again; ``directory`` is not read."""
        return cls.build(vectors, params=params)
