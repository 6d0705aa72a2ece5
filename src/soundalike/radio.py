"""Radio: an ordered playlist from one or more seeds, and a path from one track to another.

How the next track is chosen
----------------------------
A radio plays after its seeds. At each step every candidate ``x`` gets the score ::

    score(x) = drift · c(x, previous) + (1 − drift) · mean over seeds s of c(x, s)

where ``c`` is the cosine of :mod:`soundalike.recommend` (the weighted mean of the per-family
cosines, for the chosen aspect or per-aspect weights) and ``previous`` is the track just chosen (for
the first track, the last seed). The best-scoring candidate that breaks no rule is played.

* ``drift = 0`` keeps every track as close as possible to the seeds (the seeds' nearest tracks in
  rank order); ``drift = 1`` follows the previous track only and may wander anywhere; the default
  0.5 moves in small steps while staying in the seeds' neighbourhood.
* Never played: a seed, a file byte-identical to a seed (same content hash) or a copy of one (same
  recording transcoded, see :mod:`soundalike.copies`), a track already played, or a copy of one.
  Copies are recognised by their windows, not by the track vector (a copy with 2 s of silence added
  can have a track cosine as low as 0.56 to its original on the dev clips): the track about to be
  played is aligned with every seed and played track that shares a near-identical window with it.
* ``spread=Spread("artist", 3)``: no two tracks of one artist within 3 consecutive places (likewise
  ``album`` and ``folder``). Tracks without that tag are never held back. When no candidate keeps
  the rule among the nearest :data:`SPREAD_POOL` tracks of the seeds, the best one is played anyway
  and marked ``relaxed``.

Candidates are never all N tracks: they come from the track index (ANN) — the
:data:`SEED_POOL` nearest neighbours of the seeds' centroid, fetched once, and the :data:`STEP_POOL`
nearest of each previous track — and only those are scored exactly. When every candidate is used
up the pools grow, so a radio is as long as the library allows.

A *path* from track A to track B of ``n`` tracks (A and B included) plays, at step ``i``, the unused
track nearest to the point ``i / (n − 1)`` of the way from A to B (on the unit sphere), so the
steps are even.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

from soundalike.catalog import OK, Track
from soundalike.copies import WINDOW_COS, align
from soundalike.errors import RadioError
from soundalike.features import ASPECTS, HOP_S, QUERY_HOP_S
from soundalike.features.normalise import Normaliser
from soundalike.index.bundle import LibraryIndex
from soundalike.playlists import SPREAD_KINDS, Playlist, PlaylistEntry, Seed, Spread
from soundalike.windows import WINDOW_WEIGHT, rescaled_window_similarity, window_scores

log = logging.getLogger(__name__)

DRIFT = 0.5
"""Default balance between the previous track (1) and the seeds (0)."""
SEED_POOL = 200
"""Neighbours of the seeds' centroid fetched once (at least ``4 × n``)."""
STEP_POOL = 48
"""Neighbours of each previous track fetched at each step."""
SPREAD_POOL = 4096
"""How far the seed pool grows to find a track that keeps the spacing rule before relaxing it."""

__all__ = [
    "DRIFT",
    "SPREAD_KINDS",
    "Playlist",
    "PlaylistEntry",
    "RadioError",
    "Seed",
    "Spread",
    "make_path",
    "make_radio",
    "mean_step_distance",
    "path",
    "radio",
    "seed_from_file",
    "seed_from_track",
]


# -- seeds --------------------------------------------------------------------------------------


def seed_from_track(index: LibraryIndex, track: Track) -> Seed:
    """A catalog track as a seed.

    Raises
    ------
    RadioError
        When the track is not in the index (analysed after it was built).
    """
    row = index.row_of(track.id)
    if row is None:
        raise RadioError(f"track {track.id} ({track.display_path}) is not in the index yet; rebuild it (`soundalike index`)")
    return Seed(np.asarray(index.vectors[row], dtype=np.float32), track.display_path, track=track, row=row)


def seed_from_file(
    index: LibraryIndex,
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    max_duration: float = 1800.0,
    name: str | None = None,
    truncate_to: float | None = None,
) -> Seed:
    """An audio file (not necessarily in the library) as a seed: decoded and analysed now.

    Raises
    ------
    AudioError
        When the file cannot be decoded.
    """
    from soundalike.audio import decode
    from soundalike.features import extract_query

    audio = decode(source, max_duration=max_duration, name=name, truncate_to=truncate_to)
    analysis = extract_query(audio.samples, sample_rate=audio.sample_rate)
    step = max(1, round(HOP_S / QUERY_HOP_S))  # windows on the library's hop, to align with its tracks
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "<upload>")
    return Seed(
        index.track_norm.transform(analysis.vector),
        label,
        segments=index.segment_norm.transform(analysis.segments[::step]) if len(analysis.segments) else None,
        segment_starts=analysis.segment_starts[::step],
    )


