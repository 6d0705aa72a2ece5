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

Every result also says why in words (:mod:`soundalike.why`): tempo and key of both tracks, read
from their stored vectors (:mod:`soundalike.features.descriptors`), and the aspects above.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import IO, Any, BinaryIO

import numpy as np

from soundalike.catalog import OK, Catalog, Track
from soundalike.errors import CatalogError, TrackNotFoundError
from soundalike.features import (
    ASPECTS,
    FEATURE_VERSION,
    HOP_S,
    QUERY_HOP_S,
    WINDOW_S,
    Analysis,
    extract_query,
)
from soundalike.features.descriptors import NONE, Descriptors, describe
from soundalike.index.bundle import LibraryIndex
from soundalike.vocabulary import LEARNED_FAMILIES
from soundalike.why import Why, explain
from soundalike.windows import (
    WINDOW_WEIGHT,
    WindowScores,
    rescaled_window_similarity,
    window_scores,
)

log = logging.getLogger(__name__)

SEGMENT_HITS = 20
"""Segments fetched per query window when gathering candidates."""
TRACK_CANDIDATES = 16
"""A file query re-scores this many times ``k`` tracks from the track index (at least ``k + 20``),
beside the tracks of the segments nearest to its windows. The window-set term moves tracks whose
whole-track cosines are close, so the blended top 10 reaches deep into the cosine ranking; recall@10
of the blended ranking against exact scoring of every track (``make bench``, area clips) was 0.92 /
0.84 at 10k / 100k tracks with 4, 0.96 / 0.93 with 8, 0.96 / 0.97 with 16 and 0.96 / 0.98 with 32,
the search after analysis taking 39 / 46 / 69 / 93 ms (10k, loaded machine); twice the segment hits
gained under 0.01."""

SEARCH_HOP_S = 1.0
"""Hop between the windows of a file query whose nearest segments are searched. The query is
analysed every ``QUERY_HOP_S`` (0.5 s) and all its windows are re-scored exactly against the
candidate tracks; searching every other one halves the cost of the segment search (the largest
part of a clip query at a million tracks) while one searched window still lies within 0.5 s of
every catalog window (catalog windows start every 2.5 s, or every 5 s in the largest libraries)."""
QUERY_WINDOWS = 24
"""Windows of a query track (spread over its length) whose nearest segments add candidates."""
IDENTIFY_MIN = 0.90
"""Best window cosine a clip needs before it is said to come from a track."""
IDENTIFY_MARGIN = 0.05
"""How far that match must lead the best match in any other recording."""
WHOLE_SLACK_S = 1.0
"""A clip identified at most this far into a track, and at most this much shorter than it, is the whole
track (the same recording from start to end, as another file or encoding)."""
ALIGN_CANDIDATES = 16
"""Offsets tried when aligning a clip with a track (the ones most of its windows point at)."""
ALIGN_SLACK = 0.05
"""How much below its best match a query window's match at the clip's offset may be and still agree."""
IDENTIFY_AGREEMENT = 0.6
"""Share of the clip's windows that must line up in the track at one time offset (a clip cut from a
track does; a piece that merely sounds alike does not)."""
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
    windows: float | None = None
    """How alike the two tracks' 5-second windows are, in [0, 1] like an aspect (None where the
    score did not use them: one-aspect queries, least similar)."""
    why: Why | None = None
    """The reasons in plain words (see :mod:`soundalike.why`)."""

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
            "windows": None if self.windows is None else round(self.windows, 6),
            "why": None if self.why is None else self.why.text,
            "why_parts": None if self.why is None else self.why.parts(),
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
class Identification:
    """A clip recognised as a part of one catalog track.

    Attributes
    ----------
    track : Track
    at : float
        Seconds into the track where the clip starts.
    score : float
        Cosine of the best window match (1 = identical windows).
    margin : float
        How far it leads the best window match in any other recording.
    whole : bool
        The clip is the whole track: the very file, or the same recording from start to end.
    same_file : bool
        The clip has the bytes of the track's file (the same content hash); when only that, and no
        window match, named it, ``score`` is 1 and ``margin`` 0.
    """

    track: Track
    at: float
    score: float
    margin: float
    whole: bool = False
    same_file: bool = False

    @property
    def sentence(self) -> str:
        name = self.track.title or os.path.basename(self.track.display_path)
        if self.whole:
            return f"this clip is {name}"
        minutes, seconds = divmod(max(0, round(self.at)), 60)
        return f"this clip is from {name} at {minutes}:{seconds:02d}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track.id,
            "path": self.track.display_path,
            "title": self.track.title,
            "artist": self.track.artist,
            "at_s": round(self.at, 2),
            "score": round(self.score, 6),
            "margin": round(self.margin, 6),
            "whole": self.whole,
            "same_file": self.same_file,
            "says": self.sentence,
        }


