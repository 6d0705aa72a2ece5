"""Tuning: recall@k against exact search, the parameter grid, its Pareto front and the choice.

A grid over the backend's parameters. Build-time parameters (ScaNN ``num_leaves`` and
``dimensions_per_block``, Annoy ``n_trees``) are built once per combination; query-time parameters
(ScaNN ``leaves_to_search`` and re-ranking depth, Annoy ``search_k``) are varied on the saved index,
through :func:`soundalike.index.load_index`. Each point is measured on the same held-out queries:
recall@k against exact search for similar and for least-similar (negated) queries, queries per
second (one query at a time, BLAS limited to one thread) and build time. A point is on the Pareto
front when no other point has both a higher worse-of-the-two recall and more queries per second. The
chosen point is the fastest whose worse recall meets the target.

ScaNN never builds a tree under :data:`~soundalike.index.scann.MIN_TREE_POINTS` vectors, and by
default scores exhaustively under 2,000; the grid therefore always holds brute force as one point
and adds tree + asymmetric-hashing points with an explicit ``algorithm="tree_ah"`` from
``MIN_TREE_POINTS`` vectors on, so that the measurement, not the default rule, decides. The chosen
parameters are saved into ``LIBRARY/tuned.json`` as ``{backend: params}`` by
:meth:`soundalike.library.Library.save_tuned`; the next index build uses them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundalike.errors import TuneError
from soundalike.index import TUNABLE_BACKENDS, build_index, default_params, load_index
from soundalike.index.scann import MIN_PARTITION_SIZE, MIN_TREE_POINTS

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages are named in each function's docstring."""

TIMING_ROUNDS = 2
"""Each query is timed this many times and its fastest run kept (the machine is shared)."""


def noop(stage: str, done: int, total: int) -> None:
    """Progress callback that ignores everything."""


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Limit BLAS and OpenMP pools to one thread while timing, when threadpoolctl is available."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=1):
        yield


# -- recall against exact search ---------------------------------------------------------------


def _drop_self(positions: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each row's first ``k`` positions other than the query's own row."""
    out = np.empty((len(rows), k), dtype=np.int64)
    for i, r in enumerate(rows):
        others = positions[i][positions[i] != r]
        out[i] = others[:k]
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true neighbours found.

    Parameters
    ----------
    found, truth : np.ndarray [shape=(m, k)]
        Positions returned by the index under test and by exact search.

    Returns
    -------
    float
        In [0, 1].
    """
    if len(truth) == 0:
        return float("nan")
    k = truth.shape[1]
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))


@dataclass(frozen=True)
class HeldOut:
    """Held-out queries (library rows) and their exact answers."""

    rows: np.ndarray
    k: int
    truth: np.ndarray  # (m, k) nearest others
    truth_least: np.ndarray  # (m, k) least similar

    @classmethod
    def sample(cls, data: np.ndarray, k: int, n_queries: int, seed: int) -> HeldOut:
        """A seeded sample of ``n_queries`` rows of ``data``, answered by exact search."""
        n = len(data)
        k = max(1, min(k, n - 1))
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=min(n_queries, n), replace=False)).astype(np.int64)
        exact = build_index("exact", data)
        near, _ = exact.query(data[rows], k + 1)
        least, _ = exact.query(-data[rows], k)
        return cls(rows=rows, k=k, truth=_drop_self(near, rows, k), truth_least=least)

    def measure(self, index: Any, data: np.ndarray) -> tuple[float, float, np.ndarray]:
        """Recall (similar, least similar) and per-query seconds of one index on these queries."""
        found = np.empty((len(self.rows), self.k + 1), dtype=np.int64)
        seconds = np.full(len(self.rows), np.inf)
        with _single_thread():
            for r in self.rows[: min(5, len(self.rows))]:  # warm caches and lazy initialisation
                index.query(data[r], self.k + 1)
            for _ in range(TIMING_ROUNDS):
                for i, r in enumerate(self.rows):
                    vec = data[r]
                    started = time.perf_counter()
                    pos, _ = index.query(vec, self.k + 1)
                    seconds[i] = min(seconds[i], time.perf_counter() - started)
                    found[i] = pos
        least, _ = index.query(-data[self.rows], self.k)
        recall = recall_at_k(_drop_self(found, self.rows, self.k), self.truth)
        return recall, recall_at_k(least, self.truth_least), seconds


# -- tuning -------------------------------------------------------------------------------------

GridGroup = tuple[dict[str, Any], list[dict[str, Any]]]
"""Build-time parameters and the query-time variants measured on that build."""