# -- scoring ------------------------------------------------------------------------------------


def query_weights(norm: Normaliser, aspect: str = "all", weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Per-dimension factors that turn a normalised vector into a query scored by ``aspect`` or ``weights``.

    A normalised vector holds family ``f`` as a unit direction scaled by ``s_f`` (the index's family
    weights). Multiplying the query's block by ``w_f / (W · s_f²)`` makes its dot product with any
    stored vector ``Σ w_f c_f / W``: the weighted mean of the family cosines with the weights asked
    for, on the same index.

    Parameters
    ----------
    norm : Normaliser
        The index's track normaliser.
    aspect : str
        ``"all"`` or one family.
    weights : mapping, optional
        Relative weight per family (only with ``aspect="all"``; missing families weigh 0).

    Returns
    -------
    np.ndarray [shape=(dim,), dtype=float32]

    Raises
    ------
    RadioError
        For an unknown aspect or family, negative weights, or weights only on families the index
        leaves out.
    """
    if aspect not in ASPECTS:
        raise RadioError(f"unknown aspect {aspect!r}; expected one of {', '.join(ASPECTS)}")
    families = norm.layout.families
    if weights:
        unknown = sorted(set(weights) - set(families))
        if unknown:
            raise RadioError(f"weights for unknown aspects {', '.join(unknown)}; expected some of {', '.join(families)}")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()):
            raise RadioError("aspect weights must be finite and not negative")
        wanted = {f: float(weights.get(f, 0.0)) for f in families}
        if aspect != "all":
            wanted = {f: (w if f == aspect else 0.0) for f, w in wanted.items()}
    elif aspect == "all":
        wanted = {f: 1.0 for f in families}
    else:
        wanted = {f: float(f == aspect) for f in families}
    scales = norm.family_scales("all")
    usable = {f: w for f, w in wanted.items() if w > 0 and scales[f] > 0}
    if not usable:
        raise RadioError("the aspect weights leave no family the index holds (give at least one weight above 0)")
    total = sum(usable.values())
    out = np.zeros(norm.layout.dim, dtype=np.float32)
    for f, w in usable.items():
        out[norm.layout.slices[f]] = w / (total * scales[f] ** 2)
    return out


def _similarity(c: float) -> float:
    return float(min(1.0, max(0.0, (1.0 + c) / 2.0)))


def _distance(c: float) -> float:
    return math.sqrt(max(0.0, 2.0 - 2.0 * c))


def mean_step_distance(vectors: np.ndarray) -> float:
    """Mean ``sqrt(2 − 2c)`` between consecutive rows of ``vectors`` [shape=(n, dim)] (0 for n < 2)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    c = np.einsum("ij,ij->i", x[:-1], x[1:])
    return float(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * c)).mean())


