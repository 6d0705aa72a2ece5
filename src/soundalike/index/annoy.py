"""Annoy backend: random-projection trees, memory-mapped from one file.

Annoy (Spotify) builds a forest of trees, each splitting the points by random hyperplanes until the
leaves are small. A query walks all trees at once, best-first, collecting the points of the leaves
it reaches until it has ``search_k`` candidates, then ranks the candidates exactly. The index file
holds its own copy of the vectors and is memory-mapped on load, so several processes share it.

We build with the ``angular`` metric (cosine distance). Stored rows all have unit length (or are
zero), so ranking by cosine is ranking by dot product, for any query: an aspect query (other
dimensions zeroed) or a negated query ("least similar") only changes the query's length or sign.
The candidates Annoy returns are re-scored by exact dot product against the caller's build matrix,
so scores equal those of the exact index.

Parameters and the rule that derives them
-----------------------------------------
:func:`default_params` derives everything from the library size ``n``; any key may be overridden.

Build-time parameters (fixed once built):

``n_trees``
    ``clip(round(10 * log10(n) - 30), 10, 50)``: 10 trees up to 10,000 tracks, 20 at 100,000, 30
    at 1,000,000, 40 at 10,000,000. More trees give better recall for the same ``search_k``, a
    larger index (each tree costs about ``n`` small nodes on top of the ``n * dim`` floats) and a
    longer build.
``metric``
    ``"angular"`` (``"dot"`` is accepted and ranks the same for unit rows).
``seed``
    42, so that a rebuild of the same matrix on the same machine gives the same trees.

Query-time parameters (can differ per load, e.g. after tuning):

``search_k_factor``
    50: a query inspects ``search_k = 50 * n_trees * k`` candidates (Annoy's own default is
    ``n_trees * k``, which gives poor recall at 390 dimensions). Latency grows about linearly with
    ``search_k``. Measured on clustered 390-d data at n = 3,000 (10 trees): factor 10 gives
    recall@10 of 0.99 for full queries but 0.93 for negated ones; factor 50 gives >= 0.99 for both.
    Negated and aspect queries need a larger factor than full ones for the same recall.
``search_k``
    ``None``; an integer fixes ``search_k`` for every query whatever ``k`` is (``-1`` is Annoy's
    default ``n_trees * k``). This is the key a tuning step sets.

=========== ======= =================== =====================
n           n_trees search_k (k = 10)  fraction of n (k=10)
=========== ======= =================== =====================
3,000         10         5,000            all (≈ 1.7 n)
10,000        10         5,000            0.5
100,000       20        10,000            0.1
1,000,000     30        15,000            0.015
=========== ======= =================== =====================

A query that comes back with fewer than ``k`` candidates is answered exactly instead, so results
always have ``k`` columns.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Self

import numpy as np

from soundalike.errors import IndexMismatchError
from soundalike.index.exact import (
    check_query,
    check_vectors,
    merge_params,
    rescore,
    shape_result,
)

logger = logging.getLogger(__name__)

BACKEND = "annoy"
METRICS = ("angular", "dot")
FILENAME = "annoy.ann"
_BUILD_KEYS = ("metric", "n_trees", "seed")


def default_params(n: int, dim: int) -> dict[str, Any]:
    """Parameters the documented rule derives for ``n`` stored rows of dimension ``dim``.

    Parameters
    ----------
    n : int
        Number of stored rows.
    dim : int
        Dimension of the rows.

    Returns
    -------
    dict
        ``metric``, ``n_trees``, ``seed``, ``search_k_factor`` and ``search_k``; see the module
        docstring.
    """
    n_trees = int(min(50, max(10, round(10 * math.log10(max(n, 1)) - 30))))
    return {
        "metric": "angular",
        "n_trees": n_trees,
        "seed": 42,
        "search_k_factor": 50,
        "search_k": None,
    }


def _resolve(n: int, dim: int, params: dict[str, Any] | None) -> dict[str, Any]:
    """Validate overrides and return the parameters that will actually be used."""
    p = merge_params(default_params(n, dim), params, BACKEND)
    if p["metric"] not in METRICS:
        raise ValueError(
            f"unknown Annoy metric {p['metric']!r}; expected one of {', '.join(METRICS)}"
        )
    for key in ("n_trees", "search_k_factor"):
        value = p[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"Annoy parameter {key} must be a positive integer, found {value!r}")
        p[key] = int(value)
    if p["search_k"] is not None:
        value = p["search_k"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or value == 0
            or value < -1
        ):
            raise ValueError(
                f"Annoy parameter search_k must be a positive integer or -1, found {value!r}"
            )
        p["search_k"] = int(value)
    p["seed"] = int(p["seed"])
    return p


def _annoy_class() -> Any:
    """Import Annoy on first use."""
    from annoy import AnnoyIndex  # the top-level library, not this module: imports are absolute

    return AnnoyIndex


class AnnoyIndex:
    """Dot-product search with an Annoy forest (angular metric) and exact re-scoring.

    Attributes
    ----------
    backend : str
        ``"annoy"``.
    dim : int
    count : int
    params : dict
        Parameters in use; see the module docstring. Query-time keys (``search_k``,
        ``search_k_factor``) are read at every query.
    """

    backend = BACKEND

    def __init__(self, forest: Any, vectors: np.ndarray, params: dict[str, Any]) -> None:
        self._forest = forest
        self._data = vectors
        self.count, self.dim = (int(s) for s in vectors.shape)
        self.params = params

    @classmethod
    def build(cls, vectors: np.ndarray, *, params: dict[str, Any] | None = None) -> Self:
        """Build an Annoy forest over ``vectors`` in memory, using every core.

        Parameters
        ----------
        vectors : np.ndarray [shape=(n, dim), dtype=float32]
            Unit-length (or zero) rows; kept by reference for exact re-scoring.
        params : dict, optional
            Overrides of :func:`default_params`.

        Returns
        -------
        AnnoyIndex

        Raises
        ------
        ValueError
            For an empty matrix or an unknown or invalid parameter.
        """
        data = check_vectors(vectors)
        n, dim = data.shape
        p = _resolve(n, dim, params)
        forest = _annoy_class()(dim, p["metric"])
        forest.set_seed(p["seed"])
        for i, row in enumerate(data):
            forest.add_item(i, row)
        forest.build(p["n_trees"], n_jobs=-1)
        logger.debug("built Annoy index of %d × %d with %s", n, dim, p)
        return cls(forest, data, p)

    def _search_k(self, k: int) -> int:
        """Candidates to inspect for a query of ``k`` neighbours."""
        if self.params["search_k"] is not None:
            return int(self.params["search_k"])
        return int(self.params["search_k_factor"]) * int(self.params["n_trees"]) * k

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
            Exact dot products, descending.

        Raises
        ------
        ValueError
            If ``k <= 0`` or the query dimension is not ``dim``.
        """
        queries, k, single = check_query(vectors, k, self.dim, self.count)
        search_k = self._search_k(k)
        found = np.zeros((len(queries), k), dtype=np.int64)
        valid = np.zeros((len(queries), k), dtype=bool)
        for row, query in enumerate(queries):
            hits = self._forest.get_nns_by_vector(query, k, search_k)
            found[row, : len(hits)] = hits
            valid[row, : len(hits)] = True
        pos, score = rescore(self._data, queries, found, valid, k)
        return shape_result(pos, score, single)

    def save(self, directory: Path) -> None:
        """Write the forest to ``directory / "annoy.ann"``; Annoy then memory-maps that file."""
        self._forest.save(str(Path(directory) / FILENAME))

    @classmethod
    def load(cls, directory: Path, vectors: np.ndarray, params: dict[str, Any]) -> Self:
        """Memory-map a forest written by :meth:`save`.

        Parameters
        ----------
        directory : Path
            The folder given to :meth:`save`.
        vectors : np.ndarray [shape=(n, dim), dtype=float32]
            The build matrix (typically memory-mapped), used for exact re-scoring.
        params : dict
            Parameters recorded at build time; query-time keys may differ from those used then.

        Raises
        ------
        IndexMismatchError
            If the file is missing or does not hold the ``n`` vectors of dimension ``dim`` given
            (a few rows are compared).
        """
        data = check_vectors(vectors)
        n, dim = data.shape
        p = _resolve(n, dim, params)
        path = Path(directory) / FILENAME
        if not path.is_file():
            raise IndexMismatchError(f"{path}: no Annoy index here (file is missing)")
        forest = _annoy_class()(dim, p["metric"])
        try:
            forest.load(str(path))
        except OSError as exc:
            raise IndexMismatchError(
                f"{path}: cannot load as a {dim}-dimensional Annoy index: {exc}"
            ) from exc
        stored = int(forest.get_n_items())
        if stored != n:
            raise IndexMismatchError(f"{path}: Annoy index expected {n} vectors, found {stored}")
        # get_n_trees() is not checked: after a load Annoy counts every node that spans all items as
        # a root, so small libraries report more trees than were built.
        for row in sorted({0, n // 2, n - 1}):
            if not np.allclose(forest.get_item_vector(row), data[row], atol=1e-6):
                raise IndexMismatchError(
                    f"{path}: Annoy index holds a different vector at row {row}"
                )
        return cls(forest, data, p)
