"""One evaluation of a library: every measurement of :mod:`soundalike.evaluate.metrics` in turn."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from soundalike.catalog import OK, Catalog
from soundalike.errors import ConfigError, EmptyLibraryError
from soundalike.evaluate.compare import check_cutoff, compare_retrieval
from soundalike.evaluate.metrics import (
    clip_robustness,
    index_quality,
    pick_excerpt_tracks,
    retrieval_quality,
    silhouette_analysis,
)
from soundalike.evaluate.records import EvalOptions, Evaluation, LabelSummary
from soundalike.evaluate.tuning import Progress, noop
from soundalike.index import build_index
from soundalike.index.bundle import LibraryIndex
from soundalike.labels import LabelSet
from soundalike.windows import WINDOW_WEIGHT, window_similarities

WINDOW_EVAL_MAX = 3000
"""Most labelled tracks whose window-set similarities are computed for every pair (the cost grows
with the square of the windows); larger evaluations rank by the whole-track cosine alone."""


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


def evaluate_library(
    catalog: Catalog,
    index: LibraryIndex,
    *,
    labels: LabelSet | None = None,
    options: EvalOptions | None = None,
    baseline: Mapping[str, Any] | None = None,
    baseline_name: str = "baseline",
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
    baseline : mapping, optional
        An earlier ``metrics.json`` of the same tracks (:func:`~soundalike.evaluate.compare.read_baseline`):
        the retrieval is compared with it query by query (``comparison``); ``baseline_name`` names it.
    progress : callable, optional
        Stages ``"silhouette"``, ``"precision"``, ``"excerpts"``, ``"index"``.

    Returns
    -------
    Evaluation
        ``to_dict()`` follows :data:`~soundalike.evaluate.METRICS_SCHEMA` (see the README).

    Raises
    ------
    EmptyLibraryError
        With fewer than 2 indexed tracks.
    ConfigError
        With a baseline but no labels, or a baseline of another ``k``.
    """
    from soundalike.recommend import Recommender

    opts = options or EvalOptions()
    report = progress or noop
    n = index.count
    if n < 2:
        raise EmptyLibraryError(f"need at least 2 indexed tracks to evaluate, found {n}")
    if baseline is not None:  # refused before the work, not after it
        check_cutoff(baseline, opts.k)
        if labels is None:
            raise ConfigError("baseline: a comparison needs labels (--labels, --label-tag or --fma-metadata)")
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
        window = None
        labelled = np.array([i for i, lab in enumerate(row_labels) if lab is not None], dtype=np.int64)
        if 0 < len(labelled) <= WINDOW_EVAL_MAX:  # beyond, the cost grows too fast: cosine alone (the report says so)
            window = np.full((len(row_labels), len(row_labels)), np.nan)
            window[np.ix_(labelled, labelled)] = window_similarities(index, labelled)
        retrieval = retrieval_quality(
            vectors, row_labels, k=opts.k, families=families, hashes=hashes,
            window=window, window_weight=WINDOW_WEIGHT, keys=[tracks[i].path if i in tracks else str(i) for i in ids],
            progress=report,
        )  # fmt: skip
    comparison = None
    if baseline is not None and retrieval is not None:
        comparison = compare_retrieval(retrieval, baseline, name=baseline_name, seed=opts.seed)

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
            labels=labels.by_track if labels else None,
            progress=report,
        )

    live = Recommender(catalog, index, max_duration=opts.max_duration)
    quality, latencies = index_quality(
        index, k=opts.k, queries=opts.index_queries, seed=opts.seed, recommender=live, progress=report
    )

    pca, variance = _pca(vectors, opts.seed)
    return Evaluation(
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        tracks=n,
        options=opts,
        labels=LabelSummary.of(labels) if labels else None,
        silhouette=sil,
        retrieval=retrieval,
        clips=clips,
        index=quality,
        row_labels=row_labels,
        pca=pca,
        pca_variance=variance,
        clusters=clusters,
        latencies=latencies,
        comparison=comparison,
    )


def _pca(vectors: np.ndarray, seed: int) -> tuple[np.ndarray | None, tuple[float, float]]:
    """2-D PCA coordinates of the vectors and the share of variance of each component."""
    if len(vectors) < 3:
        return None, (0.0, 0.0)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    coords = pca.fit_transform(np.asarray(vectors, dtype=np.float64))
    ratio = pca.explained_variance_ratio_
    return coords, (float(ratio[0]), float(ratio[1]))
