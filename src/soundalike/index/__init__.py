"""Vector indexes: find the stored rows with the largest dot product with a query.

Every backend answers the same question on the same float32 matrix. Stored rows have unit length
(or are all zero) and the score is the dot product, higher meaning more similar. Queries need not
be unit length: a query for one aspect is a vector with the other families' dimensions zeroed, and
a query for the *least* similar items is a negated vector; every backend ranks those by dot product
too. Approximate backends re-score their candidates exactly against the build matrix, so the scores
of all backends are the same numbers and the exact backend is the reference in every test.

Backends
--------
``exact``
    Brute force in blocked numpy matrix products (:mod:`soundalike.index.exact`); recall 1.
``scann``
    ScaNN tree + asymmetric hashing, brute force for small libraries
    (:mod:`soundalike.index.scann`); what the default, ``auto``, builds below 750,000 tracks.
``annoy``
    Annoy random-projection forest (:mod:`soundalike.index.annoy`).
``faiss``
    faiss inverted lists with 8-bit codes, built in chunks and memory-mapped on load
    (:mod:`soundalike.index.faiss`); the segment index of large libraries, and what ``auto``
    builds for the tracks from 750,000 of them (IVF-PQ with 4-bit fast-scan codes,
    :func:`soundalike.index.bundle.resolve_backend`).

Each backend module documents its build-time and query-time parameters, the rule
:func:`default_params` uses to derive them from the library size, and the recall/latency trade-off.
``params`` given to :func:`build_index` or :func:`load_index` override any key of the rule.

An index lives in a directory: the caller writes ``manifest.json`` and the build matrix (a
``.npy`` that is memory-mapped on load), the backend's :meth:`~VectorIndex.save` adds its own
files. Importing this package imports neither ScaNN nor Annoy; they are imported when an index is
built or loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:  # numpy only in annotations: the CLI imports TUNABLE_BACKENDS at start-up
    import numpy as np

from soundalike.vocabulary import INDEX_BACKENDS, TUNABLE_BACKENDS

if TYPE_CHECKING:
    from soundalike.index.storage import SearchMatrix

__all__ = ["BACKENDS", "INDEX_BACKENDS", "TUNABLE_BACKENDS", "VectorIndex", "build_index", "default_params", "load_index"]

BACKENDS: dict[str, tuple[str, str]] = {
    "exact": ("soundalike.index.exact", "ExactIndex"),
    "scann": ("soundalike.index.scann", "ScannIndex"),
    "annoy": ("soundalike.index.annoy", "AnnoyIndex"),
    "faiss": ("soundalike.index.faiss", "FaissIndex"),
}
"""Backend name → (module, class); modules are imported on first use."""
assert set(BACKENDS) == set(INDEX_BACKENDS), "soundalike.vocabulary.INDEX_BACKENDS names every backend"


@runtime_checkable
class VectorIndex(Protocol):
    """What every backend provides.

    Attributes
    ----------
    backend : str
        ``"exact"``, ``"scann"`` or ``"annoy"``.
    dim : int
        Dimension of stored rows and queries.
    count : int
        Number of stored rows.
    params : dict
        Build-time and query-time parameters actually in use; JSON-serialisable.
    """

    backend: str
    dim: int
    count: int
    params: dict[str, Any]

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` stored rows with the largest dot product with each query.

        Parameters
        ----------
        vectors : np.ndarray [shape=(dim,) or (m, dim)]
            One query or a batch; need not be unit length.
        k : int
            Neighbours wanted; ``min(k, count)`` columns are returned.

        Returns
        -------
        positions : np.ndarray [shape=(k,) or (m, k), dtype=int64]
            Row numbers ``0 .. count - 1`` of the build matrix.
        scores : np.ndarray [shape=(k,) or (m, k), dtype=float32]
            Exact dot products, sorted descending.

        Raises
        ------
        ValueError
            If ``k <= 0`` or the query dimension is not ``dim`` ("expected dim X, found Y").
        """
        ...

    def save(self, directory: Path) -> None:
        """Write the backend's own files into the existing ``directory`` (not the manifest)."""
        ...

    @classmethod
    def load(cls, directory: Path, vectors: np.ndarray, params: dict[str, Any]) -> Self:
        """Load what :meth:`save` wrote; ``vectors`` is the same (memory-mapped) build matrix."""
        ...


def _backend_class(backend: str) -> Any:
    """The class implementing ``backend``, importing its module on first use."""
    try:
        module, name = BACKENDS[backend]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown index backend {backend!r}; expected one of {', '.join(BACKENDS)}"
        ) from None
    return getattr(importlib.import_module(module), name)


def default_params(backend: str, n: int, dim: int) -> dict[str, Any]:
    """Parameters the backend's documented rule derives for a library of ``n`` rows.

    Parameters
    ----------
    backend : str
        ``"exact"``, ``"scann"`` or ``"annoy"``.
    n : int
        Number of stored rows.
    dim : int
        Dimension of the rows.

    Returns
    -------
    dict
        JSON-serialisable build-time and query-time parameters.

    Raises
    ------
    ValueError
        For an unknown backend.
    """
    _backend_class(backend)
    module = importlib.import_module(BACKENDS[backend][0])
    return dict(module.default_params(int(n), int(dim)))


def build_index(
    backend: str, vectors: SearchMatrix, *, params: dict[str, Any] | None = None
) -> VectorIndex:
    """Build an index over the rows of ``vectors`` in one shot.

    Parameters
    ----------
    backend : str
        ``"exact"``, ``"scann"`` or ``"annoy"``.
    vectors : np.ndarray [shape=(n, dim), dtype=float32]
        Unit-length (or all-zero) rows. Positions returned by queries are row numbers of this
        matrix; backends keep a reference to it for exact re-scoring, so do not modify it.
    params : dict, optional
        Overrides of :func:`default_params`; unknown keys are refused.

    Returns
    -------
    VectorIndex

    Raises
    ------
    ValueError
        For an unknown backend, an empty matrix ("cannot build an index of 0 vectors") or an invalid
        parameter.
    """
    cls = _backend_class(backend)
    index: VectorIndex = cls.build(vectors, params=params)
    return index


def load_index(
    backend: str, directory: Path, vectors: SearchMatrix, params: dict[str, Any]
) -> VectorIndex:
    """Load an index saved with :meth:`VectorIndex.save`.

    Parameters
    ----------
    backend : str
        ``"exact"``, ``"scann"`` or ``"annoy"``.
    directory : Path
        Folder the index was saved into.
    vectors : np.ndarray [shape=(n, dim), dtype=float32]
        The build matrix, typically ``np.load(..., mmap_mode="r")``.
    params : dict
        Parameters recorded when the index was built (``index.params``); query-time keys may be
        changed.

    Returns
    -------
    VectorIndex

    Raises
    ------
    ValueError
        For an unknown backend.
    soundalike.errors.IndexMismatchError
        If the backend's files are missing or do not match ``vectors`` or ``params``.
    """
    cls = _backend_class(backend)
    index: VectorIndex = cls.load(Path(directory), vectors, dict(params))
    return index
