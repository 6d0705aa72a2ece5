"""Typed results of an evaluation.

Every record is a frozen dataclass whose field names are the keys of its part of ``metrics.json``
(:data:`METRICS_SCHEMA`, described in the README); ``to_dict()`` gives that JSON, with NaN written
as ``null``. The report and the CLI summary read the attributes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from soundalike.labels import LabelSet

METRICS_SCHEMA = "soundalike.evaluate/1"


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


class _JsonRecord:
    """``to_dict()`` for a dataclass whose field names are its JSON keys."""

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready dicts and lists (NaN as None)."""
        out: dict[str, Any] = _clean(dataclasses.asdict(cast(Any, self)))
        return out


@dataclass(frozen=True)
class EvalOptions:
    """What :func:`~soundalike.evaluate.evaluate_library` measures and how.

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


@dataclass(frozen=True)
class Latency(_JsonRecord):
    """Per-query time in milliseconds (NaN without queries)."""

    p50: float
    p95: float
    mean: float

    @classmethod
    def of(cls, seconds: np.ndarray) -> Latency:
        """p50, p95 and mean of per-query times given in seconds."""
        if len(seconds) == 0:
            return cls(p50=float("nan"), p95=float("nan"), mean=float("nan"))
        ms = np.asarray(seconds) * 1e3
        return cls(p50=float(np.percentile(ms, 50)), p95=float(np.percentile(ms, 95)), mean=float(ms.mean()))


@dataclass(frozen=True)
class LabelSummary(_JsonRecord):
    """Where the labels came from and how many tracks got one."""

    source: str
    labelled: int
    unlabelled: int
    unmatched: int
    counts: dict[str, int]

    @classmethod
    def of(cls, labels: LabelSet) -> LabelSummary:
        """The summary of a :class:`~soundalike.labels.LabelSet`."""
        return cls(**cast(dict[str, Any], labels.summary()))


@dataclass(frozen=True)
class Silhouette(_JsonRecord):
    """Silhouette of a k-means clustering of the normalised track vectors.

    Attributes
    ----------
    score : float or None
        Silhouette of the chosen clustering.
    k : int or None
    chosen_by : str or None
        ``"labels"`` (one cluster per label) or ``"best"`` (the best ``k`` in 2..12).
    by_k : dict of int to float
        Silhouette per ``k``, rounded to 4 decimals (keys are strings in the JSON).
    label_silhouette, adjusted_rand : float or None
        Silhouette of the labels themselves, adjusted Rand index of clusters against labels.
    """

    score: float | None = None
    k: int | None = None
    chosen_by: str | None = None
    by_k: dict[int, float] = field(default_factory=dict)
    label_silhouette: float | None = None
    adjusted_rand: float | None = None


@dataclass(frozen=True)
class LabelScore(_JsonRecord):
    """Leave-one-out scores of the queries with one label."""

    queries: int
    precision_at_k: float | None
    map: float | None


@dataclass(frozen=True)
class AspectScore(_JsonRecord):
    """Leave-one-out scores of one aspect, overall and per label."""

    precision_at_k: float | None
    map: float | None
    by_label: dict[str, LabelScore]


@dataclass(frozen=True)
class Interval(_JsonRecord):
    """A bootstrap confidence interval of a mean over queries (:func:`~soundalike.evaluate.compare.mean_interval`)."""

    low: float
    high: float
    level: float


@dataclass(frozen=True)
class QueryScores(_JsonRecord):
    """Each query's own scores on the ``all`` ranking, so that two evaluations of the same tracks
    can be compared query by query (:func:`~soundalike.evaluate.compare.compare_retrieval`).

    Attributes
    ----------
    paths : tuple of str
        The query track's path (what is matched between two evaluations).
    precision_at_k, average_precision : tuple of float
        Its precision@k and average precision, in the order of ``paths``.
    """

    paths: tuple[str, ...]
    precision_at_k: tuple[float, ...]
    average_precision: tuple[float, ...]


@dataclass(frozen=True)
class Retrieval(_JsonRecord):
    """Leave-one-out retrieval quality against labels.

    Attributes
    ----------
    k : int
        Cut-off actually used (at most the labelled tracks less one).
    queries, singletons : int
        Queries asked, and labelled tracks left out because no other track has their label.
    chance_precision : float or None
        What a random ranking scores on average; ``chance_by_label`` per label.
    aspects : dict of str to AspectScore
        ``"all"`` first, then each feature family.
    precision_interval, map_interval : Interval or None
        95 % bootstrap intervals of ``all``'s precision@k and mean average precision over the
        queries: how far the figures could move on another draw of tracks like these.
    per_query : QueryScores or None
        ``all``'s scores of every query, for comparing with a later evaluation (``--baseline``).
    """

    k: int
    queries: int
    singletons: int
    chance_precision: float | None
    chance_by_label: dict[str, float | None]
    aspects: dict[str, AspectScore]
    precision_interval: Interval | None = None
    map_interval: Interval | None = None
    per_query: QueryScores | None = None


@dataclass(frozen=True)
class Comparison(_JsonRecord):
    """This evaluation's retrieval against an earlier one of the same tracks, query by query.

    Attributes
    ----------
    baseline : str
        Where the earlier ``metrics.json`` was read from; ``baseline_generated_at`` when it was made.
    queries : int
        Queries in both (matched by path); ``only_here`` and ``only_there`` count the others.
    k : int
    precision_delta, map_delta : float
        Mean change of precision@k and of average precision over the common queries (this run
        less the baseline's).
    precision_interval, map_interval : Interval or None
        Paired bootstrap intervals of those changes (None with fewer than 2 common queries).
    better, worse : int
        Common queries whose average precision rose, or fell.
    verdict : str
        ``"better"`` or ``"worse"`` when an interval excludes 0 and none points the other way,
        ``"mixed"`` when they point both ways, else ``"indistinguishable"``: the change is within
        what another draw of tracks could give.
    """

    baseline: str
    baseline_generated_at: str | None
    queries: int
    only_here: int
    only_there: int
    k: int
    precision_delta: float
    map_delta: float
    precision_interval: Interval | None
    map_interval: Interval | None
    better: int
    worse: int
    verdict: str


@dataclass(frozen=True)
class ClipSkip(_JsonRecord):
    """A source track no excerpt could be made of."""

    path: str
    reason: str


@dataclass(frozen=True)
class ClipMiss(_JsonRecord):
    """A source track its excerpt did not rank first (``rank`` None: not in the top 10)."""

    track_id: int
    path: str
    rank: int | None
    first: str | None


@dataclass(frozen=True)
class Clips(_JsonRecord):
    """Clip robustness: noisy MP3 excerpts queried against the library.

    ``top1`` and ``top10`` are the shares of excerpts whose source ranks first, or in the first ten;
    ``mrr`` the mean reciprocal rank within the top ten; ``precision`` (with labels) the mean share
    of the first ten results other than the source that have its label: how good the excerpt's
    recommendations are. Figures are None without excerpts.
    """

    excerpts: int
    excerpt_seconds: float
    snr_db: float
    bitrate: str
    start_fraction: float
    top1: float | None
    top10: float | None
    mrr: float | None
    seconds_per_query: float | None
    precision: float | None = None
    skipped: tuple[ClipSkip, ...] = ()
    misses: tuple[ClipMiss, ...] = ()


@dataclass(frozen=True)
class IndexQuality(_JsonRecord):
    """Recall@k of the configured index against exact search, and query latency."""

    backend: str
    params: dict[str, Any] | None
    k: int
    queries: int
    recall_at_k: float
    recall_least: float
    latency_ms: Latency
    exact_latency_ms: Latency
    recommend_latency_ms: Latency | None = None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything :func:`~soundalike.evaluate.evaluate_library` measured, and what the plots need.

    Attributes
    ----------
    generated_at : str
        Local time of the evaluation, ISO 8601.
    tracks : int
        Indexed tracks.
    options : EvalOptions
    labels : LabelSummary or None
    silhouette : Silhouette
    retrieval : Retrieval or None
        None without labels.
    clips : Clips or None
        None when no excerpts were asked for.
    index : IndexQuality
    row_labels : list of str or None
        The label of each index row.
    pca : np.ndarray [shape=(tracks, 2)] or None
        2-D PCA of the vectors; ``pca_variance`` the share of variance of each component.
    clusters : np.ndarray [shape=(tracks,)] or None
        k-means cluster of each row.
    latencies : dict of str to np.ndarray
        Per-query seconds of each timed query kind.
    comparison : Comparison or None
        Against a baseline evaluation, when one was given.
    """

    generated_at: str
    tracks: int
    options: EvalOptions
    labels: LabelSummary | None
    silhouette: Silhouette
    retrieval: Retrieval | None
    clips: Clips | None
    index: IndexQuality
    row_labels: list[str | None] = field(default_factory=list)
    pca: np.ndarray | None = None
    pca_variance: tuple[float, float] = (0.0, 0.0)
    clusters: np.ndarray | None = None
    latencies: dict[str, np.ndarray] = field(default_factory=dict)
    comparison: Comparison | None = None

    @property
    def k(self) -> int:
        """Cut-off of precision@k and recall@k."""
        return self.options.k

    def to_dict(self) -> dict[str, Any]:
        """The content of ``metrics.json`` (:data:`METRICS_SCHEMA`)."""

        def part(record: _JsonRecord | None) -> dict[str, Any] | None:
            return None if record is None else record.to_dict()

        out: dict[str, Any] = _clean(
            {
                "schema": METRICS_SCHEMA,
                "generated_at": self.generated_at,
                "tracks": self.tracks,
                "k": self.k,
                "options": dataclasses.asdict(self.options),
                "labels": part(self.labels),
                "silhouette": self.silhouette.to_dict(),
                "retrieval": part(self.retrieval),
                "clips": part(self.clips),
                "index": self.index.to_dict(),
                "comparison": part(self.comparison),
            }
        )
        return out
