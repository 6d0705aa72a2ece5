"""Evaluation and tuning: how good the recommendations are, and how fast the index can be.

Evaluation (:func:`evaluate_library`, :func:`write_report`)
-----------------------------------------------------------
Quality is measured on the *exact* index, so that the figures describe the features and the
similarity, not the approximation; the configured index is then measured against exact search.

``silhouette``
    K-means (scikit-learn, 10 restarts; 3 above 10,000 tracks) on the library's normalised track vectors -- standardised
    per dimension, each feature family scaled to the same length and weighted, unit length overall:
    the vectors every index searches -- with ``k`` = the number of labels, or the ``k`` in 2..12
    with the best silhouette when there are no labels. The silhouette of the labels themselves and
    the adjusted Rand index between clusters and labels are given beside it.
``retrieval`` (with labels)
    Leave-one-out over the labelled tracks: each queries all the others, ranked exactly as
    :meth:`~soundalike.recommend.Recommender.similar_to_track` ranks them on the exact index (the
    dot product of normalised vectors for ``all``, the family cosine for one aspect; the track
    itself and byte-identical copies left out). ``precision_at_k`` is the share of the first ``k``
    with the query's label; ``map`` the mean average precision over the full ranking. Both are
    averaged over queries, overall and per label, for ``all`` and for each aspect. Queries whose
    label no other track has are left out (counted as ``singletons``). ``chance_precision`` is what
    a random ranking scores on average.
``clips``
    For a seeded sample of tracks: decode at 44.1 kHz, cut an excerpt starting at 40 % of the
    track, add white gaussian noise at the given SNR relative to the excerpt's RMS, encode as MP3
    at 96 kbit/s, and query it with :meth:`~soundalike.recommend.Recommender.similar_to_file`.
    ``top1`` and ``top10`` are the shares of excerpts whose source track (or a byte-identical copy)
    ranks first, or within the first ten.
``index``
    Recall@k of the configured index against exact search for held-out queries (library tracks
    queried for their ``k`` nearest others, and negated for the least similar), and query latency
    p50/p95: the index alone, exact search alone, and a whole ``similar_to_track`` call.

Tuning (:func:`tune_vectors`)
-----------------------------
A grid over the backend's parameters. Build-time parameters (ScaNN ``num_leaves`` and
``dimensions_per_block``, Annoy ``n_trees``) are built once per combination; query-time parameters
(ScaNN ``leaves_to_search`` and re-ranking depth, Annoy ``search_k``) are varied on the saved index,
through :func:`soundalike.index.load_index`. Each point is measured on the same held-out queries:
recall@k against exact search for similar and for least-similar (negated) queries, queries per
second (one query at a time, BLAS limited to one thread) and build time. A point is on the Pareto
front when no other point has both a higher worse-of-the-two recall and more queries per second. The
chosen point is the fastest whose worse recall meets the target.

ScaNN never builds a tree under 256 vectors, and by default scores exhaustively under 2,000; the
grid therefore always holds brute force as one point and adds tree + asymmetric-hashing points with
an explicit ``algorithm="tree_ah"`` from 256 vectors on, so that the measurement, not the default
rule, decides. The chosen parameters are saved into ``LIBRARY/tuned.json`` as ``{backend: params}``;
the next index build uses them (see :func:`save_tuned`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundalike.catalog import OK, Catalog, Track
from soundalike.errors import EmptyLibraryError, SoundalikeError, TuneError
from soundalike.index import build_index, default_params, load_index
from soundalike.index.bundle import LibraryIndex
from soundalike.labels import LabelSet

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages are named in each function's docstring."""

METRICS_SCHEMA = "soundalike.evaluate/1"
TUNED_FILE = "tuned.json"
MIN_TREE_POINTS = 256
"""ScaNN builds no tree under this many vectors (see :mod:`soundalike.index.scann`)."""
SILHOUETTE_KS = range(2, 13)
SILHOUETTE_SAMPLE = 5000
"""Silhouettes of larger libraries are computed on a seeded sample of this many tracks."""
EXCERPT_RATE = 44100
TOP_N = 10


def _noop(stage: str, done: int, total: int) -> None:
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


def _latency(seconds: np.ndarray) -> dict[str, float]:
    """p50, p95 and mean of per-query times, in milliseconds."""
    if len(seconds) == 0:
        return {"p50": float("nan"), "p95": float("nan"), "mean": float("nan")}
    ms = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": float(ms.mean())}


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
class _Queries:
    """Held-out queries and their exact answers."""

    rows: np.ndarray
    k: int
    truth: np.ndarray  # (m, k) nearest others
    truth_least: np.ndarray  # (m, k) least similar


def _held_out(data: np.ndarray, k: int, n_queries: int, seed: int) -> _Queries:
    n = len(data)
    k = max(1, min(k, n - 1))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n_queries, n), replace=False)).astype(np.int64)
    exact = build_index("exact", data)
    near, _ = exact.query(data[rows], k + 1)
    least, _ = exact.query(-data[rows], k)
    return _Queries(rows=rows, k=k, truth=_drop_self(near, rows, k), truth_least=least)


TIMING_ROUNDS = 2
"""Each query is timed this many times and its fastest run kept (the machine is shared)."""


