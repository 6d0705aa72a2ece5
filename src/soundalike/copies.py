"""Duplicates: groups of catalog tracks that are the same recording.

Two tracks are the same recording when

* their files are byte-identical (equal content hash), or
* their 5-second windows line up: at one consistent time offset, most windows of track A are
  nearly identical (segment cosine ≥ :data:`WINDOW_COS`) to the window of track B that starts
  that much later, and the windows so matched cover at least :data:`COVERAGE` of *both* tracks.

The second rule finds transcodes (MP3 at another bit rate, Opus, AAC), re-encodes at another
sample rate and copies with leading silence added or trimmed (a constant offset), and refuses an
excerpt of a longer track (it covers the excerpt but not the track) and different tracks of one
soundtrack (a shared motif matches a few windows, not most of both).

Candidate pairs come from the segment index: every window of every track asks for its
:data:`WINDOW_HITS` nearest windows; a pair of tracks is checked only when at least
:data:`CANDIDATE_SHARE` of the windows of one of them found a window of the other above
:data:`WINDOW_COS`. Pairs are then verified by :func:`align` and joined into groups with a
union-find.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundalike.catalog import OK, Track
from soundalike.features import HOP_S
from soundalike.index.bundle import LibraryIndex

log = logging.getLogger(__name__)

WINDOW_COS = 0.9
"""Cosine between two normalised segment vectors above which the two windows count as the same audio."""
COVERAGE = 0.7
"""Share of each track's windows that must match at one offset."""
WINDOW_HITS = 16
"""Nearest windows fetched per window when gathering candidate pairs."""
CANDIDATE_SHARE = 0.3
"""Share of a track's windows that must hit another track for the pair to be checked."""
QUERY_BATCH = 4096
"""Windows per segment-index query batch."""

__all__ = ["Alignment", "DuplicateGroup", "DuplicatePair", "Duplicates", "align", "find_duplicates", "same_recording"]


@dataclass(frozen=True)
class Alignment:
    """How the windows of two tracks line up at their best offset.

    Attributes
    ----------
    offset : float
        Seconds to add to a time in track A to find the same audio in track B.
    matched : int
        Windows matched at that offset (cosine ≥ the threshold).
    windows_a, windows_b : int
        Windows of each track.
    mean_cos : float
        Mean cosine of the matched windows.
    """

    offset: float
    matched: int
    windows_a: int
    windows_b: int
    mean_cos: float

    @property
    def coverage_a(self) -> float:
        return self.matched / self.windows_a if self.windows_a else 0.0

    @property
    def coverage_b(self) -> float:
        return self.matched / self.windows_b if self.windows_b else 0.0

    def same_recording(self, coverage: float = COVERAGE) -> bool:
        """Whether the match covers at least ``coverage`` of both tracks (and at least one window)."""
        return self.matched >= 1 and min(self.coverage_a, self.coverage_b) >= coverage

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset_s": round(self.offset, 2),
            "matched_windows": self.matched,
            "windows_a": self.windows_a,
            "windows_b": self.windows_b,
            "coverage_a": round(self.coverage_a, 4),
            "coverage_b": round(self.coverage_b, 4),
            "mean_cos": round(self.mean_cos, 4),
        }


