"""Queries: tracks that sound like a file or like a catalog track, the least alike, segment matches.

What the numbers mean
---------------------
Every track is described by a vector per feature family (timbre, spectral, rhythm, harmony,
loudness), standardised over the library; ``c_f`` is the cosine between the query's and a track's
vector of family ``f`` (1 = same description, 0 = unrelated, -1 = opposite).

* ``aspects[f] = (1 + c_f) / 2``, in [0, 1].
* For ``aspect="all"`` the score ``c`` is the weighted mean of the ``c_f`` (equal weights by default);
  for one aspect it is that family's ``c_f`` alone.
* For a *file* query with ``aspect="all"``, ``c`` is the mean of that and the best cosine between any
  5-second window of the query and any window of the track, so a clip cut from a track finds it.
* ``similarity = (1 + c) / 2`` in [0, 1], higher is closer; 0.5 means unrelated.
* ``distance = sqrt(2 - 2c)``, the Euclidean distance between the unit vectors (0 to 2).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

import numpy as np

from soundalike.catalog import OK, Catalog, Track
from soundalike.errors import TrackNotFoundError
from soundalike.features import ASPECTS, HOP_S, QUERY_HOP_S, WINDOW_S, extract
from soundalike.index.bundle import LibraryIndex

log = logging.getLogger(__name__)

SEGMENT_WEIGHT = 0.5
"""Share of the best segment match in a file query's overall score."""
SEGMENT_HITS = 20
"""Segments fetched per query window when gathering candidates."""
SEGMENT_CSV_MATCHES = 3
"""Matches written per query segment in the segment CSV."""
SEGMENT_CSV_FIELDS = (
    "query_start_s",
    "query_end_s",
    "track_id",
    "path",
    "track_start_s",
    "track_end_s",
    "similarity",
)


@dataclass(frozen=True)
class Recommendation:
    """One recommended (or least similar) track."""

    rank: int
    track: Track
    similarity: float
    distance: float
    aspects: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "track_id": self.track.id,
            "path": self.track.display_path,
            "title": self.track.title,
            "artist": self.track.artist,
            "similarity": round(self.similarity, 6),
            "distance": round(self.distance, 6),
            "aspects": {k: round(v, 6) for k, v in self.aspects.items()},
        }


@dataclass(frozen=True)
class SegmentMatch:
    """A window of the query that sounds like a window of a catalog track."""

    query_start: float
    query_end: float
    track: Track
    track_start: float
    track_end: float
    similarity: float

    def to_row(self) -> dict[str, Any]:
        return {
            "query_start_s": round(self.query_start, 2),
            "query_end_s": round(self.query_end, 2),
            "track_id": self.track.id,
            "path": self.track.display_path,
            "track_start_s": round(self.track_start, 2),
            "track_end_s": round(self.track_end, 2),
            "similarity": round(self.similarity, 6),
        }


@dataclass(frozen=True)
class Recommendations:
    """The answer to one query."""

    query: dict[str, Any]
    results: list[Recommendation]
    least_similar: list[Recommendation]
    segment_matches: list[SegmentMatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": [r.to_dict() for r in self.results],
            "least_similar": [r.to_dict() for r in self.least_similar],
        }


