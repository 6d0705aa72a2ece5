"""Clips on large libraries (issue 13): a 10-s clip's query time, and the recall of the window-set path.

``python -m benchmarks --only clips [--quick]``. The libraries are those of :mod:`benchmarks.scale`:
a :class:`~benchmarks.scale.SyntheticCatalog` generating raw track vectors and 71 windows per
3-minute track from the latent models fitted on the real dev-music features (the learned style
family included), indexed by :func:`soundalike.index.bundle.build` unchanged, in a fresh process.

* **Clip query time**: real 10-s MP3 clips (cut from dev-music, 44.1 kHz stereo, 128 kbit/s, in
  turn) through :meth:`Recommender.similar_to_file` with ``k = 10``, the whole file path: decode,
  analysis with the learned aspect, track search, segment search, window-set re-scoring,
  identification, ranking. Beside it, in the same process and interleaved with it, the floor: the
  same clip's decode and analysis alone (what no index can save).
* **Recall@10 of the final blended ``all`` ranking** against exact scoring of every track: the
  ranking :meth:`Recommender.similar_to_analysis` returns (candidates from the track index and the
  segment index, re-scored exactly) against ``(1 - WINDOW_WEIGHT) · cosine + WINDOW_WEIGHT ·
  rescaled window-set similarity`` computed for all tracks by brute force over the index's stored
  rows (so only the candidate gathering can miss). Queries are analyses, not audio: half held-out
  tracks of the same model (their vector, and 11 windows every 0.5 s interpolated between three
  consecutive windows every 2.5 s, as a 10-s clip's windows overlap), half clips of library tracks
  (the track's vector jittered by 25 % of each dimension's spread, three consecutive windows of it
  interpolated likewise and jittered by 5 %). Candidate counts other than the default are measured
  beside it with their query time (the part after analysis).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Section, Target, devmusic_clips, fmt_bytes, fmt_n, fmt_s, run_job

K = 10
CLIP_SECONDS = 10.0
QUERY_WINDOWS = 11
"""Windows of a 10-s clip: 5-s windows every 0.5 s."""
P50_BAR = 0.150
RECALL_BAR = 0.95


@dataclass(frozen=True)
class ClipsConfig:
    sizes: tuple[int, ...] = (10_000, 100_000)
    timed: int = 40
    """File queries timed per size (after one warm-up)."""
    queries: int = 200
    """Recall queries per size: half held-out tracks, half clips of library tracks."""
    candidates: tuple[tuple[int, int], ...] = ((16, 20), (4, 20), (8, 20), (32, 20), (16, 40))
    """(``TRACK_CANDIDATES``, ``SEGMENT_HITS``) settings whose recall and time are measured; the default first."""
    clips: int | None = None
    """Real dev-music clips the latent models are fitted on (None: all)."""


FULL = ClipsConfig()
QUICK = ClipsConfig(sizes=(10_000,), timed=15, queries=100, candidates=((16, 20), (4, 20)))


# -- inputs ----------------------------------------------------------------------------------------


def clip_files(cache: Path, n: int = 8) -> list[Path]:
    """Real 10-s MP3 clips (seconds 10-20 of dev-music clips), or synthesised ones without dev-music."""
    from benchmarks.analysis import MP3_RATE, _decode_stereo, _synthetic_stereo, _write_mp3

    folder = cache / "clips-10s"
    folder.mkdir(parents=True, exist_ok=True)
    sources = devmusic_clips()
    out = []
    for i in range(n):
        path = folder / f"{'devmusic' if sources else 'synth'}-{i:02d}.mp3"
        if not path.is_file():
            if sources:
                stereo = _decode_stereo(sources[(i * 11) % len(sources)])[int(10 * MP3_RATE) : int(20 * MP3_RATE)]
            else:
                stereo = _synthetic_stereo(CLIP_SECONDS, i)
            _write_mp3(path, stereo)
        out.append(path)
    return out


def library(cache: Path, n: int, clips: int | None) -> tuple[Path, dict[str, Any]]:
    """The published index of an ``n``-track synthetic library (built once, reused while the key holds)."""
    from benchmarks.scale import build_job
    from soundalike.features import FEATURE_VERSION, segment_layout, track_layout

    folder = cache / f"clips-library-{n}"
    marker = folder / "benchmark.json"
    key = {"n": n, "clips": clips, "feature_version": FEATURE_VERSION, "dim": track_layout().dim,
           "segment_dim": segment_layout().dim}  # fmt: skip
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    if saved.get("key") == key:
        return folder, {**saved["built"], "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    print(f"[clips] {n}: building the index", file=sys.stderr, flush=True)
    built = run_job(build_job, {"n": n, "folder": str(folder / "lib"), "cache": str(cache), "clips": clips})
    built = {k: built[k] for k in ("seconds", "peak", "disk", "segments", "segment_backend", "storage", "params", "segment_params")}
    marker.write_text(json.dumps({"key": key, "built": built}))
    return folder, {**built, "reused": False}


def _recommender(job: dict[str, Any]) -> Any:
    from benchmarks.scale import SyntheticCatalog, models
    from soundalike.index import bundle
    from soundalike.recommend import Recommender

    mods = models(Path(job["cache"]), job.get("clips"))
    index = bundle.load(Path(job["folder"]) / "lib")
    return Recommender(SyntheticCatalog(mods, job["n"]), index), mods  # type: ignore[arg-type]


# -- clip query time (fresh process) -----------------------------------------------------------------


def query_job(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``similar_to_file`` on real 10-s clips and, interleaved, their decode + analysis alone."""
    from soundalike.audio import decode
    from soundalike.features import extract_query

    rec, _ = _recommender(job)
    uploads = [(Path(p).name, Path(p).read_bytes()) for p in job["files"]]
    first = time.perf_counter()
    rec.similar_to_file(uploads[0][1], k=K, name=uploads[0][0])  # loads the model, touches the index
    first_s = time.perf_counter() - first
    total, floor, identified = [], [], 0
    for i in range(job["timed"]):
        name, data = uploads[i % len(uploads)]
        t0 = time.perf_counter()
        audio = decode(data, name=name)
        extract_query(audio.samples, sample_rate=audio.sample_rate, style=rec.style)
        t1 = time.perf_counter()
        answer = rec.similar_to_file(data, k=K, name=name)
        t2 = time.perf_counter()
        floor.append(t1 - t0)
        total.append(t2 - t1)
        identified += answer.identified is not None
        assert len(answer.results) == K, f"{len(answer.results)} results instead of {K}"
    return {"first": first_s, "total": total, "floor": floor, "style": rec.style, "identified": identified}


