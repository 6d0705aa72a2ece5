"""The measurements of an evaluation: silhouette, retrieval quality, clip robustness, index quality.

Quality is measured on the *exact* index, so that the figures describe the features and the
similarity, not the approximation; the configured index is then measured against exact search.
Each function returns a typed record of :mod:`soundalike.evaluate.records`.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soundalike.catalog import OK, Track
from soundalike.errors import EmptyLibraryError, SoundalikeError
from soundalike.evaluate.compare import mean_interval
from soundalike.evaluate.records import (
    AspectScore,
    ClipMiss,
    Clips,
    ClipSkip,
    IndexQuality,
    LabelScore,
    Latency,
    QueryScores,
    Retrieval,
    Silhouette,
)
from soundalike.evaluate.tuning import HeldOut, Progress, noop
from soundalike.index import build_index
from soundalike.index.bundle import LibraryIndex

SILHOUETTE_KS = range(2, 13)
SILHOUETTE_SAMPLE = 5000
"""Silhouettes of larger libraries are computed on a seeded sample of this many tracks."""
EXCERPT_RATE = 44100
TOP_N = 10


def silhouette_analysis(
    vectors: np.ndarray, labels: Sequence[str | None] | None = None, *, seed: int = 0
) -> tuple[Silhouette, np.ndarray | None]:
    """Silhouette of a k-means clustering of the vectors.

    K-means (scikit-learn, 10 restarts; 3 above 10,000 tracks) with ``k`` = the number of labels,
    or the ``k`` in 2..12 with the best silhouette when there are no labels. The silhouette of the
    labels themselves and the adjusted Rand index between clusters and labels are given beside it.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, dim)]
        Normalised track vectors.
    labels : sequence of str or None, optional
        A label per row (None for unlabelled rows).
    seed : int

    Returns
    -------
    silhouette : Silhouette
        ``label_silhouette`` and ``adjusted_rand`` are None without labels.
    clusters : np.ndarray [shape=(n,)] or None
        The k-means cluster of each row (None when there are fewer than 3 rows).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    if n < 3:
        return Silhouette(), None
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
    rounded = {k: round(v, 4) for k, v in by_k.items()}
    if 2 <= len(distinct) < n:
        k = len(distinct)
        clusters = fit(k)
        label_silhouette = adjusted_rand = None
        codes = np.array([distinct.index(str(v)) for v in names])
        if len(distinct) < len(labelled):
            label_silhouette = score(codes, labelled)
            adjusted_rand = float(adjusted_rand_score(codes, clusters[labelled]))
        result = Silhouette(
            score=score(clusters), k=k, chosen_by="labels", by_k=rounded,
            label_silhouette=label_silhouette, adjusted_rand=adjusted_rand,
        )  # fmt: skip
        return result, clusters
    valid = {k: v for k, v in by_k.items() if not math.isnan(v)}
    if not valid:
        return Silhouette(by_k=rounded), None
    k = max(valid, key=lambda kk: valid[kk])
    return Silhouette(score=valid[k], k=k, chosen_by="best", by_k=rounded), fit(k)


