"""A query fanned out over index shards and merged: how a library larger than one machine is searched.

Each shard is an ordinary :class:`~soundalike.index.VectorIndex` over a contiguous block of rows
(on one machine: a folder; beyond one machine: a Dask worker holding the shards of its partition, see
``docs/scaling.md``). Every backend returns exact dot products of its candidates, so the merged
top ``k`` of the shards' top ``k`` lists is the top ``k`` of the whole library whenever each shard's
answer is right: sharding costs no recall by itself.

``submit`` decides where the shards' queries run: the default runs them one after the other in this
process; a Dask ``Client.submit`` (or an executor's) runs them where the shards live and the merge
happens in the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from soundalike.index import VectorIndex
from soundalike.index.exact import check_query, shape_result, sort_rows


def merge_top_k(
    answers: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard ``(positions, scores)`` [shape=(m, k_i)] into global top-``k`` rows.

    Parameters
    ----------
    answers : sequence of (np.ndarray, np.ndarray)
        Each shard's positions (within the shard) and exact scores.
    offsets : sequence of int
        The global row of each shard's first row.
    k : int

    Returns
    -------
    positions, scores : np.ndarray [shape=(m, k)]
        Sorted by descending score, ties to the lower global row.
    """
    positions = np.concatenate([np.asarray(p, dtype=np.int64) + off for (p, _), off in zip(answers, offsets, strict=True)], axis=1)
    scores = np.concatenate([np.asarray(s, dtype=np.float32) for _, s in answers], axis=1)
    return sort_rows(positions, scores, min(k, positions.shape[1]))


class ShardedIndex:
    """Several indexes answering as one; rows are numbered shard after shard.

    Parameters
    ----------
    shards : sequence of VectorIndex
        Of one dimension.
    submit : callable, optional
        ``submit(fn, *args) -> future`` with ``future.result()``; default: run in this process.
    """

    backend = "sharded"

    def __init__(self, shards: Sequence[VectorIndex], *, submit: Callable[..., Any] | None = None) -> None:
        if not shards:
            raise ValueError("a sharded index needs at least one shard")
        dims = {s.dim for s in shards}
        if len(dims) != 1:
            raise ValueError(f"shards of one dimension expected, found dims {sorted(dims)}")
        self.shards = list(shards)
        self.dim = dims.pop()
        self.offsets = np.concatenate([[0], np.cumsum([s.count for s in shards])]).astype(np.int64)
        self.count = int(self.offsets[-1])
        self.params: dict[str, Any] = {"shards": len(shards), "backends": sorted({s.backend for s in shards})}
        self._submit = submit

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows of all shards with the largest dot product (see ``VectorIndex.query``)."""
        queries, k, single = check_query(vectors, k, self.dim, self.count)
        if self._submit is None:
            answers = [shard.query(queries, min(k, shard.count)) for shard in self.shards]
        else:
            futures = [self._submit(_query_shard, shard, queries, min(k, shard.count)) for shard in self.shards]
            answers = [f.result() for f in futures]
        pos, score = merge_top_k(answers, self.offsets[:-1].tolist(), k)
        return shape_result(pos, score, single)


def _query_shard(shard: VectorIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return shard.query(queries, k)