# -- recall of the blended ranking (fresh process) ------------------------------------------------


def _interpolated(three: np.ndarray) -> np.ndarray:
    """11 windows every 0.5 s from 3 consecutive windows every 2.5 s (shape (3, d) → (11, d))."""
    t = np.arange(QUERY_WINDOWS) * 0.5 / 2.5  # positions in units of the 2.5-s grid: 0 … 2
    lo = np.minimum(t.astype(int), 1)
    frac = (t - lo)[:, None]
    return ((1 - frac) * three[lo] + frac * three[lo + 1]).astype(np.float32)


def recall_queries(catalog: Any, mods: Any, n_queries: int) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """Raw track vectors and raw windows of the held-out and clip queries (see the module docstring)."""
    from benchmarks.common import synthetic_raw
    from benchmarks.scale import SEGMENTS_PER_TRACK, track_segments

    rng = np.random.default_rng(13)
    half = n_queries // 2
    vectors = [synthetic_raw(mods[0], half, seed=77_001)]
    held = track_segments(mods[1], half, SEGMENTS_PER_TRACK, seed=77_002).reshape(half, SEGMENTS_PER_TRACK, -1)
    windows, kinds = [], ["held-out"] * half
    for i in range(half):
        at = int(rng.integers(0, SEGMENTS_PER_TRACK - 2))
        windows.append(_interpolated(held[i, at : at + 3]))
    picks = np.sort(rng.choice(catalog.n, n_queries - half, replace=False)) + 1  # track ids
    wanted = set(picks.tolist())
    raw_tracks: dict[int, np.ndarray] = {}
    spread = None
    for ids, raw in catalog.iter_vectors(1):
        spread = raw.std(axis=0) if spread is None else spread
        for i, v in zip(ids.tolist(), raw, strict=True):
            if i in wanted:
                raw_tracks[i] = v
    raw_windows: dict[int, np.ndarray] = {}
    for batch in catalog.iter_segments(1):
        for s in batch:
            if s.track_id in wanted:
                raw_windows[s.track_id] = s.vectors
    seg_spread = np.concatenate(list(raw_windows.values())).std(axis=0)
    clip_vectors = []
    for i in picks.tolist():
        assert spread is not None
        clip_vectors.append(raw_tracks[i] + 0.25 * spread * rng.standard_normal(len(spread)).astype(np.float32))
        at = int(rng.integers(0, len(raw_windows[i]) - 2))
        three = raw_windows[i][at : at + 3]
        w = _interpolated(three)
        windows.append(w + 0.05 * seg_spread * rng.standard_normal(w.shape).astype(np.float32))
        kinds.append("clip")
    return np.concatenate([vectors[0], np.stack(clip_vectors)]).astype(np.float32), windows, kinds