@dataclass(frozen=True)
class TunePoint:
    """One measured configuration.

    Attributes
    ----------
    params : dict
        The keys the grid set; saved into ``tuned.json`` when chosen (``{}`` = the default rule).
    resolved : dict
        Every parameter the index actually used.
    recall, recall_least : float
        Recall@k against exact search for similar and for least-similar queries.
    qps : float
        Single-threaded queries per second (similar queries, one at a time).
    build_seconds : float
    pareto : bool
        On the Pareto front of (worse recall, queries per second).
    """

    backend: str
    params: dict[str, Any]
    resolved: dict[str, Any]
    recall: float
    recall_least: float
    qps: float
    build_seconds: float
    pareto: bool = False

    @property
    def worst(self) -> float:
        """The worse of the two recalls: what the target applies to."""
        return min(self.recall, self.recall_least)

    def describe(self) -> str:
        """The parameters in a few words (``default rule:`` when the grid set none)."""
        text = self._describe()
        return f"default rule: {text}" if not self.params else text

    def _describe(self) -> str:
        p = self.resolved
        if self.backend == "scann":
            if p.get("algorithm") == "brute_force":
                return "brute force"
            return (
                f"leaves {p['num_leaves']}/{p['leaves_to_search']} searched, "
                f"{p['dimensions_per_block']} dims/block, reorder "
                f"{max(p['pre_reorder_num_neighbors'], p['pre_reorder_factor'])}"
            )
        if self.backend == "annoy":
            search_k = p.get("search_k") if p.get("search_k") is not None else f"{p['search_k_factor']}·trees·k"
            return f"{p['n_trees']} trees, search_k {search_k}"
        return ", ".join(f"{k}={v}" for k, v in sorted(p.items()))

    def family(self) -> str:
        """The build this point belongs to (its query-time variants share it), in a few words."""
        r = self.resolved
        if not self.params:
            return "default rule"
        if self.backend == "scann":
            if r.get("algorithm") == "brute_force":
                return "brute force"
            return f"tree: {r['num_leaves']} leaves, {r['dimensions_per_block']} dims/block"
        if self.backend == "annoy":
            return f"{r['n_trees']} trees"
        return self.backend

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "resolved": self.resolved,
            "recall": round(self.recall, 4),
            "recall_least": round(self.recall_least, 4),
            "qps": round(self.qps, 1),
            "build_seconds": round(self.build_seconds, 3),
            "pareto": self.pareto,
        }


@dataclass(frozen=True)
class TuneResult:
    """A grid search and its choice."""

    backend: str
    k: int
    target: float
    count: int
    dim: int
    queries: int
    points: list[TunePoint]
    chosen: TunePoint | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "k": self.k,
            "target_recall": self.target,
            "vectors": self.count,
            "dim": self.dim,
            "queries": self.queries,
            "note": self.note,
            "chosen": None if self.chosen is None else self.points.index(self.chosen),
            "points": [p.to_dict() for p in self.points],
        }