def retrieval_quality(
    vectors: np.ndarray,
    labels: Sequence[str | None],
    *,
    k: int = 10,
    families: dict[str, slice] | None = None,
    hashes: Sequence[str] | None = None,
    window: np.ndarray | None = None,
    window_weight: float = 0.0,
    keys: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Retrieval:
    """Leave-one-out precision@k and mean average precision, overall, per label and per aspect.

    Each labelled track queries all the others, ranked exactly as
    :meth:`~soundalike.recommend.Recommender.similar_to_track` ranks them on the exact index (the
    dot product of normalised vectors for ``all``, the family cosine for one aspect; the track
    itself and byte-identical copies left out). ``precision_at_k`` is the share of the first ``k``
    with the query's label; ``map`` the mean average precision over the full ranking. Queries whose
    label no other track has are left out (counted as ``singletons``).

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
    window : np.ndarray [shape=(n, n)], optional
        Window-set similarities (:func:`soundalike.recommend.window_similarities`), blended into the
        ``all`` score with ``window_weight`` as ``similar`` does (NaN: no windows, cosine alone).
    keys : sequence of str, optional
        What names each row (its path): with it, ``all``'s score of every query is kept
        (``per_query``) for a later comparison.
    progress : callable, optional
        ``progress("precision", done, total)`` over aspects × query chunks.

    Returns
    -------
    Retrieval

    Raises
    ------
    EmptyLibraryError
        With fewer than 2 labelled tracks.
    """
    report = progress or noop
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
    aspects: dict[str, AspectScore] = {}
    for aspect, block in aspect_blocks.items():
        prec = np.zeros(m)
        ap = np.zeros(m)
        for start in range(0, m, chunk):
            q = np.arange(start, min(m, start + chunk))
            scores = block[q] @ block.T
            if aspect == "all" and window is not None:
                w = window[np.ix_(rows[q], rows)]
                scores = np.where(np.isnan(w), scores, (1 - window_weight) * scores + window_weight * w)
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
            by_label[str(label)] = LabelScore(
                queries=int(mask.sum()),
                precision_at_k=float(prec[mask].mean()) if mask.any() else None,
                map=float(ap[mask].mean()) if mask.any() else None,
            )
        aspects[aspect] = AspectScore(
            precision_at_k=float(prec[asked].mean()) if asked.any() else None,
            map=float(ap[asked].mean()) if asked.any() else None,
            by_label=by_label,
        )
        if aspect == "all":
            all_prec, all_ap = prec[asked], ap[asked]
    candidates = m - 1
    chance = same_count[asked] / candidates
    per_query = None
    if keys is not None:
        per_query = QueryScores(
            paths=tuple(str(keys[i]) for i in rows[asked]),
            precision_at_k=tuple(float(v) for v in all_prec),
            average_precision=tuple(float(v) for v in all_ap),
        )
    chance_by_label = {
        str(label): float(chance[codes[asked] == c].mean()) if np.any(codes[asked] == c) else None
        for c, label in enumerate(distinct)
    }
    return Retrieval(
        k=int(kk),
        queries=int(asked.sum()),
        singletons=int((~asked).sum()),
        chance_precision=float(chance.mean()) if len(chance) else None,
        chance_by_label=chance_by_label,
        aspects=aspects,
        precision_interval=mean_interval(all_prec),
        map_interval=mean_interval(all_ap),
        per_query=per_query,
    )


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
    labels: Mapping[int, str] | None = None,
    progress: Progress | None = None,
) -> Clips:
    """Query noisy MP3 excerpts of library tracks and see whether the source comes back, and
    whether the rest of the answer is music like it.

    For each track: decode at 44.1 kHz, cut an excerpt starting at ``start_fraction`` of the
    track, add white gaussian noise at ``snr_db`` relative to the excerpt's RMS, encode as MP3 at
    ``bitrate``, and query it with :meth:`~soundalike.recommend.Recommender.similar_to_file`. The
    source counts as found when it (or a byte-identical copy) is ranked.

    Parameters
    ----------
    recommender : soundalike.recommend.Recommender
        Usually on the exact index (:func:`~soundalike.evaluate.exact_view`).
    tracks : sequence of Track
        Sources (see :func:`pick_excerpt_tracks`).
    excerpt_seconds, snr_db, bitrate, start_fraction, seed
        See :class:`~soundalike.evaluate.EvalOptions`; track ``t`` gets noise seeded with
        ``seed + t.id``.
    labels : mapping of track id to label, optional
        With them, ``precision`` is the mean share of an excerpt's first ten recommendations other
        than its source (and the source's byte-identical copies) that have the source's label.
    progress : callable, optional
        ``progress("excerpts", done, total)``.

    Returns
    -------
    Clips
        With the sources that failed (``skipped``, with the reason) and those not ranked first
        (``misses``, with their rank or None).
    """
    from soundalike.audio import add_noise, decode, encode, excerpt

    report = progress or noop
    ranks: list[int | None] = []
    misses: list[ClipMiss] = []
    skipped: list[ClipSkip] = []
    query_seconds: list[float] = []
    precisions: list[float] = []
    report("excerpts", 0, len(tracks))
    with tempfile.TemporaryDirectory(prefix="soundalike-excerpts-") as tmp:
        clip = Path(tmp) / "excerpt.mp3"
        for done, track in enumerate(tracks, start=1):
            try:
                audio = decode(track.path, sample_rate=EXCERPT_RATE, max_duration=recommender.max_duration)
                duration = audio.duration
                length = min(excerpt_seconds, duration)
                start = min(start_fraction * duration, duration - length)
                cut = excerpt(audio.samples, sample_rate=EXCERPT_RATE, start_s=start, duration_s=length)
                noisy = add_noise(cut, snr_db=snr_db, rng=seed + track.id)
                peak = float(np.max(np.abs(noisy))) if len(noisy) else 0.0
                if peak > 1.0:  # the MP3 encoder clips; scale instead, as a mastering limiter would
                    noisy = noisy / peak
                encode(clip, noisy, sample_rate=EXCERPT_RATE, bitrate=bitrate)
            except (SoundalikeError, ValueError, OSError) as exc:
                skipped.append(ClipSkip(path=track.display_path, reason=str(exc)))
                report("excerpts", done, len(tracks))
                continue
            started = time.perf_counter()
            try:
                # One more than the ten: the source, when it is there, is not a recommendation.
                result = recommender.similar_to_file(clip, k=TOP_N + 1, name=f"excerpt of {track.display_path}")
            except SoundalikeError as exc:  # an excerpt of a quiet passage can be silent: skipped, said why
                skipped.append(ClipSkip(path=track.display_path, reason=str(exc)))
                report("excerpts", done, len(tracks))
                continue
            query_seconds.append(time.perf_counter() - started)
            source = [r.track.id == track.id or r.track.content_hash == track.content_hash for r in result.results]
            rank = next((r.rank for r, hit in zip(result.results, source, strict=True) if hit and r.rank <= TOP_N), None)
            ranks.append(rank)
            wanted = labels.get(track.id) if labels else None
            others = [r for r, hit in zip(result.results, source, strict=True) if not hit][:TOP_N]
            if wanted is not None and others:
                precisions.append(sum(labels.get(r.track.id) == wanted for r in others) / len(others))  # type: ignore[union-attr]
            if rank != 1:
                top = result.results[0].track if result.results else None
                misses.append(
                    ClipMiss(track_id=track.id, path=track.display_path, rank=rank, first=None if top is None else top.display_path)
                )
            report("excerpts", done, len(tracks))
    n = len(ranks)
    return Clips(
        excerpts=n,
        excerpt_seconds=excerpt_seconds,
        snr_db=snr_db,
        bitrate=bitrate,
        start_fraction=start_fraction,
        top1=sum(r == 1 for r in ranks) / n if n else None,
        top10=sum(r is not None and r <= TOP_N for r in ranks) / n if n else None,
        mrr=sum(1.0 / r for r in ranks if r is not None) / n if n else None,
        precision=float(np.mean(precisions)) if precisions else None,
        seconds_per_query=float(np.mean(query_seconds)) if query_seconds else None,
        skipped=tuple(skipped),
        misses=tuple(misses),
    )