def exact_blended(index: Any, q_all: np.ndarray, q_segs: list[np.ndarray], k: int, *, tracks_per_block: int = 256) -> np.ndarray:
    """Rows of the ``k`` best tracks of each query by the blended ``all`` score, every track scored.

    ``(1 - WINDOW_WEIGHT) · q · x + WINDOW_WEIGHT · rescaled(contain)``, where ``contain`` is the mean
    over the query's windows of each one's best cosine among the track's stored windows, exactly as
    :meth:`Recommender.similar_to_analysis` scores its candidates; a track without windows keeps its
    cosine. Brute force, in blocks of tracks, every query at once.
    """
    from soundalike.index.storage import read_rows
    from soundalike.windows import WINDOW_WEIGHT, rescaled_window_similarity

    n = index.count
    nq = len(q_all)
    lengths = np.array([len(w) for w in q_segs])
    q_stack = np.concatenate(q_segs).astype(np.float32)
    owner_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    offsets = np.asarray(index.seg_offsets, dtype=np.int64)
    best_rows = np.zeros((nq, 0), np.int64)
    best_scores = np.zeros((nq, 0), np.float64)
    for lo in range(0, n, tracks_per_block):
        hi = min(n, lo + tracks_per_block)
        cos = (q_all @ read_rows(index.vectors, lo, hi).T).astype(np.float64)  # (nq, block)
        s_lo, s_hi = int(offsets[lo]), int(offsets[hi])
        score = cos
        if s_hi > s_lo:
            g = q_stack @ read_rows(index.seg_vectors, s_lo, s_hi).T  # (query windows, block windows)
            counts = np.diff(offsets[lo : hi + 1])
            has = counts > 0
            per_track = np.full((len(q_stack), hi - lo), -1.0, dtype=np.float32)
            per_track[:, has] = np.maximum.reduceat(g, (offsets[lo:hi] - s_lo)[has], axis=1)
            contain = np.add.reduceat(per_track, owner_starts, axis=0) / lengths[:, None]
            w = rescaled_window_similarity(np.where(has[None, :], contain, -1.0))
            score = np.where(np.isnan(w), cos, (1 - WINDOW_WEIGHT) * cos + WINDOW_WEIGHT * w)
        rows = np.broadcast_to(np.arange(lo, hi), score.shape)
        all_rows = np.concatenate([best_rows, rows], axis=1)
        all_scores = np.concatenate([best_scores, score], axis=1)
        keep = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_rows = np.take_along_axis(all_rows, keep, axis=1)
        best_scores = np.take_along_axis(all_scores, keep, axis=1)
    return best_rows