def default_grid(backend: str, n: int, k: int = 10) -> list[GridGroup]:
    """The grid :func:`tune_vectors` searches for ``n`` vectors.

    ScaNN: brute force; the default rule; and from ``MIN_TREE_POINTS`` (256) vectors
    ``num_leaves`` in ``{sqrt(n)/2, sqrt(n), 2 sqrt(n)}`` (at most ``n // MIN_PARTITION_SIZE``, so
    leaves keep ScaNN's minimum partition size of 50 on average) × ``dimensions_per_block`` in
    ``{2, 4}``, each searched in 5, 10, 20 and 40 % of the leaves with ``2k, 5k, 10k, 20k``
    candidates re-ranked exactly.
    Annoy: the default rule, and ``n_trees`` in ``{5, 10, 20, 50}`` × ``search_k`` in
    ``{1, 3, 10, 30, 100} · n_trees · k`` (at most ``n_trees · n``).

    Raises
    ------
    TuneError
        For the exact backend (it has nothing to tune) or an unknown one.
    """
    if backend == "scann":
        groups: list[GridGroup] = [({"algorithm": "brute_force"}, [{}])]
        if default_params("scann", n, 1).get("algorithm") != "brute_force":
            groups.append(({}, [{}]))
        if n >= MIN_TREE_POINTS:
            root = math.sqrt(n)
            cap = max(2, n // MIN_PARTITION_SIZE)
            for leaves in sorted({min(cap, max(2, round(f * root))) for f in (0.5, 1.0, 2.0)}):
                searched = sorted({min(leaves, max(1, math.ceil(f * leaves))) for f in (0.05, 0.1, 0.2, 0.4)})
                depths = sorted({min(n, d * k) for d in (2, 5, 10, 20)})
                variants = [
                    {"leaves_to_search": s, "pre_reorder_num_neighbors": d, "pre_reorder_factor": 1}
                    for s in searched
                    for d in depths
                ]
                for per_block in (2, 4):
                    groups.append(
                        ({"algorithm": "tree_ah", "num_leaves": leaves, "dimensions_per_block": per_block}, variants)
                    )
        return groups
    if backend == "annoy":
        groups = [({}, [{}])]
        for trees in (5, 10, 20, 50):
            values = sorted({min(trees * n, f * trees * k) for f in (1, 3, 10, 30, 100)})
            groups.append(({"n_trees": trees}, [{"search_k": int(v)} for v in values]))
        return groups
    if backend == "exact":
        raise TuneError("the exact index has no parameters to tune (its recall is 1 by definition)")
    raise TuneError(f"unknown index backend {backend!r}; expected {' or '.join(TUNABLE_BACKENDS)}")


def pareto_flags(recall: Sequence[float], qps: Sequence[float]) -> list[bool]:
    """Whether each point is on the front: no other point is at least as good on both and better on one."""
    out = []
    for i, (r, q) in enumerate(zip(recall, qps, strict=True)):
        dominated = any(
            (r2 >= r and q2 >= q and (r2 > r or q2 > q)) for j, (r2, q2) in enumerate(zip(recall, qps, strict=True)) if j != i
        )
        out.append(not dominated)
    return out


def tune_vectors(
    vectors: np.ndarray,
    *,
    backend: str = "scann",
    k: int = 10,
    target: float = 0.95,
    queries: int = 500,
    seed: int = 0,
    grid: Sequence[GridGroup] | None = None,
    progress: Progress | None = None,
) -> TuneResult:
    """Grid-search an index backend's parameters on a matrix of normalised vectors.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, dim), dtype=float32]
        Unit-length rows (a library's ``LibraryIndex.vectors``).
    backend : str
        One of :data:`~soundalike.index.TUNABLE_BACKENDS` (``"scann"`` or ``"annoy"``).
    k : int
        Neighbours per query (capped at ``n - 1``).
    target : float
        Recall@k that the chosen configuration must reach for similar and least-similar queries.
    queries : int
        Library rows used as held-out queries (a seeded sample; each excluded from its own answer).
    seed : int
    grid : sequence of (dict, list of dict), optional
        Build-time parameters with their query-time variants; :func:`default_grid` by default.
    progress : callable, optional
        Called as ``progress("tune", done, total)`` after each point.

    Returns
    -------
    TuneResult
        Every point with its Pareto flag, and the fastest point meeting the target (None if none
        does).

    Raises
    ------
    TuneError
        For fewer than two vectors or an unknown backend.
    """
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if data.ndim != 2 or len(data) < 2:
        raise TuneError(f"need at least 2 vectors to tune an index, found {len(data)}")
    n, dim = data.shape
    groups = list(grid) if grid is not None else default_grid(backend, n, k)
    q = HeldOut.sample(data, k, queries, seed)
    report = progress or noop
    total = sum(len(v) for _, v in groups)
    report("tune", 0, total)
    measured: list[TunePoint] = []
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="soundalike-tune-") as tmp:
        for g, (build_params, variants) in enumerate(groups):
            started = time.perf_counter()
            built = build_index(backend, data, params=dict(build_params) or None)
            build_seconds = time.perf_counter() - started
            folder = Path(tmp) / f"build-{g}"
            folder.mkdir()
            built.save(folder)
            for variant in variants:
                index = load_index(backend, folder, data, {**built.params, **variant}) if variant else built
                key = json.dumps(index.params, sort_keys=True, default=str)
                if key not in seen:  # the cap on n can make two grid points the same index
                    seen.add(key)
                    recall, recall_least, seconds = q.measure(index, data)
                    measured.append(
                        TunePoint(
                            backend=backend,
                            params={**build_params, **variant},
                            resolved=dict(index.params),
                            recall=recall,
                            recall_least=recall_least,
                            qps=len(seconds) / max(float(seconds.sum()), 1e-9),
                            build_seconds=build_seconds,
                        )
                    )
                report("tune", len(measured), total)
            shutil.rmtree(folder, ignore_errors=True)  # keep the temporary folder small
    flags = pareto_flags([p.worst for p in measured], [p.qps for p in measured])
    points = [dataclasses.replace(p, pareto=f) for p, f in zip(measured, flags, strict=True)]
    meeting = [p for p in points if p.worst >= target]
    chosen = max(meeting, key=lambda p: (p.qps, -p.build_seconds)) if meeting else None
    note = ""
    if backend == "scann" and n < MIN_TREE_POINTS:
        note = f"{n} vectors are too few for a ScaNN tree (it needs {MIN_TREE_POINTS}): brute force is the only configuration"
    return TuneResult(
        backend=backend, k=q.k, target=target, count=n, dim=dim, queries=len(q.rows), points=points, chosen=chosen, note=note
    )