def index_quality(
    index: LibraryIndex,
    *,
    k: int = 10,
    queries: int = 200,
    seed: int = 0,
    recommender: Any = None,
    progress: Progress | None = None,
) -> tuple[IndexQuality, dict[str, np.ndarray]]:
    """Recall@k of the configured index against exact search, and query latency.

    Held-out queries are library tracks queried for their ``k`` nearest others, and negated for
    the least similar. Latency p50/p95 is measured for the index alone, exact search alone, and
    a whole ``similar_to_track`` call.

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
    quality : IndexQuality
    latencies : dict of str to np.ndarray
        Per-query seconds, for plots.

    Raises
    ------
    EmptyLibraryError
        With fewer than 2 indexed tracks.
    """
    report = progress or noop
    data = np.ascontiguousarray(index.vectors, dtype=np.float32)
    if len(data) < 2:
        raise EmptyLibraryError(f"need at least 2 indexed tracks to measure recall, found {len(data)}")
    q = HeldOut.sample(data, k, queries, seed)
    steps = 3 if recommender is not None else 2
    report("index", 0, steps)
    recall, recall_least, seconds = q.measure(index.tracks, data)
    report("index", 1, steps)
    _, _, exact_seconds = q.measure(build_index("exact", data), data)
    report("index", 2, steps)
    latencies = {f"configured index ({index.backend})": seconds, "exact index": exact_seconds}
    whole_latency = None
    if recommender is not None:
        whole = []
        for r in q.rows[:50]:
            started = time.perf_counter()
            recommender.similar_to_track(int(index.ids[r]), k=q.k)
            whole.append(time.perf_counter() - started)
        latencies["whole similar_to_track"] = np.array(whole)
        whole_latency = Latency.of(np.array(whole))
        report("index", 3, steps)
    quality = IndexQuality(
        backend=index.backend,
        params=index.manifest.params,
        k=q.k,
        queries=len(q.rows),
        recall_at_k=recall,
        recall_least=recall_least,
        latency_ms=Latency.of(seconds),
        exact_latency_ms=Latency.of(exact_seconds),
        recommend_latency_ms=whole_latency,
    )
    return quality, latencies