def recall_job(job: dict[str, Any]) -> dict[str, Any]:
    """Recall@10 of ``similar_to_analysis`` (each candidate setting) against :func:`exact_blended`."""
    from soundalike import recommend
    from soundalike.features import QUERY_HOP_S, Analysis

    rec, mods = _recommender(job)
    index = rec.index
    raw_vectors, raw_windows, kinds = recall_queries(rec.catalog, mods, job["queries"])
    q_all = index.track_norm.transform(raw_vectors)
    q_segs = [index.segment_norm.transform(w) for w in raw_windows]
    started = time.perf_counter()
    truth = exact_blended(index, q_all, q_segs, K)
    exact_s = time.perf_counter() - started
    analyses = [
        Analysis(vector=v, segments=w, segment_starts=(np.arange(len(w)) * QUERY_HOP_S).astype(np.float32), duration=CLIP_SECONDS)
        for v, w in zip(raw_vectors, raw_windows, strict=True)
    ]
    kinds_arr = np.array(kinds)
    out: dict[str, Any] = {"exact_seconds": exact_s, "queries": len(analyses), "settings": []}
    saved = recommend.TRACK_CANDIDATES, recommend.SEGMENT_HITS
    try:
        for factor, hits in job["candidates"]:
            recommend.TRACK_CANDIDATES, recommend.SEGMENT_HITS = factor, hits
            rec.similar_to_analysis(analyses[0], k=K)  # warm-up
            recalls, times = [], []
            for a, t in zip(analyses, truth, strict=True):
                t0 = time.perf_counter()
                answer = rec.similar_to_analysis(a, k=K)
                times.append(time.perf_counter() - t0)
                found = {index.row_of(r.track.id) for r in answer.results}
                recalls.append(len(found & set(t.tolist())) / K)
            r = np.array(recalls)
            out["settings"].append({
                "track_candidates": factor, "segment_hits": hits, "recall": float(r.mean()),
                "recall_held_out": float(r[kinds_arr == "held-out"].mean()), "recall_clips": float(r[kinds_arr == "clip"].mean()),
                "worst": float(r.min()), "p50": statistics.median(times), "p95": float(np.percentile(times, 95)),
            })  # fmt: skip
            print(f"[clips] {job['n']}: {out['settings'][-1]}", file=sys.stderr, flush=True)
    finally:
        recommend.TRACK_CANDIDATES, recommend.SEGMENT_HITS = saved
    return out


