"""Tracks compared window by window: the set of a track's 5-second windows against another's.

A track keeps one normalised vector per 5-second window (every 2.5 s; queries every 0.5 s). Two
tracks are alike window by window when each one's windows find close matches among the other's:
the *window-set similarity* (mean over each side's windows of its best cosine on the other side).
It is blended into the ``all`` similarity of :mod:`soundalike.recommend` (and the radio's seed term,
and ``evaluate``'s ranking), and its best single pair is what identifies a clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundalike.index.bundle import LibraryIndex

WINDOW_WEIGHT = 0.2
"""Share of the window-set similarity in the ``all`` score (the rest is the whole-track cosine)."""
WINDOW_BASELINE = 0.25
"""Window-set similarity of a typical unrelated pair: it is rescaled so that this maps to 0 and a
perfect match to 1, on the scale of the whole-track cosine."""

@dataclass(frozen=True)
class WindowScores:
    """How the windows of a query meet the windows of each candidate track.

    Attributes
    ----------
    contain : np.ndarray [shape=(n,)]
        Mean over the query's windows of each one's best cosine among the track's windows: how
        well the query is found inside the track.
    cover : np.ndarray [shape=(n,)]
        Mean over the track's windows of each one's best cosine among the query's windows.
    best : np.ndarray [shape=(n,)]
        The single best window pair's cosine.
    """

    contain: np.ndarray
    cover: np.ndarray
    best: np.ndarray

    @property
    def symmetric(self) -> np.ndarray:
        """The window-set similarity of two tracks: the mean of both directions."""
        return 0.5 * (self.contain + self.cover)


def window_scores(
    query: np.ndarray, windows: np.ndarray, lengths: np.ndarray, *, block: int = 1 << 22
) -> WindowScores:
    """Compare a query's windows with the windows of several tracks.

    Parameters
    ----------
    query : np.ndarray [shape=(m, dim)]
        Normalised window vectors of the query.
    windows : np.ndarray [shape=(sum(lengths), dim)]
        Normalised window vectors of the candidate tracks, one track after the other.
    lengths : np.ndarray [shape=(n,), dtype=int]
        Windows of each candidate track (a track without windows scores -1 everywhere).
    block : int
        Largest number of cosines held at once (candidates are taken in groups to stay under it).

    Returns
    -------
    WindowScores
    """
    n = len(lengths)
    contain, cover, best = np.full(n, -1.0), np.full(n, -1.0), np.full(n, -1.0)
    if len(query) == 0 or n == 0:
        return WindowScores(contain, cover, best)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    q = np.asarray(query, dtype=np.float32)
    lo = 0
    while lo < n:
        hi = lo + 1  # as many tracks as fit in one block (at least one)
        while hi < n and (starts[hi + 1] - starts[lo]) * len(q) <= block:
            hi += 1
        group = [t for t in range(lo, hi) if lengths[t] > 0]
        if group:
            g = q @ np.asarray(windows[starts[lo] : starts[hi]], dtype=np.float32).T  # (m, windows of the group)
            offsets = starts[group] - starts[lo]
            per_track = np.maximum.reduceat(g, offsets, axis=1)  # (m, len(group)): best window of each track
            contain[group] = per_track.mean(axis=0)
            best[group] = per_track.max(axis=0)
            col_best = g.max(axis=0)
            cover[group] = np.add.reduceat(col_best, offsets) / lengths[group]
        lo = hi
    return WindowScores(contain, cover, best)


def window_similarities(index: LibraryIndex, rows: np.ndarray) -> np.ndarray:
    """The rescaled symmetric window-set similarity of every pair of ``rows`` (NaN without windows).

    What :meth:`Recommender.similar_to_track` blends into the ``all`` score, for a whole set of
    tracks at once (``soundalike evaluate`` ranks with it). Costs one pass over the rows' windows per row.

    Returns
    -------
    np.ndarray [shape=(len(rows), len(rows)), dtype=float64]
    """
    rows = np.asarray(rows, dtype=np.int64)
    offsets = np.asarray(index.seg_offsets)
    lengths = offsets[rows + 1] - offsets[rows]
    take = np.concatenate([np.arange(offsets[r], offsets[r + 1]) for r in rows]) if len(rows) else np.zeros(0, np.int64)
    windows = np.asarray(index.seg_vectors[take]) if len(take) else np.zeros((0, 1), np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    contain = np.full((len(rows), len(rows)), -1.0)
    for a in range(len(rows)):
        if lengths[a]:
            contain[a] = window_scores(windows[starts[a] : starts[a + 1]], windows, lengths).contain
    return rescaled_window_similarity(np.where((contain <= -1.0) | (contain.T <= -1.0), -1.0, 0.5 * (contain + contain.T)))


def rescaled_window_similarity(w: np.ndarray) -> np.ndarray:
    """Window-set similarity rescaled to the whole-track cosine's scale (see :data:`WINDOW_BASELINE`);
    NaN for a track without windows."""
    w = np.asarray(w, dtype=np.float64)
    return np.where(w <= -1.0, np.nan, np.clip((w - WINDOW_BASELINE) / (1.0 - WINDOW_BASELINE), -1.0, 1.0))
