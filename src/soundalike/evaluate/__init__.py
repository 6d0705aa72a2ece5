"""Evaluation and tuning: how good the recommendations are, and how fast the index can be.

The package is split by concern:

:mod:`~soundalike.evaluate.metrics`
    The measurements: silhouette, retrieval quality, clip robustness, index quality.
:mod:`~soundalike.evaluate.evaluation`
    :func:`evaluate_library`: every measurement on one library.
:mod:`~soundalike.evaluate.records`
    Their typed results; ``to_dict()`` gives ``metrics.json`` (:data:`METRICS_SCHEMA`).
:mod:`~soundalike.evaluate.tuning`
    Recall@k against exact search, the parameter grid, its Pareto front and the choice.
:mod:`~soundalike.evaluate.compare`
    Bootstrap intervals of the retrieval figures, and a run against a baseline, query by query.
:mod:`~soundalike.evaluate.report`
    ``report.md``, ``metrics.json`` and the plots; the text the CLI prints.

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
    a random ranking scores on average. ``precision_interval`` and ``map_interval`` are 95 %
    bootstrap intervals over the queries; ``per_query`` keeps each query's ``all`` scores by path.
``comparison`` (with a baseline ``metrics.json``)
    The same queries' change against the baseline, with paired bootstrap intervals and a verdict
    (:mod:`~soundalike.evaluate.compare`).
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
A grid over the parameters of a backend of :data:`soundalike.index.TUNABLE_BACKENDS`, measured on
held-out queries; the fastest point whose recall meets the target is saved into
``LIBRARY/tuned.json`` (:meth:`soundalike.library.Library.save_tuned`). See :mod:`soundalike.evaluate.tuning`.
"""

from __future__ import annotations

from soundalike.errors import TuneError
from soundalike.evaluate.compare import compare_retrieval, mean_interval, read_baseline
from soundalike.evaluate.evaluation import evaluate_library, exact_view
from soundalike.evaluate.metrics import (
    EXCERPT_RATE,
    SILHOUETTE_KS,
    SILHOUETTE_SAMPLE,
    TOP_N,
    clip_robustness,
    index_quality,
    pick_excerpt_tracks,
    retrieval_quality,
    silhouette_analysis,
)
from soundalike.evaluate.records import (
    METRICS_SCHEMA,
    AspectScore,
    ClipMiss,
    Clips,
    ClipSkip,
    Comparison,
    EvalOptions,
    Evaluation,
    IndexQuality,
    Interval,
    LabelScore,
    LabelSummary,
    Latency,
    QueryScores,
    Retrieval,
    Silhouette,
)
from soundalike.evaluate.report import format_summary, format_tune_table, plot_tuning, write_report
from soundalike.evaluate.tuning import (
    TIMING_ROUNDS,
    GridGroup,
    HeldOut,
    Progress,
    TunePoint,
    TuneResult,
    default_grid,
    pareto_flags,
    recall_at_k,
    tune_vectors,
)

__all__ = [
    "EXCERPT_RATE",
    "METRICS_SCHEMA",
    "SILHOUETTE_KS",
    "SILHOUETTE_SAMPLE",
    "TIMING_ROUNDS",
    "TOP_N",
    "AspectScore",
    "ClipMiss",
    "ClipSkip",
    "Clips",
    "Comparison",
    "EvalOptions",
    "Evaluation",
    "GridGroup",
    "HeldOut",
    "IndexQuality",
    "Interval",
    "LabelScore",
    "LabelSummary",
    "Latency",
    "Progress",
    "QueryScores",
    "Retrieval",
    "Silhouette",
    "TuneError",
    "TunePoint",
    "TuneResult",
    "clip_robustness",
    "compare_retrieval",
    "default_grid",
    "evaluate_library",
    "exact_view",
    "format_summary",
    "format_tune_table",
    "index_quality",
    "mean_interval",
    "pareto_flags",
    "pick_excerpt_tracks",
    "plot_tuning",
    "read_baseline",
    "recall_at_k",
    "retrieval_quality",
    "silhouette_analysis",
    "tune_vectors",
    "write_report",
]