# -- the section -----------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class _Size:
    n: int
    built: dict[str, Any]
    query: dict[str, Any]
    recall: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def run(cache: Path, config: ClipsConfig = FULL) -> Section:
    """Measure clip query time and the window-set path's recall; see the module docstring."""
    from soundalike import recommend

    files = clip_files(cache)
    sizes: list[_Size] = []
    for n in config.sizes:
        folder, built = library(cache, n, config.clips)
        job = {"n": n, "folder": str(folder), "cache": str(cache), "clips": config.clips}
        print(f"[clips] {n}: clip queries", file=sys.stderr, flush=True)
        query = run_job(query_job, {**job, "files": [str(f) for f in files], "timed": config.timed})
        print(f"[clips] {n}: recall against exact window-set scoring", file=sys.stderr, flush=True)
        recall = run_job(recall_job, {**job, "queries": config.queries, "candidates": [list(c) for c in config.candidates]})
        sizes.append(_Size(n, built, query, recall))

    section = Section(
        title="Clips on large libraries: query time and the window-set path's recall (issue 13)",
        intro=__doc__.split("\n\n", 1)[1] if __doc__ else "",
        raw={"config": asdict(config), "sizes": [asdict(s) for s in sizes]},
    )
    table = section.table(
        f"A 10-s clip through `Recommender.similar_to_file` (k = {K}), {config.timed} queries after one warm-up, "
        f"{len(files)} real MP3 clips in turn",
        ["tracks", "segments indexed", "p50", "p95", "fastest", "floor: decode + analysis alone, p50 (fastest)",
         "the rest: search, re-scoring, identification (p50)", "first query (model load)", "index (built in this run?)"],
    )
    for s in sizes:
        q = s.query
        table.add(
            fmt_n(s.n), fmt_n(s.built["segments"]), fmt_s(statistics.median(q["total"])), fmt_s(_pct(q["total"], 95)),
            fmt_s(min(q["total"])), f"{fmt_s(statistics.median(q['floor']))} ({fmt_s(min(q['floor']))})",
            fmt_s(max(0.0, statistics.median(q["total"]) - statistics.median(q["floor"]))),
            fmt_s(q["first"]),
            f"{s.built['segment_backend']} segments, {fmt_bytes(s.built['disk'])}, "
            + ("an earlier run's" if s.built["reused"] else f"built in {fmt_s(s.built['seconds'])}"),
        )  # fmt: skip
    recall_t = section.table(
        "Recall@10 of the final blended `all` ranking against exact window-set scoring of every track "
        f"({config.queries} queries per size), by candidate setting",
        ["tracks", "track candidates (× k)", "segment hits per window", "recall@10", "held-out tracks", "clips of library tracks",
         "worst query", "after-analysis p50", "p95", "exact scoring of all tracks, all queries"],
    )
    default = (recommend.TRACK_CANDIDATES, recommend.SEGMENT_HITS)
    for s in sizes:
        for st in s.recall["settings"]:
            mark = " (default)" if (st["track_candidates"], st["segment_hits"]) == default else ""
            recall_t.add(
                fmt_n(s.n), f"{st['track_candidates']}{mark}", st["segment_hits"], f"{st['recall']:.3f}",
                f"{st['recall_held_out']:.3f}", f"{st['recall_clips']:.3f}", f"{st['worst']:.1f}",
                fmt_s(st["p50"]), fmt_s(st["p95"]), fmt_s(s.recall["exact_seconds"]),
            )  # fmt: skip
    for s in sizes:
        if s.n == 10_000 or s is sizes[0]:
            p50 = statistics.median(s.query["total"])
            section.targets.append(
                Target(f"10-s clip query p50 ≤ 150 ms ({fmt_n(s.n)} tracks, full file path)",
                       f"p50 {fmt_s(p50)}, p95 {fmt_s(_pct(s.query['total'], 95))}, fastest {fmt_s(min(s.query['total']))} "
                       f"(decode + analysis alone: p50 {fmt_s(statistics.median(s.query['floor']))}, fastest {fmt_s(min(s.query['floor']))})",
                       p50 <= P50_BAR if s.n >= 10_000 else None)  # fmt: skip
            )
    for s in sizes:
        st = next((x for x in s.recall["settings"] if (x["track_candidates"], x["segment_hits"]) == default), None)
        if st is not None:
            section.targets.append(
                Target(f"recall@10 of the window-set path ≥ 0.95 against exact scoring ({fmt_n(s.n)} tracks)",
                       f"{st['recall']:.3f}", st["recall"] >= RECALL_BAR)  # fmt: skip
            )
    if not any(s.n >= 100_000 for s in sizes):
        section.targets.append(
            Target("recall@10 of the window-set path ≥ 0.95 against exact scoring (100k tracks)", "not run in this mode", None)
        )
    section.notes.append(
        "The synthetic library's windows are drawn independently of its track vectors (two latent models), so a "
        "track's window-set similarity tells nothing of its whole-track cosine, unlike real music: a harder case for "
        "gathering candidates from the two indexes than a real library."
    )
    return section