class _Picker:
    """What a radio and a path share: the index, track lookups, what is excluded, the spacing rule."""

    def __init__(
        self,
        index: LibraryIndex,
        lookup: Callable[[int], Track | None],
        factors: np.ndarray,
        spread: Spread | None,
    ) -> None:
        self.index = index
        self.lookup = lookup
        self.factors = factors
        self.spread = spread
        self.tracks: dict[int, Track | None] = {}
        self.excluded: set[int] = set()  # rows: seeds, played tracks and their copies
        self.hashes: set[str] = set()  # content hashes of seeds and played tracks
        self.recent: list[str | None] = []  # spread keys of the tracks played, latest last
        self.heard: list[tuple[np.ndarray, np.ndarray]] = []  # windows of the seeds and the tracks played
        self._heard_matrix: np.ndarray | None = None
        self._heard_owner = np.zeros(0, dtype=np.int64)

    def track(self, row: int) -> Track | None:
        if row not in self.tracks:
            t = self.lookup(int(self.index.ids[row]))
            self.tracks[row] = t if t is not None and t.status == OK else None
        return self.tracks[row]

    def neighbours(self, query: np.ndarray, k: int) -> np.ndarray:
        k = min(k, self.index.count)
        found, _ = self.index.tracks.query(np.asarray(query, dtype=np.float32), k)
        found = np.asarray(found).reshape(-1)
        return found[found >= 0].astype(np.int64)

    def add_seed(self, seed: Seed) -> None:
        """Never play ``seed``, a file with its content, or another copy of its recording."""
        if seed.track is not None:
            self.hashes.add(seed.track.content_hash)
        if seed.row is not None:
            self.excluded.add(seed.row)
            self.hear(*self.index.segments_of(seed.row))
        else:
            self.hear(seed.segments, seed.segment_starts)

    def hear(self, segments: np.ndarray | None, starts: np.ndarray | None) -> None:
        """Remember the windows of a seed or a played track, so that copies of it are never played."""
        if segments is None or starts is None or len(segments) == 0:
            return
        self.heard.append((np.asarray(segments, dtype=np.float32), np.asarray(starts)))
        self._heard_matrix = None

    def is_copy(self, row: int) -> bool:
        """Whether the track at ``row`` is the same recording as a seed or a played track (:mod:`soundalike.copies`)."""
        if not self.heard:
            return False
        segs, starts = self.index.segments_of(row)
        if len(segs) == 0:
            return False
        if self._heard_matrix is None:
            self._heard_matrix = np.concatenate([h for h, _ in self.heard])
            self._heard_owner = np.repeat(np.arange(len(self.heard)), [len(h) for h, _ in self.heard])
        segs = np.asarray(segs, dtype=np.float32)
        hits = (segs @ self._heard_matrix.T) >= WINDOW_COS
        # only what shares a near-identical window is aligned, so this stays cheap for long playlists
        for owner in np.unique(self._heard_owner[hits.any(axis=0)]):
            h, h_starts = self.heard[int(owner)]
            if align(h, h_starts, segs, starts, threshold=WINDOW_COS).same_recording():
                return True
        return False

    def exclude(self, row: int) -> None:
        """Never play the track at ``row``, a file with its content, or another copy of its recording."""
        self.excluded.add(row)
        t = self.track(row)
        if t is not None:
            self.hashes.add(t.content_hash)
        self.hear(*self.index.segments_of(row))

    def play(self, row: int) -> None:
        t = self.track(row)
        assert t is not None
        self.excluded.add(row)
        self.hashes.add(t.content_hash)
        self.recent.append(self.spread.key(t) if self.spread else None)
        self.hear(*self.index.segments_of(row))

    def allowed(self, row: int) -> Track | None:
        """The track at ``row`` if it may be played at all (spacing aside)."""
        if row in self.excluded:
            return None
        t = self.track(row)
        if t is None or t.content_hash in self.hashes or self.is_copy(row):
            self.excluded.add(row)
            return None
        return t

    def spaced(self, t: Track) -> bool:
        if self.spread is None:
            return True
        key = self.spread.key(t)
        return key is None or key not in self.recent[-self.spread.within :]

    def choose(self, rows: np.ndarray, score: np.ndarray) -> tuple[int, bool] | None:
        """The best row that may be played and keeps the spacing rule; else the best that may be played."""
        fallback: int | None = None
        for i in np.argsort(-score, kind="stable"):
            row = int(rows[i])
            t = self.allowed(row)
            if t is None:
                continue
            if self.spaced(t):
                return int(i), False
            if fallback is None:
                fallback = int(i)
        return None if fallback is None else (fallback, True)


# -- radio --------------------------------------------------------------------------------------


class _SeedWindows:
    """Window-set similarity of library rows to the seeds (mean over seeds), computed once per row."""

    def __init__(self, index: LibraryIndex, seeds: Sequence[Seed]) -> None:
        self.index = index
        self.seeds = []
        for s in seeds:
            segs = index.segments_of(s.row)[0] if s.row is not None else s.segments
            if segs is not None and len(segs):
                self.seeds.append(np.asarray(segs, dtype=np.float32))
        self._known: dict[int, float] = {}

    def similarity(self, rows: np.ndarray) -> np.ndarray:
        """Rescaled window-set similarity per row (NaN when a side has no windows)."""
        if not self.seeds:
            return np.full(len(rows), np.nan)
        new = [int(r) for r in rows if int(r) not in self._known]
        if new:
            offsets = self.index.seg_offsets
            lengths = np.array([offsets[r + 1] - offsets[r] for r in new], dtype=np.int64)
            take = np.concatenate([np.arange(offsets[r], offsets[r + 1]) for r in new])
            segs = np.asarray(self.index.seg_vectors[take], dtype=np.float32)
            per_seed = [rescaled_window_similarity(window_scores(q, segs, lengths).symmetric) for q in self.seeds]
            for r, value in zip(new, np.mean(per_seed, axis=0), strict=True):
                self._known[r] = float(value)
        return np.array([self._known[int(r)] for r in rows])


