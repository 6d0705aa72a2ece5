"""ScaNN backend: the default index for libraries of thousands to millions of tracks.

ScaNN (Guo et al., 2020) searches in three stages: a k-means *tree* picks the partitions
("leaves") closest to the query, *asymmetric hashing* (AH) scores every point in those leaves from
4-bit codes, and the best candidates are *re-scored exactly*. Here the exact re-scoring is done in
numpy against the caller's build matrix (the memory-mapped ``.npy`` kept next to the index) rather
than by ScaNN's own ``reorder`` stage: ScaNN would otherwise serialise and hold a second float32
copy of every vector. The scores returned are therefore the same float32 dot products the exact
index gives.

The index is built once from the whole matrix (ScaNN builds in one shot); adding tracks means
building again.

Parameters and the rule that derives them
-----------------------------------------
:func:`default_params` derives everything from the library size ``n``; any key may be overridden
(a tuning step injects grid-searched values this way).

Build-time parameters (fixed once built; changing them means rebuilding):

``algorithm``
    ``"brute_force"`` when ``n < 2,000``, else ``"tree_ah"``. Exact float32 brute force over
    2,000 × 390 values costs well under a millisecond per query, so approximation buys nothing
    there. (ScaNN's own guide suggests brute force up to ~20,000 points; we switch earlier so that
    the tree is the path most libraries exercise.) A tree is never built for fewer than 256 points,
    whatever is asked: k-means and 16-centre AH codebooks need more points than that.
``num_leaves``
    ``max(2, min(round(sqrt(n)), n // 100))``. ``sqrt(n)`` is ScaNN's rule of thumb; the cap keeps
    the mean leaf at 100 points or more, twice ScaNN's ``min_partition_size`` of 50. Measured on
    clustered 390-d data at n = 3,000: 55 leaves (mean 55 points) lost 12 % of recall@10 against
    30 leaves, because k-means fights the minimum size and leaves end up as poor clusters.
``min_partition_size``
    50 (ScaNN's default).
``training_sample_size``
    ``min(n, 100,000)`` points train the k-means tree and the AH codebooks. More costs build time,
    rarely recall.
``dimensions_per_block``, ``anisotropic_quantization_threshold``
    2 and 0.2, as ScaNN recommends for dot-product search: one 4-bit code per pair of dimensions,
    with quantisation error penalised more along the datapoint direction (the part that moves the
    dot product).

Query-time parameters (can differ per load, e.g. after tuning):

``leaves_to_search``
    ``ceil(f * num_leaves)`` with ``f = clip(0.25 * (2,000 / n) ** 0.25, 0.04, 0.25)``, at least
    2 and at most ``num_leaves``: a quarter of the leaves at 2,000 points, 17 % at 10,000, 9 % at
    100,000, 5 % at 1,000,000 and 4 % from about 3,000,000. This is the main recall/latency knob:
    latency grows about linearly with the points scored (``n * leaves_to_search / num_leaves``).
    Queries that ask for one aspect (other dimensions zeroed) and negated queries (least similar)
    need a larger fraction than full queries for the same recall, because their answers are spread
    over more leaves; the fractions above were chosen so that all three reach recall@10 >= 0.95 on
    clustered test data (see tests/index/test_backends.py for how such data must look).
``pre_reorder_num_neighbors``, ``pre_reorder_factor``
    100 and 10: ``max(100, 10 * k)`` AH candidates per query are re-scored exactly (capped at
    ``n``). More candidates fix more AH ranking errors at the cost of gathering more rows.

=========== =========== ========== ================== ==================
n           algorithm   num_leaves leaves_to_search   candidates (k=10)
=========== =========== ========== ================== ==================
< 2,000     brute_force     --           --            all n
3,000       tree_ah         30           7             100
10,000      tree_ah        100          17             100
100,000     tree_ah        316          30             100
1,000,000   tree_ah       1000          53             100
10,000,000  tree_ah       3162         127             100
=========== =========== ========== ================== ==================

A query that comes back with fewer than ``k`` candidates (possible when few, small leaves are
searched) is answered exactly instead, so results always have ``k`` columns.

ScaNN logs through absl to stderr (k-means progress, warnings about empty partitions). That output
is switched off (minimum level ERROR) the first time ScaNN is used, unless this module's logger is
enabled for DEBUG; ``TF_CPP_MIN_LOG_LEVEL`` and ``GLOG_minloglevel`` have no effect on it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import mmap
import re
import shutil
import sys
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
from soundalike.index.storage import as_float32

logger = logging.getLogger(__name__)

BACKEND = "scann"
ALGORITHMS = ("brute_force", "tree_ah")
BRUTE_FORCE_BELOW = 2_000
"""Libraries smaller than this are searched exactly inside ScaNN by default."""
MIN_TREE_POINTS = 256
"""No tree/AH index is trained on fewer points than this, whatever the parameters say."""
MIN_PARTITION_SIZE = 50
"""Default ``min_partition_size``: the fewest points a leaf should hold on average."""
SUBDIRECTORY = "scann"
"""ScaNN's files go in their own folder: its ``dataset.npy`` must not meet the caller's files."""

_TREE_KEYS = (
    "num_leaves",
    "min_partition_size",
    "training_sample_size",
    "dimensions_per_block",
    "anisotropic_quantization_threshold",
    "leaves_to_search",
    "pre_reorder_num_neighbors",
    "pre_reorder_factor",
)
_BUILD_KEYS = (
    "algorithm",
    "num_leaves",
    "min_partition_size",
    "training_sample_size",
    "dimensions_per_block",
    "anisotropic_quantization_threshold",
)
_PARALLEL_FROM = 256
"""Batches at least this large are searched on ScaNN's thread pool."""


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
        ``{"algorithm": "brute_force"}`` below 2,000 rows, otherwise the tree/AH keys described in
        the module docstring.
    """
    return _resolve(n, dim, None)


def _rule(n: int, params: dict[str, Any]) -> dict[str, Any]:
    """Every key, each derived from ``n`` and the (possibly overridden) keys before it."""
    out: dict[str, Any] = {}

    def pick(key: str, derived: Any) -> Any:
        out[key] = params.get(key, derived)
        return out[key]

    pick("algorithm", "brute_force" if n < BRUTE_FORCE_BELOW else "tree_ah")
    leaves = int(pick("num_leaves", max(2, min(round(math.sqrt(n)), n // 100))))
    pick("min_partition_size", MIN_PARTITION_SIZE)
    pick("training_sample_size", min(n, 100_000))
    pick("dimensions_per_block", 2)
    pick("anisotropic_quantization_threshold", 0.2)
    fraction = min(0.25, max(0.04, 0.25 * (BRUTE_FORCE_BELOW / max(n, 1)) ** 0.25))
    pick("leaves_to_search", min(leaves, max(2, math.ceil(fraction * leaves))))
    pick("pre_reorder_num_neighbors", 100)
    pick("pre_reorder_factor", 10)
    return out


def _resolve(n: int, dim: int, params: dict[str, Any] | None) -> dict[str, Any]:
    """Validate overrides, apply the rule and return the parameters that will actually be used."""
    allowed = dict.fromkeys(("algorithm", *_TREE_KEYS))
    merge_params(allowed, params, BACKEND)  # only for its check of unknown keys
    p = _rule(n, dict(params or {}))
    if p["algorithm"] not in ALGORITHMS:
        raise ValueError(
            f"unknown ScaNN algorithm {p['algorithm']!r}; expected one of {', '.join(ALGORITHMS)}"
        )
    if p["algorithm"] == "tree_ah" and n < MIN_TREE_POINTS:
        logger.info("%d vectors are too few for a ScaNN tree; searching them by brute force", n)
        p["algorithm"] = "brute_force"
    if p["algorithm"] == "brute_force":
        return {"algorithm": "brute_force"}
    for key in _TREE_KEYS:
        if key != "anisotropic_quantization_threshold":
            value = p[key]
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(
                    f"ScaNN parameter {key} must be a positive integer, found {value!r}"
                )
            p[key] = int(value)
    p["num_leaves"] = min(p["num_leaves"], n)
    p["leaves_to_search"] = min(p["leaves_to_search"], p["num_leaves"])
    p["training_sample_size"] = min(p["training_sample_size"], n)
    p["anisotropic_quantization_threshold"] = float(p["anisotropic_quantization_threshold"])
    return p


@functools.cache
def _pybind() -> Any:
    """Import ScaNN on first use (it takes ~0.1 s and pulls in a 20 MB extension)."""
    import scann  # the top-level library, not this module: imports are absolute

    _quiet_absl()
    return scann.scann_ops_pybind


def _quiet_absl() -> None:
    """Raise absl's minimum log level in ScaNN's extension to ERROR, if its symbol can be found."""
    if logger.isEnabledFor(logging.DEBUG):
        return
    module = sys.modules.get("scann_pybind")
    path = getattr(module, "__file__", None)
    if path is None:
        return
    try:
        # The symbol's mangled name carries abseil's LTS version, so look it up in the binary.
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            found = re.search(rb"_ZN4absl12lts_\d+14SetMinLogLevelENS0_18LogSeverityAtLeastE", m)
            symbol = found.group().decode() if found else None
        if symbol is None:
            return
        set_min_log_level = getattr(ctypes.CDLL(path), symbol)
        set_min_log_level.argtypes = [ctypes.c_int]
        set_min_log_level.restype = None
        set_min_log_level(2)  # absl::LogSeverityAtLeast::kError
    except (OSError, AttributeError, ValueError) as exc:
        logger.debug("could not quieten ScaNN's absl logging: %s", exc)


def _config_value(config: str, field: str) -> str | None:
    """First value of ``field`` in a text-format ScaNN config, or None."""
    found = re.search(rf"\b{field}:\s*([-+\w.\"]+)", config)
    return found.group(1) if found else None


def _built_params(config: str) -> dict[str, Any]:
    """Build-time parameters recovered from a loaded searcher's config (what the files hold)."""
    if "partitioning {" not in config:
        return {"algorithm": "brute_force"}
    out: dict[str, Any] = {"algorithm": "tree_ah"}
    fields = {
        "num_leaves": ("num_children", int),
        "min_partition_size": ("min_cluster_size", int),
        "training_sample_size": ("expected_sample_size", int),
        "dimensions_per_block": ("num_dims_per_block", int),
        "anisotropic_quantization_threshold": ("noise_shaping_threshold", float),
    }
    for key, (field, kind) in fields.items():
        value = _config_value(config, field)
        if value is not None:
            try:
                out[key] = kind(value)
            except ValueError:
                continue
    return out