def write_segment_csv(matches: Iterable[SegmentMatch], out: IO[str]) -> int:
    """Write segment matches as CSV with :data:`SEGMENT_CSV_FIELDS`; returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=SEGMENT_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for m in matches:
        writer.writerow(m.to_row())
        n += 1
    return n


def _check(k: int, aspect: str) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}")
    if aspect not in ASPECTS:
        raise ValueError(f"unknown aspect {aspect!r}; expected one of {', '.join(ASPECTS)}")


def _to_similarity(c: np.ndarray | float) -> np.ndarray:
    return np.clip((1.0 + np.asarray(c, dtype=np.float64)) / 2.0, 0.0, 1.0)


class Recommender:
    """Answers queries against one catalog and its loaded index.

    Parameters
    ----------
    catalog : Catalog
    index : LibraryIndex
    max_duration : float
        Longest query file accepted, in seconds.
    """

    def __init__(self, catalog: Catalog, index: LibraryIndex, *, max_duration: float = 1800.0) -> None:
        self.catalog = catalog
        self.index = index
        self.max_duration = max_duration

    # -- public queries -----------------------------------------------------------------------

    def resolve(self, ref: str | int) -> Track:
        """A catalog track by id or path.

        Raises
        ------
        TrackNotFoundError
        """
        track: Track | None = None
        text = str(ref).strip()
        if text.isdigit():
            track = self.catalog.get(int(text))
        if track is None:
            track = self.catalog.get_by_path(os.path.abspath(text)) or self.catalog.get_by_path(text)
        if track is None:
            raise TrackNotFoundError(f"no track {text!r} in the catalog (give a track id or a catalog path)")
        if track.status != OK:
            raise TrackNotFoundError(f"track {track.id} ({track.display_path}) failed analysis: {track.error}")
        return track

    def similar_to_track(
        self, ref: str | int | Track, *, k: int = 10, aspect: str = "all", segments: bool = False
    ) -> Recommendations:
        """Tracks that sound like a catalog track; never the track itself or byte-identical copies."""
        _check(k, aspect)
        track = ref if isinstance(ref, Track) else self.resolve(ref)
        raw = self.catalog.vectors([track.id])[0]
        q_all = self.index.track_norm.transform(raw)
        q = q_all if aspect == "all" else self.index.track_norm.transform(raw, aspect)

        def keep(t: Track) -> bool:
            return t.id != track.id and t.content_hash != track.content_hash

        rows = self._search_rows(q, k + 8, keep)
        results = self._rank(rows, q_all, aspect, k, keep, seg_scores=None)
        least = self._least(q, q_all, aspect, k, keep)
        matches: list[SegmentMatch] = []
        if segments:
            row = self.index.row_of(track.id)
            if row is not None:
                seg_vecs, starts = self.index.segments_of(row)
                matches = self._segment_matches(np.asarray(seg_vecs), starts, track.duration or 0.0, keep)
        query = {
            "type": "track",
            "track_id": track.id,
            "path": track.display_path,
            "title": track.title,
            "artist": track.artist,
            "aspect": aspect,
            "k": k,
        }
        return Recommendations(query=query, results=results, least_similar=least, segment_matches=matches)

    def similar_to_file(
        self,
        source: str | os.PathLike[str] | bytes | BinaryIO,
        *,
        k: int = 10,
        aspect: str = "all",
        segments: bool = False,
        name: str | None = None,
        truncate_to: float | None = None,
    ) -> Recommendations:
        """Tracks that sound like an audio file that need not be in the catalog.

        With ``truncate_to``, only the file's first that many seconds are decoded and analysed
        (see :func:`soundalike.audio.decode`); the query then says ``truncated_to_s``.

        Raises
        ------
        AudioError
            When the file cannot be decoded (see :mod:`soundalike.audio`).
        """
        from soundalike.audio import decode

        _check(k, aspect)
        audio = decode(source, max_duration=self.max_duration, name=name, truncate_to=truncate_to)
        analysis = extract(audio.samples, sample_rate=audio.sample_rate, segment_hop_s=QUERY_HOP_S)
        norm = self.index.track_norm
        q_all = norm.transform(analysis.vector)
        q = q_all if aspect == "all" else norm.transform(analysis.vector, aspect)
        q_segs = self.index.segment_norm.transform(analysis.segments)

        def keep(t: Track) -> bool:
            return True

        rows = self._search_rows(q, max(4 * k, k + 20), keep)
        seg_scores: dict[int, float] | None = None
        if aspect == "all" and len(q_segs) and len(self.index.seg_vectors):
            hits, _ = self.index.segments.query(q_segs, SEGMENT_HITS)
            seg_rows = {int(r) for r in np.unique(self.index.seg_rows[hits.reshape(-1)])}
            rows = list(dict.fromkeys([*rows, *sorted(seg_rows)]))
            seg_scores = {r: self._best_segment(q_segs, r) for r in rows}
        results = self._rank(rows, q_all, aspect, k, keep, seg_scores=seg_scores)
        least = self._least(q, q_all, aspect, k, keep)
        matches: list[SegmentMatch] = []
        if segments:
            step = max(1, round(HOP_S / QUERY_HOP_S))
            matches = self._segment_matches(q_segs[::step], analysis.segment_starts[::step], analysis.duration, keep)
        label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "<upload>")
        query = {
            "type": "file",
            "path": label,
            "duration": round(analysis.duration, 3),
            "format": audio.source_format,
            "aspect": aspect,
            "k": k,
        }
        if audio.truncated_to is not None:
            query["truncated_to_s"] = audio.truncated_to
        return Recommendations(query=query, results=results, least_similar=least, segment_matches=matches)

    # -- internals ----------------------------------------------------------------------------

    def _tracks(self, rows: Iterable[int]) -> dict[int, Track]:
        out = {}
        for r in rows:
            t = self.catalog.get(int(self.index.ids[r]))
            if t is not None and t.status == OK:
                out[r] = t
        return out

    def _search_rows(self, q: np.ndarray, n: int, keep: Any) -> list[int]:
        positions, _ = self.index.tracks.query(q, min(n, self.index.count))
        return [int(p) for p in positions if p >= 0]

    def _best_segment(self, q_segs: np.ndarray, row: int) -> float:
        vecs, _ = self.index.segments_of(row)
        if len(vecs) == 0:
            return -1.0
        return float((np.asarray(vecs) @ q_segs.T).max())

    def _score(self, rows: list[int], q_all: np.ndarray, aspect: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = np.asarray(self.index.vectors[np.asarray(rows, dtype=np.int64)])
        cos = self.index.track_norm.aspect_similarities(q_all, x)
        overall = x @ q_all if aspect == "all" else cos[aspect]
        return overall.astype(np.float64), cos

    def _rank(
        self,
        rows: list[int],
        q_all: np.ndarray,
        aspect: str,
        k: int,
        keep: Any,
        *,
        seg_scores: dict[int, float] | None,
    ) -> list[Recommendation]:
        if not rows:
            return []
        score, cos = self._score(rows, q_all, aspect)
        if seg_scores is not None:
            seg = np.array([seg_scores.get(r, -1.0) for r in rows])
            score = (1 - SEGMENT_WEIGHT) * score + SEGMENT_WEIGHT * seg
        order = np.argsort(-score, kind="stable")
        return self._build(rows, order, score, cos, k, keep)

    def _least(self, q: np.ndarray, q_all: np.ndarray, aspect: str, k: int, keep: Any) -> list[Recommendation]:
        rows = self._search_rows(-q, k + 8, keep)
        if not rows:
            return []
        score, cos = self._score(rows, q_all, aspect)
        order = np.argsort(score, kind="stable")
        return self._build(rows, order, score, cos, k, keep)

    def _build(
        self, rows: list[int], order: np.ndarray, score: np.ndarray, cos: dict[str, np.ndarray], k: int, keep: Any
    ) -> list[Recommendation]:
        tracks = self._tracks(rows[i] for i in order[: k + 16])
        out: list[Recommendation] = []
        for i in order:
            t = tracks.get(rows[i])
            if t is None or not keep(t):
                continue
            c = float(score[i])
            out.append(
                Recommendation(
                    rank=len(out) + 1,
                    track=t,
                    similarity=float(_to_similarity(c)),
                    distance=math.sqrt(max(0.0, 2.0 - 2.0 * c)),
                    aspects={f: float(_to_similarity(v[i])) for f, v in cos.items()},
                )
            )
            if len(out) == k:
                break
        return out

    def _segment_matches(
        self, q_segs: np.ndarray, starts: np.ndarray, duration: float, keep: Any
    ) -> list[SegmentMatch]:
        if len(q_segs) == 0 or len(self.index.seg_vectors) == 0:
            return []
        want = SEGMENT_CSV_MATCHES + 8
        hits, scores = self.index.segments.query(np.atleast_2d(q_segs), min(want, len(self.index.seg_vectors)))
        hits = np.atleast_2d(hits)
        scores = np.atleast_2d(scores)
        rows_needed = {int(self.index.seg_rows[h]) for h in hits.reshape(-1) if h >= 0}
        tracks = self._tracks(rows_needed)
        out: list[SegmentMatch] = []
        for qi, start in enumerate(starts):
            taken = 0
            for h, s in zip(hits[qi], scores[qi], strict=True):
                if h < 0:
                    continue
                t = tracks.get(int(self.index.seg_rows[h]))
                if t is None or not keep(t):
                    continue
                t_start = float(self.index.seg_starts[h])
                out.append(
                    SegmentMatch(
                        query_start=float(start),
                        query_end=float(min(start + WINDOW_S, duration)),
                        track=t,
                        track_start=t_start,
                        track_end=float(min(t_start + WINDOW_S, t.duration or t_start + WINDOW_S)),
                        similarity=float(_to_similarity(s)),
                    )
                )
                taken += 1
                if taken == SEGMENT_CSV_MATCHES:
                    break
        return out