def radio(
    index: LibraryIndex,
    lookup: Callable[[int], Track | None],
    seeds: Sequence[Seed],
    *,
    n: int = 50,
    drift: float = DRIFT,
    aspect: str = "all",
    weights: Mapping[str, float] | None = None,
    spread: Spread | None = None,
    exclude: Collection[int] = (),
) -> Playlist:
    """An ordered playlist of up to ``n`` tracks after ``seeds`` (see the module docstring).

    Parameters
    ----------
    index : LibraryIndex
    lookup : callable
        Catalog track by id (``catalog.get``).
    seeds : sequence of Seed
        At least one.
    n : int
        Tracks wanted; fewer when the library runs out.
    drift : float in [0, 1]
        Weight of closeness to the previous track against closeness to the seeds.
    aspect : str
        ``"all"`` or one family.
    weights : mapping, optional
        Per-aspect weights (see :func:`query_weights`).
    spread : Spread, optional
    exclude : collection of int, optional
        Track ids never to play, nor copies of them (what a listener has heard already); ids not in
        the index are ignored.

    Returns
    -------
    Playlist

    Raises
    ------
    RadioError
        For no seeds, ``n < 1`` or a drift outside [0, 1].
    """
    if not seeds:
        raise RadioError("a radio needs at least one seed")
    if not isinstance(n, int) or n < 1:
        raise RadioError(f"n must be a positive whole number, got {n!r}")
    if not (0.0 <= drift <= 1.0):
        raise RadioError(f"drift must be between 0 and 1, got {drift!r}")
    factors = query_weights(index.track_norm, aspect, weights)
    picker = _Picker(index, lookup, factors, spread)
    for s in seeds:
        picker.add_seed(s)
    for track_id in sorted(set(exclude)):
        row = index.row_of(track_id)
        if row is not None:
            picker.exclude(row)

    seed_q = np.stack([s.vector * factors for s in seeds]).astype(np.float32)
    centroid = seed_q.mean(axis=0)  # x · centroid = mean over seeds of the weighted cosine
    windows = _SeedWindows(index, seeds) if aspect == "all" and not weights else None
    pool_k = max(SEED_POOL, 4 * n)
    seed_pool = picker.neighbours(centroid, pool_k)
    step_k = STEP_POOL
    prev_vec = np.asarray(seeds[-1].vector, dtype=np.float32)
    entries: list[PlaylistEntry] = []
    while len(entries) < n:
        prev_q = prev_vec * factors
        rows = np.unique(np.concatenate([seed_pool, picker.neighbours(prev_q, step_k)]))
        x = np.asarray(index.vectors[rows], dtype=np.float32)
        to_prev = x @ prev_q
        to_seeds = x @ centroid
        if windows is not None:  # as `similar` scores: the windows blended in (recommend.WINDOW_WEIGHT)
            w = windows.similarity(rows)
            to_seeds = np.where(np.isnan(w), to_seeds, (1 - WINDOW_WEIGHT) * to_seeds + WINDOW_WEIGHT * w)
        score = drift * to_prev + (1.0 - drift) * to_seeds
        picked = picker.choose(rows, score)
        if picked is None or (picked[1] and pool_k < min(index.count, SPREAD_POOL)):
            if pool_k >= index.count and step_k >= index.count:
                break  # every track is played or excluded
            pool_k, step_k = min(index.count, 2 * pool_k), min(index.count, 2 * step_k)
            seed_pool = picker.neighbours(centroid, pool_k)
            continue
        i, relaxed = picked
        row = int(rows[i])
        track = picker.track(row)
        assert track is not None
        c_all = float(x[i] @ prev_vec)
        entries.append(
            PlaylistEntry(
                position=len(entries) + 1,
                track=track,
                to_previous=_similarity(float(to_prev[i])),
                to_seeds=_similarity(float(to_seeds[i])),
                distance=_distance(c_all),
                relaxed=relaxed,
            )
        )
        picker.play(row)
        prev_vec = x[i]
    options = {
        "n": n,
        "drift": drift,
        "aspect": aspect,
        "weights": dict(weights) if weights else None,
        "spread": None if spread is None else {"kind": spread.kind, "within": spread.within},
    }
    return Playlist("radio", list(seeds), entries, options)


# -- path ---------------------------------------------------------------------------------------


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The point ``t`` of the way from unit vector ``a`` to ``b`` along the great circle."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return ((1 - t) * a64 + t * b64).astype(np.float32)
    a64, b64 = a64 / na, b64 / nb
    omega = math.acos(float(np.clip(a64 @ b64, -1.0, 1.0)))
    if omega < 1e-6:
        return a64.astype(np.float32)
    out = (math.sin((1 - t) * omega) * a64 + math.sin(t * omega) * b64) / math.sin(omega)
    return out.astype(np.float32)