class ScannIndex:
    """Dot-product search with ScaNN: tree + asymmetric hashing, or brute force when small.

    Attributes
    ----------
    backend : str
        ``"scann"``.
    dim : int
    count : int
    params : dict
        Parameters in use; see the module docstring. Query-time keys (``leaves_to_search``,
        ``pre_reorder_num_neighbors``, ``pre_reorder_factor``) are read at every query.
    """

    backend = BACKEND

    def __init__(self, searcher: Any, vectors: np.ndarray, params: dict[str, Any]) -> None:
        self._searcher = searcher
        self._data = vectors
        self.count, self.dim = (int(s) for s in vectors.shape)
        self.params = params

    @classmethod
    def build(cls, vectors: np.ndarray, *, params: dict[str, Any] | None = None) -> Self:
        """Train and build a ScaNN searcher over ``vectors`` in one shot.

        Parameters
        ----------
        vectors : np.ndarray [shape=(n, dim), dtype=float32]
            Unit-length (or zero) rows; kept by reference for exact re-scoring.
        params : dict, optional
            Overrides of :func:`default_params`.

        Returns
        -------
        ScannIndex

        Raises
        ------
        ValueError
            For an empty matrix or an unknown or invalid parameter.
        """
        data = check_vectors(vectors)
        n, dim = data.shape
        p = _resolve(n, dim, params)
        # An int8-stored matrix is dequantised for the build only; re-scoring reads the stored rows.
        builder = _pybind().builder(as_float32(data), 10, "dot_product")
        if p["algorithm"] == "brute_force":
            builder = builder.score_brute_force()
        else:
            builder = builder.tree(
                p["num_leaves"],
                p["leaves_to_search"],
                training_sample_size=p["training_sample_size"],
                min_partition_size=p["min_partition_size"],
            ).score_ah(
                p["dimensions_per_block"],
                anisotropic_quantization_threshold=p["anisotropic_quantization_threshold"],
                training_sample_size=p["training_sample_size"],
            )
        logger.debug("building ScaNN index of %d × %d with %s", n, dim, p)
        return cls(builder.build(), data, p)

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` stored rows with the largest dot product with each query.

        Parameters
        ----------
        vectors : np.ndarray [shape=(dim,) or (m, dim)]
            Query vectors; need not be unit length (aspect queries zero some dimensions, "least
            similar" queries are negated).
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
        if len(queries) == 0:
            return shape_result(np.empty((0, k), np.int64), np.empty((0, k), np.float32), single)
        p = self.params
        if p["algorithm"] == "brute_force":
            wanted, leaves = k, None
        else:
            wanted = min(
                self.count, max(k, p["pre_reorder_num_neighbors"], p["pre_reorder_factor"] * k)
            )
            leaves = p["leaves_to_search"]
        if len(queries) >= _PARALLEL_FROM:
            found, dist = self._searcher.search_batched_parallel(
                queries, final_num_neighbors=wanted, leaves_to_search=leaves, batch_size=64
            )
        else:
            found, dist = self._searcher.search_batched(
                queries, final_num_neighbors=wanted, leaves_to_search=leaves
            )
        found = np.asarray(found, dtype=np.int64).reshape(len(queries), -1)
        # ScaNN pads a short answer with position 0 and a NaN distance.
        valid = ~np.isnan(np.asarray(dist).reshape(found.shape)) & (found < self.count)
        pos, score = rescore(self._data, queries, found, valid, k)
        return shape_result(pos, score, single)

    def save(self, directory: Path) -> None:
        """Serialise the searcher into ``directory / "scann"`` (replaced if present).

        Tree/AH indexes store the partitioner, AH codebooks and 4-bit codes, not the float vectors;
        brute-force indexes (small libraries) store ScaNN's own copy of the vectors.
        """
        target = Path(directory) / SUBDIRECTORY
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        # relative_path: the assets file names its neighbours relatively, so the folder can move.
        self._searcher.serialize(str(target), True)

    @classmethod
    def load(cls, directory: Path, vectors: np.ndarray, params: dict[str, Any]) -> Self:
        """Load a searcher written by :meth:`save`.

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
            If the files are missing or do not match ``vectors`` or ``params``.
        """
        data = check_vectors(vectors)
        n, dim = data.shape
        target = Path(directory) / SUBDIRECTORY
        if not (target / "scann_assets.pbtxt").is_file():
            raise IndexMismatchError(
                f"{target}: no ScaNN index here (scann_assets.pbtxt is missing)"
            )
        searcher = _pybind().load_searcher(str(target))
        stored = int(searcher.size())
        if stored != n:
            raise IndexMismatchError(f"{target}: ScaNN index expected {n} vectors, found {stored}")
        built = _built_params(searcher.config())
        stored_dim = _config_value(searcher.config(), "input_dim")
        if stored_dim is None and (target / "dataset.npy").is_file():
            stored_dim = str(np.load(target / "dataset.npy", mmap_mode="r").shape[1])
        if stored_dim is not None and int(stored_dim) != dim:
            raise IndexMismatchError(
                f"{target}: ScaNN index expected dim {dim}, found {stored_dim}"
            )
        for key, value in built.items():
            if key in params and params[key] != value:
                raise IndexMismatchError(
                    f"{target}: ScaNN parameter {key} expected {params[key]!r}, found {value!r}"
                )
        asked = {k: v for k, v in params.items() if k not in _BUILD_KEYS}
        resolved = _resolve(n, dim, {**asked, **built})
        return cls(searcher, data, resolved)