@dataclass(frozen=True)
class Recommendations:
    """The answer to one query."""

    query: dict[str, Any]
    results: list[Recommendation]
    least_similar: list[Recommendation]
    segment_matches: list[SegmentMatch] = field(default_factory=list)
    identified: Identification | None = None
    """For a file query: the track the clip was cut from, when that is unambiguous (it is then
    ``results[0]``; the other results are recommendations)."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "query": self.query,
            "results": [r.to_dict() for r in self.results],
            "least_similar": [r.to_dict() for r in self.least_similar],
        }
        if self.identified is not None:
            out["identified"] = self.identified.to_dict()
        return out


def write_segment_csv(matches: Iterable[SegmentMatch], out: IO[str]) -> int:
    """Write segment matches as CSV with :data:`SEGMENT_CSV_FIELDS`; returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=SEGMENT_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for m in matches:
        writer.writerow(m.to_row())
        n += 1
    return n


def search_windows(count: int, step: int) -> np.ndarray:
    """Positions of a file query's windows whose nearest segments are searched: one every
    :data:`SEARCH_HOP_S`, and every ``step``-th (those on the library's hop, for segment matches).

    Returns
    -------
    np.ndarray [shape=(searched,), dtype=int64], sorted
    """
    every = max(1, round(SEARCH_HOP_S / QUERY_HOP_S))
    return np.union1d(np.arange(0, count, every), np.arange(0, count, max(1, step))).astype(np.int64)


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

        own_row = self.index.row_of(track.id)
        own_segs = np.asarray(self.index.segments_of(own_row)[0]) if own_row is not None else np.zeros((0, 0), np.float32)
        use_windows = aspect == "all" and len(own_segs) > 0
        rows = self._search_rows(q, max(4 * k, k + 40) if use_windows else k + 8, keep)
        window: dict[int, float] | None = None
        if use_windows:
            spread = own_segs[np.unique(np.linspace(0, len(own_segs) - 1, QUERY_WINDOWS).round().astype(int))]
            rows = self._with_segment_candidates(rows, spread)
            scores = self._window_scores(own_segs, rows)
            window = dict(zip(rows, rescaled_window_similarity(scores.symmetric).tolist(), strict=True))
        results = self._rank(rows, q_all, aspect, k, keep, window=window)
        least = self._least(q, q_all, aspect, k, keep)
        results, least = self._explained(describe(raw), results, least)
        matches: list[SegmentMatch] = []
        if segments and own_row is not None:
            seg_vecs, starts = self.index.segments_of(own_row)
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
        analysis = extract_query(audio.samples, sample_rate=audio.sample_rate, style=self.style)
        label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "<upload>")
        out = self.similar_to_analysis(analysis, k=k, aspect=aspect, segments=segments, label=label, source=source)
        out.query["format"] = audio.source_format
        if audio.truncated_to is not None:
            out.query["truncated_to_s"] = audio.truncated_to
        return out

    @property
    def style(self) -> bool:
        """Whether the index weighs the learned family (a query is then analysed with it)."""
        return any(self.index.track_norm.weights.get(f, 0.0) > 0 for f in LEARNED_FAMILIES)

    def similar_to_analysis(
        self,
        analysis: Analysis,
        *,
        k: int = 10,
        aspect: str = "all",
        segments: bool = False,
        label: str = "<analysis>",
        source: Any = None,
    ) -> Recommendations:
        """Tracks that sound like an analysed signal: what :meth:`similar_to_file` does once it has
        decoded and analysed the file (track search, segment search, window-set re-scoring,
        identification, ranking).

        Parameters
        ----------
        analysis : Analysis
            As :func:`soundalike.features.extract_query` returns it (segments every ``QUERY_HOP_S``).
        label : str
            What the answer's ``query["path"]`` says.
        source : bytes or path, optional
            The file's bytes or path, when there is one: a file whose bytes are a catalog track's is
            identified as that track (see :meth:`_same_file`).
        """
        _check(k, aspect)
        norm = self.index.track_norm
        q_all = norm.transform(analysis.vector)
        q = q_all if aspect == "all" else norm.transform(analysis.vector, aspect)
        q_segs = self.index.segment_norm.transform(analysis.segments)

        def keep(t: Track) -> bool:
            return True

        rows = self._search_rows(q, max(TRACK_CANDIDATES * k, k + 20), keep)
        window: dict[int, float] | None = None
        identified: Identification | None = None
        found: tuple[np.ndarray, np.ndarray] | None = None
        step = max(1, round(HOP_S / QUERY_HOP_S))  # query windows on the library's hop
        searched = search_windows(len(q_segs), step)
        if len(q_segs) and len(self.index.seg_vectors):
            rows, found = self._segment_candidates(rows, q_segs[searched])
            scores = self._window_scores(q_segs, rows)
            identified = self._identify(q_segs, analysis.segment_starts, rows, scores)
            if aspect == "all":
                window = dict(zip(rows, rescaled_window_similarity(scores.contain).tolist(), strict=True))
        if (
            identified is not None
            and identified.at <= WHOLE_SLACK_S
            and analysis.duration >= (identified.track.duration or math.inf) - WHOLE_SLACK_S
        ):
            identified = replace(identified, whole=True)
        copy = self._same_file(source, identified)
        if copy is not None:
            identified = copy
            row = self.index.row_of(copy.track.id)
            if row is not None and row not in rows:
                rows.append(row)
        results = self._rank(rows, q_all, aspect, k, keep, window=window, first=identified)
        least = self._least(q, q_all, aspect, k, keep)
        results, least = self._explained(describe(analysis.vector), results, least)
        matches: list[SegmentMatch] = []
        if segments:
            # the windows on the library's hop were among those searched: their hits (SEGMENT_HITS
            # of each, re-scored exactly) hold the matches, so no second search
            on_hop = np.searchsorted(searched, np.arange(0, len(q_segs), step))
            hits = None if found is None else (found[0][on_hop], found[1][on_hop])
            matches = self._segment_matches(
                q_segs[::step], analysis.segment_starts[::step], analysis.duration, keep, found=hits
            )
        query: dict[str, Any] = {
            "type": "file",
            "path": label,
            "duration": round(analysis.duration, 3),
            "format": None,
            "aspect": aspect,
            "k": k,
        }
        return Recommendations(
            query=query, results=results, least_similar=least, segment_matches=matches, identified=identified
        )

    # -- internals ----------------------------------------------------------------------------

    def descriptors(self, track_ids: list[int]) -> dict[int, Descriptors]:
        """Tempo and key of catalog tracks, from their stored vectors (empty where there is none)."""
        ids = list(dict.fromkeys(track_ids))
        if not ids:
            return {}
        try:
            vectors = self.catalog.vectors(ids)
        except CatalogError as exc:  # a track removed meanwhile: its line leaves tempo and key out
            log.warning("no descriptors for the results: %s", exc)
            return {i: NONE for i in ids}
        return {i: describe(v) for i, v in zip(ids, vectors, strict=True)}

    def _explained(
        self, query: Descriptors, *lists: list[Recommendation]
    ) -> tuple[list[Recommendation], ...]:
        """The lists with each recommendation's :class:`~soundalike.why.Why` filled in."""
        known = self.descriptors([r.track.id for recs in lists for r in recs])
        return tuple(
            [dataclasses.replace(r, why=explain(r.aspects, query, known.get(r.track.id, NONE))) for r in recs]
            for recs in lists
        )

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

    def _with_segment_candidates(self, rows: list[int], q_segs: np.ndarray) -> list[int]:
        """``rows`` plus the tracks holding the segments nearest to the query's windows."""
        return self._segment_candidates(rows, q_segs)[0]

    def _segment_candidates(
        self, rows: list[int], q_segs: np.ndarray
    ) -> tuple[list[int], tuple[np.ndarray, np.ndarray] | None]:
        """:meth:`_with_segment_candidates`, and the segment hits found ``(positions, scores)``, each
        [shape=(len(q_segs), SEGMENT_HITS)], best first (None without segments)."""
        if not len(self.index.seg_vectors):
            return rows, None
        hits, scores = self.index.segments.query(np.atleast_2d(q_segs), min(SEGMENT_HITS, len(self.index.seg_vectors)))
        hits, scores = np.atleast_2d(hits), np.atleast_2d(scores)
        flat = hits.reshape(-1)
        seg_rows = np.unique(self.index.seg_rows[flat[flat >= 0]])
        return list(dict.fromkeys([*rows, *(int(r) for r in seg_rows)])), (hits, scores)

    def _window_scores(self, q_segs: np.ndarray, rows: list[int]) -> WindowScores:
        """:func:`window_scores` of the query's windows against each candidate row's windows."""
        offsets = self.index.seg_offsets
        lo = np.asarray([offsets[r] for r in rows], dtype=np.int64)
        hi = np.asarray([offsets[r + 1] for r in rows], dtype=np.int64)
        take = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)]) if rows else np.zeros(0, np.int64)
        windows = np.asarray(self.index.seg_vectors[take]) if len(take) else np.zeros((0, q_segs.shape[1]), np.float32)
        return window_scores(q_segs, windows, hi - lo)

    def _identify(
        self, q_segs: np.ndarray, q_starts: np.ndarray, rows: list[int], scores: WindowScores
    ) -> Identification | None:
        """The track a clip was cut from, when its best window match is unambiguous."""
        if not rows:
            return None
        order = np.argsort(-scores.best, kind="stable")
        top = rows[int(order[0])]
        tracks = self._tracks([top])
        track = tracks.get(top)
        if track is None or scores.best[order[0]] < IDENTIFY_MIN:
            return None
        rival = -1.0
        for i in order[1:]:  # the best other recording: byte copies of the top track do not count
            other = self.catalog.get(int(self.index.ids[rows[int(i)]]))
            if other is None or other.content_hash != track.content_hash:
                rival = float(scores.best[i])
                break
        margin = float(scores.best[order[0]]) - rival
        if margin < IDENTIFY_MARGIN:
            return None
        agree, at = self.alignment(q_segs, q_starts, top)
        if agree < IDENTIFY_AGREEMENT:
            return None
        return Identification(track=track, at=at, score=float(scores.best[order[0]]), margin=margin)

    def _same_file(self, source: Any, identified: Identification | None) -> Identification | None:
        """The catalog track whose file has exactly the bytes of ``source`` (given as bytes or a path),
        as a whole-track identification; None when there is none in the index.

        Windows alone cannot name an upload that is itself in the library when the library also holds
        another copy of that recording (a transcode matches every window as well), so the content hash
        decides.
        """
        from soundalike.ingest import content_hash

        if not isinstance(source, bytes | bytearray | memoryview | str | os.PathLike):
            return None
        try:
            digest = content_hash(bytes(source) if isinstance(source, bytearray | memoryview) else source)
        except OSError:
            return None
        if identified is not None and identified.track.content_hash == digest:
            return replace(identified, whole=True, same_file=True)
        found = self.catalog.find_analysis(digest, FEATURE_VERSION)
        track = self.catalog.get_by_path(found.path) if found is not None else None
        if track is None or self.index.row_of(track.id) is None:
            return None
        return Identification(track=track, at=0.0, score=1.0, margin=0.0, whole=True, same_file=True)

    def alignment(self, q_segs: np.ndarray, q_starts: np.ndarray, row: int) -> tuple[float, float]:
        """How consistently the query's windows line up in track ``row``, and where.

        For each offset that some query window's best match suggests, the share of the query's
        windows whose match at that offset (the track window nearest to where it would fall) is within
        :data:`ALIGN_SLACK` of its best match anywhere in the track. A clip cut from the track agrees
        almost everywhere at its true offset; a piece that merely sounds alike does not.

        Returns
        -------
        agreement : float
            That share at the best offset.
        at : float
            The best offset in seconds: where the query starts in the track.
        """
        vecs, starts = self.index.segments_of(row)
        if len(vecs) == 0 or len(q_segs) == 0:
            return 0.0, 0.0
        g = np.asarray(q_segs) @ np.asarray(vecs).T  # (query windows, track windows)
        t = np.asarray(starts, dtype=np.float64)
        q = np.asarray(q_starts, dtype=np.float64)
        best = g.max(axis=1)
        # candidate offsets: where each query window's best match puts the clip (on a 0.5-s grid)
        suggested, votes = np.unique(np.round((t[g.argmax(axis=1)] - q) * 2) / 2, return_counts=True)
        candidates = suggested[np.argsort(-votes, kind="stable")[:ALIGN_CANDIDATES]]
        # for each candidate, the track window nearest to where each query window would fall
        x = q[None, :] + candidates[:, None]  # (candidates, query windows)
        right = np.clip(np.searchsorted(t, x), 0, len(t) - 1)
        left = np.clip(right - 1, 0, len(t) - 1)
        aligned = np.where(np.abs(t[left] - x) <= np.abs(t[right] - x), left, right)
        on_time = g[np.arange(len(q))[None, :], aligned]
        # a window agrees when its match at that offset is (nearly) its best anywhere: loops and
        # repeats in the track then count for every place they recur
        agreement = (on_time >= best[None, :] - ALIGN_SLACK).mean(axis=1)
        pick = int(np.argmax(agreement))
        return float(agreement[pick]), max(0.0, float(candidates[pick]))

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
        window: dict[int, float] | None,
        first: Identification | None = None,
    ) -> list[Recommendation]:
        if not rows:
            return []
        score, cos = self._score(rows, q_all, aspect)
        if window is not None:
            w = np.array([window.get(r, np.nan) for r in rows])
            score = np.where(np.isnan(w), score, (1 - WINDOW_WEIGHT) * score + WINDOW_WEIGHT * w)
        order = np.argsort(-score, kind="stable")
        if first is not None:  # the identified source leads; the rest stay ranked by similarity
            lead = [i for i in order if rows[i] == self.index.row_of(first.track.id)]
            order = np.array(lead + [i for i in order if rows[i] != self.index.row_of(first.track.id)])
        return self._build(rows, order, score, cos, k, keep, window=window)

    def _least(self, q: np.ndarray, q_all: np.ndarray, aspect: str, k: int, keep: Any) -> list[Recommendation]:
        rows = self._search_rows(-q, k + 8, keep)
        if not rows:
            return []
        score, cos = self._score(rows, q_all, aspect)
        order = np.argsort(score, kind="stable")
        return self._build(rows, order, score, cos, k, keep)

    def _build(
        self,
        rows: list[int],
        order: np.ndarray,
        score: np.ndarray,
        cos: dict[str, np.ndarray],
        k: int,
        keep: Any,
        *,
        window: dict[int, float] | None = None,
    ) -> list[Recommendation]:
        tracks = self._tracks(rows[i] for i in order[: k + 16])
        out: list[Recommendation] = []
        for i in order:
            t = tracks.get(rows[i])
            if t is None or not keep(t):
                continue
            c = float(score[i])
            w = (window or {}).get(rows[i], math.nan)
            out.append(
                Recommendation(
                    rank=len(out) + 1,
                    track=t,
                    similarity=float(_to_similarity(c)),
                    distance=math.sqrt(max(0.0, 2.0 - 2.0 * c)),
                    aspects={f: float(_to_similarity(v[i])) for f, v in cos.items()},
                    windows=None if math.isnan(w) else float(_to_similarity(w)),
                )
            )
            if len(out) == k:
                break
        return out

    def _segment_matches(
        self,
        q_segs: np.ndarray,
        starts: np.ndarray,
        duration: float,
        keep: Any,
        *,
        found: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[SegmentMatch]:
        """The best matches of each query window; ``found`` holds hits already searched for them."""
        if len(q_segs) == 0 or len(self.index.seg_vectors) == 0:
            return []
        if found is None:
            want = SEGMENT_CSV_MATCHES + 8
            found = self.index.segments.query(np.atleast_2d(q_segs), min(want, len(self.index.seg_vectors)))
        hits = np.atleast_2d(found[0])
        scores = np.atleast_2d(found[1])
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