def align(
    a: np.ndarray,
    a_starts: np.ndarray,
    b: np.ndarray,
    b_starts: np.ndarray,
    *,
    threshold: float = WINDOW_COS,
    hop: float = HOP_S,
) -> Alignment:
    """The offset at which most windows of A match windows of B.

    Parameters
    ----------
    a, b : np.ndarray [shape=(n_a, d), (n_b, d)]
        Normalised segment vectors of the two tracks.
    a_starts, b_starts : np.ndarray [shape=(n_a,), (n_b,)]
        Window start times in seconds.
    threshold : float
        Cosine at which two windows count as the same audio.
    hop : float
        Offsets are compared in steps of this many seconds (the windows' hop), so that an offset
        off the grid (2 s of silence with a 2.5-s hop) still lines windows up to within half a hop.

    Returns
    -------
    Alignment
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    na, nb = len(a), len(b)
    if na == 0 or nb == 0:
        return Alignment(0.0, 0, na, nb, 0.0)
    cos = a @ b.T  # (na, nb)
    steps = np.rint((np.asarray(b_starts)[None, :] - np.asarray(a_starts)[:, None]) / hop).astype(np.int64)
    hit = cos >= threshold
    if not hit.any():
        return Alignment(0.0, 0, na, nb, float(cos.max()))
    # For each offset step, count the windows of A with a matching window of B at that step
    # (each A window counted once per step, each B window once too).
    # Between offsets that line up as many windows, the one whose windows match best wins (music
    # that repeats itself lines up at several offsets; the true one matches closest).
    best_step, best_count, best_mean = 0, 0, 0.0
    for step in np.unique(steps[hit]):
        on = hit & (steps == step)
        count = int(min(on.any(axis=1).sum(), on.any(axis=0).sum()))
        mean = float(cos[on].mean())
        if count > best_count or (count == best_count and mean > best_mean):
            best_step, best_count, best_mean = int(step), count, mean
    return Alignment(best_step * hop, best_count, na, nb, best_mean)


def same_recording(index: LibraryIndex, row_a: int, row_b: int, *, threshold: float = WINDOW_COS) -> Alignment:
    """The :func:`align` of two indexed tracks (by row)."""
    a, sa = index.segments_of(row_a)
    b, sb = index.segments_of(row_b)
    return align(np.asarray(a), sa, np.asarray(b), sb, threshold=threshold)


@dataclass(frozen=True)
class DuplicatePair:
    """Evidence that two tracks are the same recording."""

    a: Track
    b: Track
    byte_identical: bool
    alignment: Alignment | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.id,
            "b": self.b.id,
            "byte_identical": self.byte_identical,
            "alignment": None if self.alignment is None else self.alignment.to_dict(),
        }


@dataclass(frozen=True)
class DuplicateGroup:
    """Tracks that are one recording, with the pairs that show it (a spanning set, not every pair)."""

    tracks: list[Track]
    pairs: list[DuplicatePair]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracks": [
                {
                    "track_id": t.id,
                    "path": t.display_path,
                    "title": t.title,
                    "artist": t.artist,
                    "duration": None if t.duration is None else round(t.duration, 3),
                    "size": t.size,
                    "content_hash": t.content_hash,
                }
                for t in self.tracks
            ],
            "evidence": [p.to_dict() for p in self.pairs],
        }


@dataclass(frozen=True)
class Duplicates:
    """Every group of duplicates in a library."""

    groups: list[DuplicateGroup]
    tracks: int
    candidate_pairs: int
    threshold: float
    coverage: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracks": self.tracks,
            "candidate_pairs": self.candidate_pairs,
            "window_cos": self.threshold,
            "coverage": self.coverage,
            "groups": [g.to_dict() for g in self.groups],
        }


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def candidate_pairs(
    index: LibraryIndex,
    *,
    threshold: float = WINDOW_COS,
    hits: int = WINDOW_HITS,
    share: float = CANDIDATE_SHARE,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Pairs of track rows worth aligning, from the segment index.

    Returns
    -------
    np.ndarray [shape=(p, 2), dtype=int64]
        Row pairs ``(a, b)`` with ``a < b``.
    """
    m = len(index.seg_vectors)
    if m == 0 or index.count < 2:
        return np.zeros((0, 2), dtype=np.int64)
    seg_rows = np.asarray(index.seg_rows, dtype=np.int64)
    windows = np.diff(np.asarray(index.seg_offsets))
    k = min(hits, m)
    keys: list[np.ndarray] = []
    for start in range(0, m, QUERY_BATCH):
        stop = min(m, start + QUERY_BATCH)
        found, scores = index.segments.query(np.asarray(index.seg_vectors[start:stop]), k)
        found = np.atleast_2d(found)
        scores = np.atleast_2d(scores)
        query = np.repeat(np.arange(start, stop, dtype=np.int64), found.shape[1])
        other = seg_rows[np.clip(found.reshape(-1), 0, m - 1)]
        mine = seg_rows[query]
        keep = (found.reshape(-1) >= 0) & (scores.reshape(-1) >= threshold) & (other != mine)
        # one key per (query window, other track): a window counts once for each track it hits
        keys.append(np.unique(query[keep] * index.count + other[keep]))
        if progress is not None:
            progress(stop, m)
    if not keys:
        return np.zeros((0, 2), dtype=np.int64)
    key = np.concatenate(keys)
    query, other = key // index.count, key % index.count
    mine = seg_rows[query]
    pair, votes = np.unique(mine * index.count + other, return_counts=True)
    a, b = pair // index.count, pair % index.count
    enough = votes >= np.maximum(1, np.ceil(share * windows[a]))
    lo, hi = np.minimum(a[enough], b[enough]), np.maximum(a[enough], b[enough])
    return np.unique(np.stack([lo, hi], axis=1), axis=0) if len(lo) else np.zeros((0, 2), dtype=np.int64)