def path(
    index: LibraryIndex,
    lookup: Callable[[int], Track | None],
    start: Seed,
    end: Seed,
    *,
    n: int = 10,
    aspect: str = "all",
    weights: Mapping[str, float] | None = None,
    spread: Spread | None = None,
) -> Playlist:
    """``n`` tracks from ``start`` to ``end`` (both catalog tracks, both included) in even steps.

    Raises
    ------
    RadioError
        When ``n < 2``, an end is not a catalog track, or both ends are the same track.
    """
    if not isinstance(n, int) or n < 2:
        raise RadioError(f"a path has at least its two ends: n must be 2 or more, got {n!r}")
    if start.track is None or end.track is None or start.row is None or end.row is None:
        raise RadioError("both ends of a path must be catalog tracks")
    if start.track.id == end.track.id:
        raise RadioError(f"a path needs two different tracks, got track {start.track.id} twice")
    factors = query_weights(index.track_norm, aspect, weights)
    picker = _Picker(index, lookup, factors, spread)
    # the ends are played first and last; nothing in between may be either of them or a copy
    for s in (start, end):
        picker.add_seed(s)
    picker.recent.append(spread.key(start.track) if spread else None)
    a, b = start.vector * factors, end.vector * factors
    chosen: list[tuple[Track, np.ndarray, float, bool]] = [(start.track, np.asarray(start.vector), 1.0, False)]
    for i in range(1, n - 1):
        target = _slerp(a, b, i / (n - 1))
        norm = max(float(np.linalg.norm(target)), 1e-12)
        k = STEP_POOL
        while True:
            rows = picker.neighbours(target, k)
            x = np.asarray(index.vectors[rows], dtype=np.float32)
            score = (x @ target) / norm
            picked = picker.choose(rows, score)
            if (picked is not None and not picked[1]) or k >= index.count:
                break
            k = min(index.count, 4 * k)
        if picked is None:
            break  # the library has no more tracks to put in between
        j, relaxed = picked
        row = int(rows[j])
        track = picker.track(row)
        assert track is not None
        chosen.append((track, x[j], float(score[j]), relaxed))
        picker.play(row)
    chosen.append((end.track, np.asarray(end.vector), 1.0, False))
    entries: list[PlaylistEntry] = []
    prev: np.ndarray | None = None
    for pos, (track, vec, to_target, relaxed) in enumerate(chosen, start=1):
        v = np.asarray(vec, dtype=np.float32)
        c_prev = 1.0 if prev is None else float(v @ prev)
        c_weighted = 1.0 if prev is None else float((v * factors) @ prev)
        entries.append(
            PlaylistEntry(
                position=pos,
                track=track,
                to_previous=_similarity(c_weighted),
                to_seeds=_similarity(to_target),
                distance=_distance(c_prev),
                relaxed=relaxed,
            )
        )
        prev = v
    options = {
        "n": n,
        "aspect": aspect,
        "weights": dict(weights) if weights else None,
        "spread": None if spread is None else {"kind": spread.kind, "within": spread.within},
    }
    return Playlist("path", [start, end], entries, options)


# -- one way in for both shells -----------------------------------------------------------------


def _seeds_of(
    index: LibraryIndex,
    resolve: Callable[[str | int], Track],
    refs: Sequence[str | int],
) -> list[Seed]:
    return [seed_from_track(index, resolve(ref)) for ref in refs]


def make_radio(
    index: LibraryIndex,
    catalog: Any,
    *,
    seeds: Sequence[str | int] = (),
    clip: Seed | None = None,
    resolve: Callable[[str | int], Track],
    **options: Any,
) -> Playlist:
    """A radio from catalog references (ids or paths) and/or an analysed clip; what the CLI and the API call.

    ``resolve`` turns a reference into a catalog track (:meth:`soundalike.recommend.Recommender.resolve`);
    ``options`` are those of :func:`radio`.
    """
    all_seeds = _seeds_of(index, resolve, seeds) + ([clip] if clip is not None else [])
    return radio(index, catalog.get, all_seeds, **options)


def make_path(
    index: LibraryIndex,
    catalog: Any,
    start: str | int,
    end: str | int,
    *,
    resolve: Callable[[str | int], Track],
    **options: Any,
) -> Playlist:
    """A path between two catalog references; ``options`` are those of :func:`path`."""
    a, b = _seeds_of(index, resolve, [start, end])
    return path(index, catalog.get, a, b, **options)