def _measure(index: Any, data: np.ndarray, q: _Queries) -> tuple[float, float, np.ndarray]:
    """Recall (similar, least similar) and per-query seconds of one index on held-out queries."""
    found = np.empty((len(q.rows), q.k + 1), dtype=np.int64)
    seconds = np.full(len(q.rows), np.inf)
    with _single_thread():
        for r in q.rows[: min(5, len(q.rows))]:  # warm caches and lazy initialisation
            index.query(data[r], q.k + 1)
        for _ in range(TIMING_ROUNDS):
            for i, r in enumerate(q.rows):
                vec = data[r]
                started = time.perf_counter()
                pos, _ = index.query(vec, q.k + 1)
                seconds[i] = min(seconds[i], time.perf_counter() - started)
                found[i] = pos
    least, _ = index.query(-data[q.rows], q.k)
    return recall_at_k(_drop_self(found, q.rows, q.k), q.truth), recall_at_k(least, q.truth_least), seconds


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

    ScaNN: brute force; the default rule; and from 256 vectors ``num_leaves`` in
    ``{sqrt(n)/2, sqrt(n), 2 sqrt(n)}`` (at most ``n // 50``, so leaves keep ScaNN's minimum
    partition size of 50 on average) × ``dimensions_per_block`` in ``{2, 4}``, each searched in
    5, 10, 20 and 40 % of the leaves with ``2k, 5k, 10k, 20k`` candidates re-ranked exactly.
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
            cap = max(2, n // 50)
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
    raise TuneError(f"unknown index backend {backend!r}; expected scann or annoy")


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
        ``"scann"`` or ``"annoy"``.
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
    q = _held_out(data, k, queries, seed)
    report = progress or _noop
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
                    recall, recall_least, seconds = _measure(index, data, q)
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


def save_tuned(library: str | os.PathLike[str], backend: str, params: dict[str, Any]) -> Path:
    """Record ``params`` for ``backend`` in ``LIBRARY/tuned.json``, keeping other backends' entries.

    The next index build of the library passes them to the backend (the CLI reads the file), and an
    existing index whose manifest differs from them is rebuilt.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(library) / TUNED_FILE
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict):
            saved = {}
    except (OSError, ValueError):
        saved = {}
    saved[backend] = params
    tmp = path.with_name(f".{TUNED_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def format_tune_table(result: TuneResult) -> str:
    """The measured points as a text table, fastest first; ``*`` marks the Pareto front."""
    lines = [
        f"{result.backend}: {result.count} vectors × {result.dim}, {result.queries} held-out queries, "
        f"recall@{result.k} target {result.target:g} (the worse of similar and least-similar queries)",
        f"  {'front':5}  {'recall':>6}  {'least':>6}  {'q/s':>9}  {'build s':>7}  configuration",
    ]
    for p in sorted(result.points, key=lambda p: -p.qps):
        mark = "*" if p.pareto else ""
        meets = "" if p.worst >= result.target else "  (below target)"
        chosen = "   <- chosen" if p is result.chosen else ""
        lines.append(
            f"  {mark:^5}  {p.recall:6.3f}  {p.recall_least:6.3f}  {p.qps:9.0f}  {p.build_seconds:7.2f}  "
            f"{p.describe()}{meets}{chosen}"
        )
    if result.note:
        lines.append(f"note: {result.note}")
    return "\n".join(lines)


def plot_tuning(result: TuneResult, path: str | os.PathLike[str]) -> Path:
    """Recall versus queries per second, the Pareto front, the target and the choice, as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    families: dict[str, list[TunePoint]] = {}
    for p in result.points:
        families.setdefault(_family(p), []).append(p)
    colours = plt.get_cmap("tab10")
    for i, (name, pts) in enumerate(families.items()):  # grid order: default, then by size
        ax.scatter([p.qps for p in pts], [p.worst for p in pts], s=28, alpha=0.75, color=colours(i % 10), label=name)
    front = sorted((p for p in result.points if p.pareto), key=lambda p: p.qps)
    if front:
        ax.plot(
            [p.qps for p in front], [p.worst for p in front], "-o", color="black", lw=1.2, ms=7, mfc="none",
            label="Pareto front", zorder=4,
        )
    ax.axhline(result.target, color="firebrick", ls="--", lw=1, label=f"target {result.target:g}")
    qps = [p.qps for p in result.points]
    if qps and max(qps) / max(min(qps), 1e-9) > 20:
        _plain_log_x(ax)
    if result.chosen is not None:
        c = result.chosen
        ax.scatter([c.qps], [c.worst], s=220, marker="*", color="gold", edgecolor="black", zorder=5, label="chosen")
        # the label goes towards the middle of the plot so that it stays inside the axes
        right_half = len(qps) > 1 and c.qps >= float(np.median(qps))
        ax.annotate(
            f"chosen: {c.describe()}", (c.qps, c.worst), xytext=(-14 if right_half else 14, -26), textcoords="offset points",
            ha="right" if right_half else "left", fontsize=9, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.9},
            arrowprops={"arrowstyle": "-", "color": "0.4"},
        )
    lowest = min([p.worst for p in result.points] + [result.target])
    ax.set_ylim(max(0.0, lowest - 0.05), 1.01)
    ax.set_xlabel("queries per second (one thread, one query at a time)")
    ax.set_ylabel(f"recall@{result.k} against exact search (worse of similar / least similar)")
    ax.set_title(f"Tuning {result.backend} on {result.count} vectors ({result.queries} held-out queries)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def _family(p: TunePoint) -> str:
    """The build a point belongs to, for colouring the plot."""
    r = p.resolved
    if not p.params:
        return "default rule"
    if p.backend == "scann":
        if r.get("algorithm") == "brute_force":
            return "brute force"
        return f"tree: {r['num_leaves']} leaves, {r['dimensions_per_block']} dims/block"
    if p.backend == "annoy":
        return f"{r['n_trees']} trees"
    return p.backend


def _plain_log_x(ax: Any) -> None:
    """A logarithmic x axis labelled 1, 2, 5, 10 … instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalOptions:
    """What :func:`evaluate_library` measures and how.

    Attributes
    ----------
    k : int
        Cut-off of precision@k and recall@k.
    excerpts : int
        Tracks to cut an excerpt from (a seeded sample); 0 skips clip robustness.
    excerpt_seconds, snr_db, bitrate, start_fraction
        Excerpt length, noise level (dB below the excerpt's RMS), MP3 bitrate and where in the
        track the excerpt starts.
    index_queries : int
        Held-out queries for recall and latency of the configured index.
    seed : int
    max_duration : float
        Longest file decoded, in seconds.
    """

    k: int = 10
    excerpts: int = 100
    excerpt_seconds: float = 10.0
    snr_db: float = 30.0
    bitrate: str = "96k"
    start_fraction: float = 0.4
    index_queries: int = 200
    seed: int = 0
    max_duration: float = 1800.0


@dataclass
class Evaluation:
    """Metrics (JSON-ready) and what the plots need."""

    metrics: dict[str, Any]
    row_labels: list[str | None]
    pca: np.ndarray | None = None
    pca_variance: tuple[float, float] = (0.0, 0.0)
    clusters: np.ndarray | None = None
    latencies: dict[str, np.ndarray] = field(default_factory=dict)


def exact_view(index: LibraryIndex) -> LibraryIndex:
    """The same library index searched exactly (the reference), sharing its vectors.

    Nothing is written to disk; the configured index is left as it is.
    """
    tracks = index.tracks if index.tracks.backend == "exact" else build_index("exact", index.vectors)
    segments = index.segments
    if segments.backend != "exact" and len(index.seg_vectors):
        segments = build_index("exact", index.seg_vectors)
    manifest = dataclasses.replace(index.manifest, backend="exact", segment_backend=segments.backend, params=dict(tracks.params))
    return dataclasses.replace(index, manifest=manifest, tracks=tracks, segments=segments)


def silhouette_analysis(
    vectors: np.ndarray, labels: Sequence[str | None] | None = None, *, seed: int = 0
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Silhouette of a k-means clustering of the vectors (see the module docstring).

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, dim)]
        Normalised track vectors.
    labels : sequence of str or None, optional
        A label per row (None for unlabelled rows).
    seed : int

    Returns
    -------
    metrics : dict
        ``score``, ``k``, ``chosen_by`` (``"labels"`` or ``"best"``), ``by_k`` (k → silhouette for
        k in 2..12), ``label_silhouette`` and ``adjusted_rand`` (None without labels).
    clusters : np.ndarray [shape=(n,)] or None
        The k-means cluster of each row (None when there are fewer than 3 rows).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    empty: dict[str, Any] = {"score": None, "k": None, "chosen_by": None, "by_k": {}, "label_silhouette": None, "adjusted_rand": None}
    if n < 3:
        return empty, None
    sample = min(n, SILHOUETTE_SAMPLE)

    def score(assigned: np.ndarray, rows: np.ndarray | None = None) -> float:
        data = x if rows is None else x[rows]
        if len(set(assigned.tolist())) < 2 or len(set(assigned.tolist())) >= len(data):
            return float("nan")
        return float(silhouette_score(data, assigned, sample_size=min(len(data), sample), random_state=seed))

    fits: dict[int, np.ndarray] = {}

    def fit(k: int) -> np.ndarray:
        if k not in fits:
            # ten restarts as usual; three on big libraries, where one fit is already stable and slow
            fits[k] = KMeans(n_clusters=k, n_init=10 if n <= 10_000 else 3, random_state=seed).fit_predict(x)
        return fits[k]

    by_k = {k: score(fit(k)) for k in SILHOUETTE_KS if k < n}
    labelled = np.array([i for i, lab in enumerate(labels or []) if lab is not None], dtype=np.int64)
    names = [labels[i] for i in labelled] if labels is not None else []
    distinct = sorted({str(v) for v in names})
    out = dict(empty)
    out["by_k"] = {str(k): round(v, 4) for k, v in by_k.items()}
    if 2 <= len(distinct) < n:
        k = len(distinct)
        clusters = fit(k)
        out.update(score=score(clusters), k=k, chosen_by="labels")
        codes = np.array([distinct.index(str(v)) for v in names])
        if len(distinct) < len(labelled):
            out["label_silhouette"] = score(codes, labelled)
            out["adjusted_rand"] = float(adjusted_rand_score(codes, clusters[labelled]))
    else:
        valid = {k: v for k, v in by_k.items() if not math.isnan(v)}
        if not valid:
            return out, None
        k = max(valid, key=lambda kk: valid[kk])
        clusters = fit(k)
        out.update(score=valid[k], k=k, chosen_by="best")
    return out, clusters


def retrieval_quality(
    vectors: np.ndarray,
    labels: Sequence[str | None],
    *,
    k: int = 10,
    families: dict[str, slice] | None = None,
    hashes: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Leave-one-out precision@k and mean average precision, overall, per label and per aspect.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, dim)]
        Normalised track vectors (rows of the library index).
    labels : sequence of str or None [length=n]
        Unlabelled rows take no part.
    k : int
    families : dict of str to slice, optional
        Family name → its dimensions; each family with a non-zero block is an aspect.
    hashes : sequence of str, optional
        Content hash per row; byte-identical copies of the query are left out of its ranking.
    progress : callable, optional
        ``progress("precision", done, total)`` over aspects × query chunks.

    Returns
    -------
    dict
        ``k``, ``queries``, ``singletons``, ``chance_precision``, ``chance_by_label`` and
        ``aspects``: aspect → ``{"precision_at_k", "map", "by_label": {label: {"queries",
        "precision_at_k", "map"}}}``.
    """
    report = progress or _noop
    rows = np.array([i for i, lab in enumerate(labels) if lab is not None], dtype=np.int64)
    names = np.array([str(labels[i]) for i in rows], dtype=object)
    m = len(rows)
    if m < 2:
        raise EmptyLibraryError(f"need at least 2 labelled tracks for precision@k, found {m}")
    x = np.asarray(vectors, dtype=np.float32)[rows]
    distinct, codes = np.unique(names.astype(str), return_inverse=True)
    group = np.asarray(hashes, dtype=object)[rows] if hashes is not None else None
    same_count = np.bincount(codes)[codes] - 1  # other tracks with the query's label
    if group is not None:
        # byte-identical copies are neither candidates nor relevant
        dup = Counter(zip(group.tolist(), codes.tolist(), strict=True))
        same_count = same_count - np.array([dup[(h, c)] - 1 for h, c in zip(group.tolist(), codes.tolist(), strict=True)])
    asked = same_count > 0
    aspect_blocks: dict[str, np.ndarray] = {"all": x}
    for family, sl in (families or {}).items():
        block = x[:, sl]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        if not np.any(norms > 0):
            continue
        aspect_blocks[family] = np.where(norms > 0, block / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    chunk = max(1, min(256, 2**23 // max(m, 1)))
    steps = len(aspect_blocks) * math.ceil(m / chunk)
    done = 0
    report("precision", 0, steps)
    kk = min(k, m - 1)
    aspects: dict[str, Any] = {}
    for aspect, block in aspect_blocks.items():
        prec = np.zeros(m)
        ap = np.zeros(m)
        for start in range(0, m, chunk):
            q = np.arange(start, min(m, start + chunk))
            scores = block[q] @ block.T
            scores[np.arange(len(q)), q] = -np.inf
            if group is not None:
                scores[group[q][:, None] == group[None, :]] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")
            valid = np.isfinite(np.take_along_axis(scores, order, axis=1))
            rel = (codes[order] == codes[q][:, None]) & valid
            prec[q] = rel[:, :kk].sum(axis=1) / kk
            hits = np.cumsum(rel, axis=1)
            at = hits / np.arange(1, m + 1)[None, :]
            total_rel = rel.sum(axis=1)
            ap[q] = np.where(total_rel > 0, (at * rel).sum(axis=1) / np.maximum(total_rel, 1), 0.0)
            done += 1
            report("precision", done, steps)
        by_label = {}
        for c, label in enumerate(distinct):
            mask = (codes == c) & asked
            by_label[str(label)] = {
                "queries": int(mask.sum()),
                "precision_at_k": float(prec[mask].mean()) if mask.any() else None,
                "map": float(ap[mask].mean()) if mask.any() else None,
            }
        aspects[aspect] = {
            "precision_at_k": float(prec[asked].mean()) if asked.any() else None,
            "map": float(ap[asked].mean()) if asked.any() else None,
            "by_label": by_label,
        }
    candidates = m - 1
    chance = same_count[asked] / candidates
    chance_by_label = {
        str(label): float(chance[codes[asked] == c].mean()) if np.any(codes[asked] == c) else None
        for c, label in enumerate(distinct)
    }
    return {
        "k": int(kk),
        "queries": int(asked.sum()),
        "singletons": int((~asked).sum()),
        "chance_precision": float(chance.mean()) if len(chance) else None,
        "chance_by_label": chance_by_label,
        "aspects": aspects,
    }


def pick_excerpt_tracks(tracks: Sequence[Track], n: int, *, min_seconds: float, seed: int = 0) -> list[Track]:
    """A seeded sample of ``n`` analysed tracks at least ``min_seconds`` long, by id."""
    eligible = sorted((t for t in tracks if t.status == OK and (t.duration or 0.0) >= min_seconds), key=lambda t: t.id)
    if n >= len(eligible):
        return eligible
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(eligible), size=n, replace=False))
    return [eligible[int(i)] for i in picks]


def clip_robustness(
    recommender: Any,
    tracks: Sequence[Track],
    *,
    excerpt_seconds: float = 10.0,
    snr_db: float = 30.0,
    bitrate: str = "96k",
    start_fraction: float = 0.4,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Query noisy MP3 excerpts of library tracks and see whether the source comes back.

    Parameters
    ----------
    recommender : soundalike.recommend.Recommender
        Usually on the exact index (:func:`exact_view`).
    tracks : sequence of Track
        Sources (see :func:`pick_excerpt_tracks`).
    excerpt_seconds, snr_db, bitrate, start_fraction, seed
        See :class:`EvalOptions`; track ``t`` gets noise seeded with ``seed + t.id``.
    progress : callable, optional
        ``progress("excerpts", done, total)``.

    Returns
    -------
    dict
        ``excerpts`` (queried), ``top1``, ``top10``, ``mrr`` (mean reciprocal rank within the top
        10), ``seconds_per_query``, the settings, ``skipped`` (sources that failed, with the
        reason) and ``misses`` (sources not ranked first, with their rank or None).
    """
    from soundalike import synth
    from soundalike.audio import decode

    report = progress or _noop
    ranks: list[int | None] = []
    misses: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    query_seconds: list[float] = []
    report("excerpts", 0, len(tracks))
    with tempfile.TemporaryDirectory(prefix="soundalike-excerpts-") as tmp:
        clip = Path(tmp) / "excerpt.mp3"
        for done, track in enumerate(tracks, start=1):
            try:
                audio = decode(track.path, sample_rate=EXCERPT_RATE, max_duration=recommender.max_duration)
                duration = audio.duration
                length = min(excerpt_seconds, duration)
                start = min(start_fraction * duration, duration - length)
                cut = synth.excerpt(audio.samples, sample_rate=EXCERPT_RATE, start_s=start, duration_s=length)
                noisy = synth.add_noise(cut, snr_db=snr_db, rng=seed + track.id)
                peak = float(np.max(np.abs(noisy))) if len(noisy) else 0.0
                if peak > 1.0:  # the MP3 encoder clips; scale instead, as a mastering limiter would
                    noisy = noisy / peak
                synth.write_audio(clip, noisy, sample_rate=EXCERPT_RATE, bitrate=bitrate)
            except (SoundalikeError, ValueError, OSError) as exc:
                skipped.append({"path": track.display_path, "reason": str(exc)})
                report("excerpts", done, len(tracks))
                continue
            started = time.perf_counter()
            result = recommender.similar_to_file(clip, k=TOP_N, name=f"excerpt of {track.display_path}")
            query_seconds.append(time.perf_counter() - started)
            rank = next(
                (r.rank for r in result.results if r.track.id == track.id or r.track.content_hash == track.content_hash),
                None,
            )
            ranks.append(rank)
            if rank != 1:
                top = result.results[0].track if result.results else None
                misses.append(
                    {
                        "track_id": track.id,
                        "path": track.display_path,
                        "rank": rank,
                        "first": None if top is None else top.display_path,
                    }
                )
            report("excerpts", done, len(tracks))
    n = len(ranks)
    return {
        "excerpts": n,
        "excerpt_seconds": excerpt_seconds,
        "snr_db": snr_db,
        "bitrate": bitrate,
        "start_fraction": start_fraction,
        "top1": sum(r == 1 for r in ranks) / n if n else None,
        "top10": sum(r is not None and r <= TOP_N for r in ranks) / n if n else None,
        "mrr": sum(1.0 / r for r in ranks if r is not None) / n if n else None,
        "seconds_per_query": float(np.mean(query_seconds)) if query_seconds else None,
        "skipped": skipped,
        "misses": misses,
    }


def index_quality(
    index: LibraryIndex,
    *,
    k: int = 10,
    queries: int = 200,
    seed: int = 0,
    recommender: Any = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Recall@k of the configured index against exact search, and query latency.

    Parameters
    ----------
    index : LibraryIndex
        The library's index as configured.
    k, queries, seed
        Held-out queries: a seeded sample of library tracks, each excluded from its own answer.
    recommender : soundalike.recommend.Recommender, optional
        When given, the latency of a whole ``similar_to_track`` call on it is measured too (for up
        to 50 tracks).
    progress : callable, optional
        ``progress("index", done, total)``.

    Returns
    -------
    metrics : dict
        ``backend``, ``params``, ``k``, ``queries``, ``recall_at_k``, ``recall_least``,
        ``latency_ms`` / ``exact_latency_ms`` / ``recommend_latency_ms`` (each ``p50``, ``p95``,
        ``mean``).
    latencies : dict of str to np.ndarray
        Per-query seconds, for plots.
    """
    report = progress or _noop
    data = np.ascontiguousarray(index.vectors, dtype=np.float32)
    if len(data) < 2:
        raise EmptyLibraryError(f"need at least 2 indexed tracks to measure recall, found {len(data)}")
    q = _held_out(data, k, queries, seed)
    steps = 3 if recommender is not None else 2
    report("index", 0, steps)
    recall, recall_least, seconds = _measure(index.tracks, data, q)
    report("index", 1, steps)
    _, _, exact_seconds = _measure(build_index("exact", data), data, q)
    report("index", 2, steps)
    latencies = {f"configured index ({index.backend})": seconds, "exact index": exact_seconds}
    metrics: dict[str, Any] = {
        "backend": index.backend,
        "params": index.manifest.params,
        "k": q.k,
        "queries": len(q.rows),
        "recall_at_k": recall,
        "recall_least": recall_least,
        "latency_ms": _latency(seconds),
        "exact_latency_ms": _latency(exact_seconds),
        "recommend_latency_ms": None,
    }
    if recommender is not None:
        whole = []
        for r in q.rows[:50]:
            started = time.perf_counter()
            recommender.similar_to_track(int(index.ids[r]), k=q.k)
            whole.append(time.perf_counter() - started)
        latencies["whole similar_to_track"] = np.array(whole)
        metrics["recommend_latency_ms"] = _latency(np.array(whole))
        report("index", 3, steps)
    return metrics, latencies


def evaluate_library(
    catalog: Catalog,
    index: LibraryIndex,
    *,
    labels: LabelSet | None = None,
    options: EvalOptions | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Measure a library: silhouette, retrieval quality, clip robustness and the index.

    Parameters
    ----------
    catalog : Catalog
    index : LibraryIndex
        The library's index as configured (quality is measured on an exact view of it).
    labels : LabelSet, optional
        Without labels, retrieval quality is skipped and k-means picks its own k.
    options : EvalOptions, optional
    progress : callable, optional
        Stages ``"silhouette"``, ``"precision"``, ``"excerpts"``, ``"index"``.

    Returns
    -------
    Evaluation
        ``metrics`` follows :data:`METRICS_SCHEMA` (see the README).

    Raises
    ------
    EmptyLibraryError
        With fewer than 2 indexed tracks.
    """
    from soundalike.recommend import Recommender

    opts = options or EvalOptions()
    report = progress or _noop
    n = index.count
    if n < 2:
        raise EmptyLibraryError(f"need at least 2 indexed tracks to evaluate, found {n}")
    exact = exact_view(index)
    recommender = Recommender(catalog, exact, max_duration=opts.max_duration)
    tracks = {t.id: t for t in catalog.tracks(status=OK)}
    ids = [int(i) for i in index.ids]
    row_labels = [labels.by_track.get(i) if labels else None for i in ids]
    vectors = np.asarray(index.vectors, dtype=np.float32)

    report("silhouette", 0, 1)
    sil, clusters = silhouette_analysis(vectors, row_labels if labels else None, seed=opts.seed)
    report("silhouette", 1, 1)

    retrieval = None
    if labels is not None:
        layout = index.track_norm.layout
        families = {f: layout.slices[f] for f in layout.families if index.track_norm.weights.get(f, 0.0) > 0}
        hashes = [tracks[i].content_hash if i in tracks else str(i) for i in ids]
        retrieval = retrieval_quality(vectors, row_labels, k=opts.k, families=families, hashes=hashes, progress=report)

    clips = None
    if opts.excerpts > 0:
        sources = pick_excerpt_tracks(
            [tracks[i] for i in ids if i in tracks], opts.excerpts, min_seconds=min(opts.excerpt_seconds, 2.0), seed=opts.seed
        )
        clips = clip_robustness(
            recommender,
            sources,
            excerpt_seconds=opts.excerpt_seconds,
            snr_db=opts.snr_db,
            bitrate=opts.bitrate,
            start_fraction=opts.start_fraction,
            seed=opts.seed,
            progress=report,
        )

    live = Recommender(catalog, index, max_duration=opts.max_duration)
    index_metrics, latencies = index_quality(
        index, k=opts.k, queries=opts.index_queries, seed=opts.seed, recommender=live, progress=report
    )

    pca, variance = _pca(vectors, opts.seed)
    metrics: dict[str, Any] = {
        "schema": METRICS_SCHEMA,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tracks": n,
        "k": opts.k,
        "options": dataclasses.asdict(opts),
        "labels": labels.summary() if labels else None,
        "silhouette": sil,
        "retrieval": retrieval,
        "clips": clips,
        "index": index_metrics,
    }
    return Evaluation(
        metrics=_clean(metrics),
        row_labels=row_labels,
        pca=pca,
        pca_variance=variance,
        clusters=clusters,
        latencies=latencies,
    )


def _pca(vectors: np.ndarray, seed: int) -> tuple[np.ndarray | None, tuple[float, float]]:
    if len(vectors) < 3:
        return None, (0.0, 0.0)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    coords = pca.fit_transform(np.asarray(vectors, dtype=np.float64))
    ratio = pca.explained_variance_ratio_
    return coords, (float(ratio[0]), float(ratio[1]))


def _clean(value: Any) -> Any:
    """Make metrics JSON-safe: NaN becomes None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- report -------------------------------------------------------------------------------------


def write_report(evaluation: Evaluation, directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``report.md``, ``metrics.json`` and the plots into ``directory`` (created if needed).

    Plots: ``map.png`` (2-D PCA map coloured by label, or by k-means cluster without labels),
    ``silhouette.png`` (silhouette per k), ``precision_by_label.png`` and
    ``precision_by_aspect.png`` (with labels), ``recall_latency.png``.

    Returns
    -------
    list of Path
        Every file written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    m = evaluation.metrics
    written = [_write_json(out / "metrics.json", m)]
    plots: dict[str, Path] = {}
    plt = _pyplot()
    if evaluation.pca is not None:
        plots["map"] = _plot_map(plt, evaluation, out / "map.png")
    if m["silhouette"]["by_k"]:
        plots["silhouette"] = _plot_silhouette(plt, m["silhouette"], out / "silhouette.png")
    if m["retrieval"]:
        plots["precision_by_label"] = _plot_precision_by_label(plt, m["retrieval"], m["labels"], out / "precision_by_label.png")
        plots["precision_by_aspect"] = _plot_precision_by_aspect(plt, m["retrieval"], out / "precision_by_aspect.png")
    plots["recall_latency"] = _plot_recall_latency(plt, m["index"], evaluation.latencies, out / "recall_latency.png")
    written += list(plots.values())
    report = out / "report.md"
    report.write_text(_markdown(m, plots), encoding="utf-8")
    written.append(report)
    return written


def _write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(m: dict[str, Any], plots: dict[str, Path]) -> str:
    lines = ["# soundalike evaluation", "", f"{m['tracks']} tracks, generated {m['generated_at']}.", ""]
    labels = m["labels"]
    if labels:
        lines += [
            f"Labels: `{labels['source']}` — {labels['labelled']} tracks labelled, {labels['unlabelled']} "
            f"unlabelled, {labels['unmatched']} label entries matched no track.",
            "",
        ]
    lines += ["## Headline", "", "| metric | value |", "|---|---|"]
    r, c, s, ix = m["retrieval"], m["clips"], m["silhouette"], m["index"]
    if r:
        a = r["aspects"]["all"]
        lines.append(f"| P@{r['k']} (leave-one-out, exact) | {_fmt(a['precision_at_k'])} (chance {_fmt(r['chance_precision'])}) |")
        lines.append(f"| mAP | {_fmt(a['map'])} |")
    if c:
        lines.append(
            f"| excerpt top-1 / top-10 ({_fmt(c['excerpt_seconds'], 0)} s, {_fmt(c['snr_db'], 0)} dB SNR, "
            f"{c['bitrate']} MP3; {c['excerpts']} excerpts) | {_fmt(c['top1'])} / {_fmt(c['top10'])} |"
        )
    lines.append(f"| silhouette (k-means, k = {s['k']}, chosen by {s['chosen_by']}) | {_fmt(s['score'])} |")
    if s.get("label_silhouette") is not None:
        lines.append(f"| silhouette of the labels / adjusted Rand (clusters vs labels) | {_fmt(s['label_silhouette'])} / {_fmt(s['adjusted_rand'])} |")
    lines.append(f"| {ix['backend']} recall@{ix['k']} vs exact (similar / least similar) | {_fmt(ix['recall_at_k'])} / {_fmt(ix['recall_least'])} |")
    lat = ix["latency_ms"]
    lines.append(f"| {ix['backend']} index latency p50 / p95 | {_fmt(lat['p50'])} / {_fmt(lat['p95'])} ms |")
    if ix.get("recommend_latency_ms"):
        rl = ix["recommend_latency_ms"]
        lines.append(f"| whole similar_to_track p50 / p95 | {_fmt(rl['p50'], 1)} / {_fmt(rl['p95'], 1)} ms |")
    lines.append("")
    if r:
        aspects = list(r["aspects"])
        lines += ["## Retrieval by aspect", "", "| aspect | P@k | mAP |", "|---|---|---|"]
        lines += [f"| {a} | {_fmt(r['aspects'][a]['precision_at_k'])} | {_fmt(r['aspects'][a]['map'])} |" for a in aspects]
        lines += ["", "## Retrieval by label (aspect all)", "", "| label | tracks | P@k | mAP | chance P@k |", "|---|---|---|---|---|"]
        for label, v in r["aspects"]["all"]["by_label"].items():
            count = labels["counts"].get(label, v["queries"]) if labels else v["queries"]
            lines.append(
                f"| {label} | {count} | {_fmt(v['precision_at_k'])} | {_fmt(v['map'])} | {_fmt(r['chance_by_label'].get(label))} |"
            )
        lines.append("")
    if c:
        lines += [
            "## Clip robustness",
            "",
            f"{c['excerpts']} excerpts of {_fmt(c['excerpt_seconds'], 0)} s starting at {c['start_fraction']:.0%} of the "
            f"track, white noise at {_fmt(c['snr_db'], 0)} dB SNR, MP3 {c['bitrate']}: top-1 {_fmt(c['top1'])}, "
            f"top-10 {_fmt(c['top10'])}, MRR {_fmt(c['mrr'])}, {_fmt(c['seconds_per_query'], 2)} s per query.",
            "",
        ]
        if c["misses"]:
            lines += ["| source | rank | ranked first |", "|---|---|---|"]
            lines += [f"| {x['path']} | {x['rank'] or '> 10'} | {x['first']} |" for x in c["misses"][:30]]
            lines.append("")
        if c["skipped"]:
            lines += [f"Skipped {len(c['skipped'])} sources, e.g. {c['skipped'][0]['path']}: {c['skipped'][0]['reason']}", ""]
    lines += ["## Plots", ""]
    titles = {
        "map": "Library map",
        "silhouette": "Silhouette per k",
        "precision_by_label": "Precision by label",
        "precision_by_aspect": "Precision by label and aspect",
        "recall_latency": "Index recall and latency",
    }
    for key, path in plots.items():
        lines += [f"### {titles[key]}", "", f"![{titles[key]}]({path.name})", ""]
    return "\n".join(lines)


def _label_colours(plt: Any, names: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _plot_map(plt: Any, ev: Evaluation, path: Path) -> Path:
    assert ev.pca is not None
    xy = ev.pca
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    if any(lab is not None for lab in ev.row_labels):
        groups = [str(lab) if lab is not None else "(unlabelled)" for lab in ev.row_labels]
        title = "coloured by label"
    elif ev.clusters is not None:
        groups = [f"cluster {int(c) + 1}" for c in ev.clusters]
        title = "coloured by k-means cluster (no labels)"
    else:
        groups = ["track"] * len(xy)
        title = ""
    counts = Counter(groups)
    names = sorted(counts, key=lambda g: (-counts[g], g))
    colours = _label_colours(plt, [g for g in names if g != "(unlabelled)"])
    colours["(unlabelled)"] = (0.6, 0.6, 0.6, 0.5)
    markers = "osD^v<>Pp*h"
    g_arr = np.array(groups, dtype=object)
    for i, name in enumerate(names):
        mask = g_arr == name
        ax.scatter(
            xy[mask, 0], xy[mask, 1], s=34, alpha=0.8, color=colours[name], marker=markers[i % len(markers)],
            edgecolor="white", linewidth=0.4, label=f"{name} ({counts[name]})",
        )
    v1, v2 = ev.pca_variance
    ax.set_xlabel(f"PC 1 ({v1:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({v2:.0%} of variance)")
    ax.set_title(f"Library map: PCA of the normalised track features, {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _plot_silhouette(plt: Any, sil: dict[str, Any], path: Path) -> Path:
    ks = [int(k) for k in sil["by_k"]]
    values = [v if v is not None else float("nan") for v in sil["by_k"].values()]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(ks, values, marker="o", color="tab:blue")
    if sil["k"] is not None:
        ax.axvline(sil["k"], color="firebrick", ls="--", lw=1, label=f"k = {sil['k']} ({sil['chosen_by']}): {_fmt(sil['score'])}")
        ax.legend(fontsize=9)
    ax.set_xlabel("k (k-means clusters)")
    ax.set_ylabel("silhouette")
    ax.set_xticks(ks)
    ax.set_title("Silhouette of k-means on the normalised features")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_precision_by_label(plt: Any, r: dict[str, Any], labels: dict[str, Any] | None, path: Path) -> Path:
    by_label = r["aspects"]["all"]["by_label"]
    counts = (labels or {}).get("counts", {})
    names = sorted(by_label, key=lambda lab: (-counts.get(lab, 0), lab))
    names = [n for n in names if by_label[n]["precision_at_k"] is not None]
    y = np.arange(len(names))
    prec = [by_label[n]["precision_at_k"] for n in names]
    ap = [by_label[n]["map"] for n in names]
    chance = [r["chance_by_label"].get(n) or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.55 * len(names) + 1.6)), dpi=110)
    ax.barh(y - 0.2, prec, height=0.38, color="tab:blue", label=f"P@{r['k']}")
    ax.barh(y + 0.2, ap, height=0.38, color="tab:orange", label="AP (mean)")
    ax.scatter(chance, y - 0.2, marker="|", s=260, color="black", zorder=3, label="chance P@k")
    for yi, p, a in zip(y, prec, ap, strict=True):
        ax.text(p + 0.01, yi - 0.2, f"{p:.2f}", va="center", fontsize=8)
        ax.text(a + 0.01, yi + 0.2, f"{a:.2f}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{n} ({counts.get(n, by_label[n]['queries'])})" for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    overall = r["aspects"]["all"]
    ax.set_title(
        f"Leave-one-out P@{r['k']} and AP per label: overall {_fmt(overall['precision_at_k'])} / {_fmt(overall['map'])} "
        f"(chance {_fmt(r['chance_precision'])})",
        fontsize=10,
    )
    ax.set_xlabel("share of the ranking with the query's label")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_precision_by_aspect(plt: Any, r: dict[str, Any], path: Path) -> Path:
    aspects = list(r["aspects"])
    names = list(r["aspects"]["all"]["by_label"])
    grid = np.array(
        [[r["aspects"][a]["by_label"][n]["precision_at_k"] or np.nan for a in aspects] for n in names]
        + [[r["aspects"][a]["precision_at_k"] or np.nan for a in aspects]]
    )
    rows = [*names, "overall"]
    fig, ax = plt.subplots(figsize=(1.3 * len(aspects) + 3.5, 0.5 * len(rows) + 1.8), dpi=110)
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(aspects)):
            v = grid[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(aspects)), aspects)
    ax.set_yticks(range(len(rows)), rows)
    ax.axhline(len(names) - 0.5, color="white", lw=2)
    ax.set_title(f"Leave-one-out P@{r['k']} by label and aspect")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_recall_latency(plt: Any, ix: dict[str, Any], latencies: dict[str, np.ndarray], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110, gridspec_kw={"width_ratios": [2.2, 1]})
    names = list(latencies)
    data = [np.asarray(latencies[n]) * 1e3 for n in names]
    if data:
        left.boxplot(data, vert=False, showfliers=True, whis=(5, 95))
        left.set_yticks(
            range(1, len(names) + 1),
            [f"{n}\np50 {np.percentile(d, 50):.2f} ms, p95 {np.percentile(d, 95):.2f} ms" for n, d in zip(names, data, strict=True)],
        )
        if max(float(d.max()) for d in data if len(d)) / max(min(float(np.median(d)) for d in data if len(d)), 1e-9) > 30:
            _plain_log_x(left)
    left.set_xlabel("milliseconds per query (whiskers: p5–p95)")
    left.set_title(f"Query latency, {ix['queries']} held-out queries")
    left.grid(True, axis="x", alpha=0.3)
    values = [ix["recall_at_k"] or 0.0, ix["recall_least"] or 0.0]
    bars = right.bar(["similar", "least similar"], values, color=["tab:blue", "tab:purple"])
    for b, v in zip(bars, values, strict=True):
        right.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center", fontsize=9)
    right.set_ylim(0, 1.1)
    right.set_title(f"{ix['backend']} recall@{ix['k']} vs exact")
    right.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