def find_duplicates(
    index: LibraryIndex,
    lookup: Callable[[int], Track | None],
    *,
    threshold: float = WINDOW_COS,
    coverage: float = COVERAGE,
    progress: Callable[[str], None] | None = None,
) -> Duplicates:
    """Every group of tracks that are the same recording.

    Parameters
    ----------
    index : LibraryIndex
    lookup : callable
        Catalog track by id (``catalog.get``).
    threshold : float
        Window cosine of :func:`align`.
    coverage : float
        Share of both tracks' windows that must match.
    progress : callable, optional
        Called with a short description of each step.

    Returns
    -------
    Duplicates
        Groups ordered by their first track id; tracks in a group by id.
    """
    say = progress or (lambda _msg: None)
    tracks: dict[int, Track] = {}

    def track_at(row: int) -> Track | None:
        if row not in tracks:
            t = lookup(int(index.ids[row]))
            if t is None or t.status != OK:
                return None
            tracks[row] = t
        return tracks[row]

    uf = _UnionFind()
    evidence: list[DuplicatePair] = []
    say("finding byte-identical files")
    by_hash: dict[str, int] = {}
    # content hashes come from the catalog; only rows whose hash repeats are paired
    for row in range(index.count):
        t = track_at(row)
        if t is None:
            continue
        first = by_hash.setdefault(t.content_hash, row)
        if first != row and uf.union(first, row):
            evidence.append(DuplicatePair(tracks[first], t, True, None))
    say(f"gathering candidate pairs from {len(index.seg_vectors)} windows")
    pairs = candidate_pairs(index, threshold=threshold)
    say(f"aligning {len(pairs)} candidate pairs")
    for a, b in pairs:
        ta, tb = track_at(int(a)), track_at(int(b))
        if ta is None or tb is None or uf.find(int(a)) == uf.find(int(b)):
            continue
        alignment = same_recording(index, int(a), int(b), threshold=threshold)
        if alignment.same_recording(coverage) and uf.union(int(a), int(b)):
            evidence.append(DuplicatePair(ta, tb, ta.content_hash == tb.content_hash, alignment))
    members: dict[int, list[int]] = {}
    for row in list(uf.parent):
        members.setdefault(uf.find(row), []).append(row)
    pairs_of: dict[int, list[DuplicatePair]] = {}
    row_of_id = {t.id: r for r, t in tracks.items()}
    for p in evidence:
        pairs_of.setdefault(uf.find(row_of_id[p.a.id]), []).append(p)
    groups = [
        DuplicateGroup(sorted((tracks[r] for r in rows), key=lambda t: t.id), pairs_of.get(root, []))
        for root, rows in members.items()
        if len(rows) > 1
    ]
    groups.sort(key=lambda g: g.tracks[0].id)
    return Duplicates(groups, tracks=index.count, candidate_pairs=int(len(pairs)), threshold=threshold, coverage=coverage)
