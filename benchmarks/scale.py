"""A library of 10k, 100k and 1M synthetic 3-minute tracks built and served in bounded memory (issue 15).

``python -m benchmarks.scale [--quick]`` (``make bench-scale`` / ``make bench-scale-quick``) writes
``benchmarks/results/scale.md`` (``scale-quick.md`` with ``--quick``).

The catalog is a stand-in that *generates* its rows (:class:`SyntheticCatalog`): raw track vectors
and 71 segment windows per track (5-s windows every 2.5 s over 180 s) drawn from the benchmarks'
latent model fitted on the real dev-music clips (tracks) and on their segment windows (segments),
deterministically per block of tracks, so that the build reads it twice exactly as it reads a SQLite
catalog and no 25 GB catalog has to sit on disk. :func:`soundalike.index.bundle.build` is run on it
unchanged, each size in a fresh process whose resident memory (the process and its children) is
sampled every 20 ms.

For each size:

* **build**: seconds, peak RSS, disk of the published index, what the rules chose;
* **serve**: a fresh process loads the published index (what ``serve`` and the CLI do before the
  first request) and answers a 10-s clip with segment matches through
  :meth:`Recommender.similar_to_file` (decode, analysis, track search, segment search, ranking):
  load seconds, p50 over 15 queries, peak RSS; a track query's p50 against exact search over the
  same stored rows (the baseline, measured in the same process);
* **recall@10** of track and segment search against exact float32 search over the same rows,
  recomputed from the generator: 200 held-out tracks; 200 clip windows (a random window of a random
  library track, jittered by 5 % of each dimension's spread, as a clip's windows never fall on the
  catalog's grid) and, beside them, 200 jittered windows of unseen tracks.

Each stage runs in its own process and records the load average (1, 5, 15 min) before it: on a
shared machine the latencies grow with the load. With ``--work DIR --keep`` the libraries and every
stage's result stay in ``DIR`` and a later run reuses what is there (marked "reused" with its date),
so that the 1M size can be run, or resumed, in a separate process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import CACHE, RESULTS, THREAD_VARIABLES
from benchmarks.common import (
    LatentModel,
    Section,
    dir_size,
    fmt_bytes,
    fmt_n,
    fmt_s,
    load_average,
    machine_info,
    real_features,
    render,
    run_job,
    synthetic_raw,
)

SEGMENTS_PER_TRACK = 71
"""5-s windows every 2.5 s over a 3-minute track."""
BLOCK = 4096
SEG_BLOCK = 1024
QUERIES = 200
FILE_QUERIES = 15
SEED = 15
FULL = (10_000, 100_000, 1_000_000)
QUICK = (10_000, 100_000)
CROSSOVER = (300_000, 500_000, 750_000)
"""Extra anchor sizes of the full run, ScaNN and faiss IVF-PQ only: where ``auto`` switches
(``bundle.TRACK_FAISS_FROM``). HNSW runs at the curve's sizes only (29 min to build at 1M)."""
MEMORY_BAR = 8 << 30


# -- the generated catalog -------------------------------------------------------------------------


def track_segments(model: LatentModel, tracks: int, per_track: int, *, seed: int) -> np.ndarray:
    """Raw segment windows [shape=(tracks * per_track, dim)]: each track's windows around its own centre."""
    rng = np.random.default_rng(seed)
    rank, dim = model.components.shape
    a, b = rng.integers(0, len(model.latent), (2, tracks))
    w = rng.random((tracks, 1))
    centres = w * model.latent[a] + (1 - w) * model.latent[b] + 0.5 * model.spread * rng.standard_normal((tracks, rank))
    latent = np.repeat(centres, per_track, axis=0) + 0.5 * model.spread * rng.standard_normal((tracks * per_track, rank))
    z = latent @ model.components + 0.5 * rng.standard_normal((tracks * per_track, dim))
    return (z * model.std + model.mean).astype(np.float32)


class SyntheticCatalog:
    """The part of the :class:`~soundalike.catalog.Catalog` protocol a build and a query read, generated."""

    def __init__(self, models: tuple[LatentModel, LatentModel], n: int, *, per_track: int = SEGMENTS_PER_TRACK) -> None:
        self.tracks_model, self.segments_model = models
        self.n, self.per_track = n, per_track
        self.location = f"synthetic:{n}"

    def revision(self) -> int:
        return 1

    def iter_vectors(self, feature_version: int, *, chunk: int = BLOCK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for b, start in enumerate(range(0, self.n, BLOCK)):
            m = min(BLOCK, self.n - start)
            raw = synthetic_raw(self.tracks_model, m, seed=SEED * 1000 + b, artists=max(8, m // 20))
            yield np.arange(start + 1, start + m + 1, dtype=np.int64), raw

    def iter_segments(self, feature_version: int, *, chunk: int = SEG_BLOCK) -> Iterator[list[Any]]:
        for b in range(-(-self.n // SEG_BLOCK)):
            yield self._segment_block(b)

    def segments_of(self, track_ids: list[int]) -> Iterator[Any]:
        """The segments of these tracks in ascending id order, generating only the blocks that hold them."""
        wanted = sorted(set(track_ids))
        for b in sorted({(t - 1) // SEG_BLOCK for t in wanted}):
            for s in self._segment_block(b):
                if s.track_id in wanted:
                    yield s

    def _segment_block(self, b: int) -> list[Any]:
        from soundalike.catalog import Segments

        starts = np.arange(self.per_track, dtype=np.float32) * 2.5
        start = b * SEG_BLOCK
        m = min(SEG_BLOCK, self.n - start)
        raw = track_segments(self.segments_model, m, self.per_track, seed=SEED * 7000 + b)
        return [
            Segments(track_id=start + i + 1, starts=starts, vectors=raw[i * self.per_track : (i + 1) * self.per_track])
            for i in range(m)
        ]

    def get(self, track_id: int) -> Any:
        from soundalike.catalog import OK, Track

        if not 1 <= track_id <= self.n:
            return None
        return Track(id=int(track_id), path=f"/synthetic/{track_id:07d}.mp3", content_hash="", size=0, mtime=0.0,
                     status=OK, duration=180.0, title=f"Track {track_id}")

    def vectors(self, track_ids: Any) -> np.ndarray:
        """Raw vectors for the results' "why" line (tempo and key). Drawn afresh from the model, not the
        rows the build read: regenerating each result's block of 4,096 would cost a query ~0.3 s at
        1M, where a catalog reads 20 rows by id in about a millisecond."""
        ids = [int(i) for i in track_ids]
        return synthetic_raw(self.tracks_model, len(ids), seed=SEED * 3000 + sum(ids) % 100_000)

    def find_analysis(self, content_hash: str, feature_version: int) -> None:
        """No generated track has a file, so none has the bytes of a query's file."""
        return None


def models(cache: Path, clips: int | None = None) -> tuple[LatentModel, LatentModel]:
    vectors, segments, _ = real_features(cache, clips)
    return LatentModel.fit(vectors), LatentModel.fit(np.concatenate(segments))


# -- memory over the process tree ---------------------------------------------------------------


@contextmanager
def tree_peak(interval: float = 0.02, *, rescan: float = 0.5) -> Iterator[dict[str, int]]:
    """Peak RSS of this process and its children while the block runs, sampled every ``interval``.

    The list of children is found again every ``rescan`` seconds only: finding it walks every
    process on the machine (1.5 ms of this process's CPU, holding the GIL), and doing so every 20 ms
    made the 10-s clip queries timed inside the block 9 ms slower at p50 (95 against 86 ms at a
    million tracks, interleaved blocks); reading the RSS of known processes costs tens of µs.
    """
    import psutil

    me = psutil.Process()
    out = {"peak": 0}
    stop = threading.Event()
    children: list[Any] = []
    found_at = -math.inf

    def total() -> int:
        nonlocal children, found_at
        if time.monotonic() - found_at >= rescan:
            children, found_at = me.children(recursive=True), time.monotonic()
        rss = me.memory_info().rss
        for child in children:
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                continue
        return int(rss)

    def watch() -> None:
        while not stop.wait(interval):
            out["peak"] = max(out["peak"], total())

    thread = threading.Thread(target=watch, daemon=True)
    out["peak"] = total()
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        found_at = -math.inf
        out["peak"] = max(out["peak"], total())


# -- jobs (each in a fresh process) ---------------------------------------------------------------


def build_job(job: dict[str, Any]) -> dict[str, Any]:
    from soundalike.index import bundle

    catalog = SyntheticCatalog(models(Path(job["cache"]), job.get("clips")), job["n"])
    steps: list[tuple[float, str]] = []
    started = time.perf_counter()

    def progress(msg: str) -> None:
        steps.append((time.perf_counter() - started, msg))
        print(f"[scale]   {job['n']}: {steps[-1][0]:.0f} s: {msg}", file=sys.stderr, flush=True)

    with tree_peak() as mem:
        index = bundle.build(job["folder"], catalog, backend=job.get("backend", "auto"), progress=progress)
    seconds = time.perf_counter() - started
    m = index.manifest
    return {
        "seconds": seconds, "peak": mem["peak"], "disk": dir_size(index.directory), "steps": steps,
        "segments": m.segment_count, "backend": m.backend, "segment_backend": m.segment_backend, "storage": m.storage,
        "stride": m.segment_stride, "params": m.params, "segment_params": m.segment_params,
        "build_seconds": m.build_seconds,
    }


def clip(cache: Path) -> Path:
    """A 10-s synthetic clip (MP3-free WAV, so decoding is cheap and constant)."""
    import soundfile

    from soundalike import synth

    path = cache / "scale-clip-10s.wav"
    if not path.is_file():
        spec = synth.library_specs(keys=("C",), duration=10.0)[3]
        soundfile.write(path, synth.render(spec), 22050)
    return path


def serve_job(job: dict[str, Any]) -> dict[str, Any]:
    from soundalike.index import bundle
    from soundalike.index.exact import exact_search
    from soundalike.recommend import Recommender

    catalog = SyntheticCatalog(models(Path(job["cache"]), job.get("clips")), job["n"])
    with tree_peak() as mem:
        t0 = time.perf_counter()
        index = bundle.load(job["folder"])
        load_s = time.perf_counter() - t0
        rec = Recommender(catalog, index)  # type: ignore[arg-type]
        path = clip(Path(job["cache"]))
        first = time.perf_counter()
        rec.similar_to_file(path, k=10, segments=True)
        first_s = time.perf_counter() - first
        times, cpu, analysis_times, analysis_cpu = [], [], [], []
        for _ in range(FILE_QUERIES):  # CPU seconds beside wall seconds: on a shared machine the wall grows with the load
            # Interleaved with the queries, what a query costs before any search: decode and analysis.
            t0, c0 = time.perf_counter(), time.process_time()
            _analyse(path, index)
            analysis_times.append(time.perf_counter() - t0)
            analysis_cpu.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            rec.similar_to_file(path, k=10, segments=True)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        q = np.asarray(index.vectors[np.random.default_rng(1).choice(index.count, 20, replace=False)])
        track_times, exact_times = [], []
        for row in q:
            t0 = time.perf_counter()
            index.tracks.query(row, 10)
            track_times.append(time.perf_counter() - t0)
        for row in q[:5]:
            t0 = time.perf_counter()
            exact_search(index.vectors, row[None, :], 10)
            exact_times.append(time.perf_counter() - t0)
    return {
        "load": load_s, "first": first_s, "p50": statistics.median(times), "peak": mem["peak"],
        "analysis_p50": statistics.median(analysis_times), "cpu_p50": statistics.median(cpu),
        "analysis_cpu_p50": statistics.median(analysis_cpu),
        "track_p50": statistics.median(track_times), "exact_p50": statistics.median(exact_times),
    }


def _analyse(path: Path, index: Any) -> None:
    from soundalike.audio import decode
    from soundalike.features import extract_query
    from soundalike.vocabulary import LEARNED_FAMILIES

    audio = decode(path)
    style = any(index.track_norm.weights.get(f, 0.0) > 0 for f in LEARNED_FAMILIES)
    extract_query(audio.samples, sample_rate=audio.sample_rate, style=style)


def _merge(best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, offset: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    kk = min(k, scores.shape[1])
    top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    pos = np.concatenate([best[0], top + offset], axis=1)
    sc = np.concatenate([best[1], np.take_along_axis(scores, top, axis=1)], axis=1)
    keep = np.argsort(-sc, axis=1)[:, :k]
    return np.take_along_axis(pos, keep, axis=1), np.take_along_axis(sc, keep, axis=1)


def recall_job(job: dict[str, Any]) -> dict[str, Any]:
    """Recall@10 of the published index against exact float32 search over regenerated rows."""
    from soundalike.index import bundle

    k = 10
    mods = models(Path(job["cache"]), job.get("clips"))
    catalog = SyntheticCatalog(mods, job["n"])
    index = bundle.load(job["folder"])
    rng = np.random.default_rng(3)
    # Track queries: held-out tracks from the same model. Segment queries: clip windows, i.e. windows
    # of library tracks jittered (a clip never falls on the catalog's grid), and windows of unseen
    # tracks (their neighbours are spread more thinly: a harder case, reported beside).
    q_tracks = index.track_norm.transform(synthetic_raw(mods[0], QUERIES, seed=99_991))
    held = track_segments(mods[1], QUERIES, 1, seed=99_992)
    jitter = 0.05 * held.std(axis=0)
    q_unseen = index.segment_norm.transform(held + jitter * rng.standard_normal(held.shape).astype(np.float32))
    picks = rng.choice(job["n"], QUERIES, replace=False) + 1
    clip_raw = [s.vectors[rng.integers(0, len(s.vectors))] for s in catalog.segments_of(picks.tolist())]
    clip_arr = np.stack(clip_raw)
    q_clips = index.segment_norm.transform(clip_arr + jitter * rng.standard_normal(clip_arr.shape).astype(np.float32))
    q_segs = np.concatenate([q_clips, q_unseen])
    empty = (np.zeros((QUERIES, 0), np.int64), np.zeros((QUERIES, 0), np.float32))
    t_best = empty
    s_best = (np.zeros((len(q_segs), 0), np.int64), np.zeros((len(q_segs), 0), np.float32))
    row = 0
    for _ids, raw in catalog.iter_vectors(1):
        x = index.track_norm.transform(raw)
        t_best = _merge(t_best, q_tracks @ x.T, row, k)
        row += len(x)
    stride = index.manifest.segment_stride
    seg_row = 0
    for batch in catalog.iter_segments(1):
        x = index.segment_norm.transform(np.concatenate([s.vectors[::stride] for s in batch]))
        s_best = _merge(s_best, q_segs @ x.T, seg_row, k)
        seg_row += len(x)
    found_t, _ = index.tracks.query(q_tracks, k)
    found_s, _ = index.segments.query(q_segs, k)

    def recall(found: np.ndarray, truth: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)]))

    c = len(q_clips)
    return {
        "tracks": recall(found_t, t_best[0]), "segments": recall(found_s[:c], s_best[0][:c]),
        "segments_unseen": recall(found_s[c:], s_best[0][c:]), "checked_rows": seg_row,
    }


# -- the section -----------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class NotRun(Exception):
    """A stage that ``--reuse-only`` found no saved result for."""


def stage(name: str, fn: Any, job: dict[str, Any], *, work: Path, keep: bool, reuse_only: bool = False) -> dict[str, Any]:
    """``fn(job)`` in a fresh process with the load average before it; with ``keep``, its result is
    saved as ``work/NAME.json`` and a result already there is reused instead of running it again
    (with ``reuse_only``, a stage without a saved result raises :class:`NotRun`)."""
    saved = work / f"{name}.json"
    if keep and saved.is_file():
        out: dict[str, Any] = json.loads(saved.read_text())
        out["reused"] = True
        print(f"[scale] {name}: reused {saved} (measured {out.get('date', '?')})", file=sys.stderr, flush=True)
        return out
    if reuse_only:
        raise NotRun(f"{name} not run (no result saved in {work})")
    load_before = load_average()
    out = run_job(fn, job)
    out.update(load_before=load_before, load_after=load_average(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    if keep:
        work.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(out, default=_json_default))
    return out


def run(
    cache: Path, sizes: tuple[int, ...], *, work: Path, clips: int | None = None, keep: bool = False, reuse_only: bool = False
) -> Section:
    section = Section(
        title="Scale: 10k / 100k / 1M synthetic 3-minute tracks (issue 15)",
        intro=__doc__.split("\n\n", 1)[1] if __doc__ else "",
    )
    rows: list[dict[str, Any]] = []
    for n in sizes:
        folder = work / f"lib-{n}"
        job = {"n": n, "folder": str(folder), "cache": str(cache), "clips": clips}
        print(f"[scale] {n}: build", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"n": n, "build": None, "serve": None, "recall": None}
        try:  # with --reuse-only, a size keeps the stages that were measured and says which were not
            row["build"] = b = stage(f"build-{n}", build_job, job, work=work, keep=keep, reuse_only=reuse_only)
            print(f"[scale] {n}: built in {b['seconds']:.0f} s, peak {fmt_bytes(b['peak'])}; serve", file=sys.stderr, flush=True)
            row["serve"] = s = stage(f"serve-{n}", serve_job, job, work=work, keep=keep, reuse_only=reuse_only)
            print(f"[scale] {n}: p50 {s['p50'] * 1e3:.0f} ms; recall", file=sys.stderr, flush=True)
            row["recall"] = stage(f"recall-{n}", recall_job, job, work=work, keep=keep, reuse_only=reuse_only)
            print(f"[scale] {n}: {row['recall']}", file=sys.stderr, flush=True)
        except NotRun as exc:
            section.notes.append(f"**{fmt_n(n)} tracks: {exc}.**")
        if row["build"] is not None:
            rows.append(row)
            section.raw[str(n)] = row
    curve = section.table(
        "The curve: cost against library size",
        ["tracks", "segments indexed", "build", "peak RSS (build)", "index on disk", "load (serve ready)",
         "file query p50 (of which decode + analysis); its CPU time p50 (likewise)", "peak RSS (serve)", "track query p50 (exact on the same rows)",
         "recall@10 tracks", "recall@10 segments: clips (unseen tracks' windows)"],
    )
    missing = "not measured"
    for row in rows:
        b, s, r = row["build"], row["serve"], row["recall"]
        serve_cells = [missing] * 4
        if s is not None:
            analysis = f" ({s['analysis_p50'] * 1e3:.0f} ms)" if "analysis_p50" in s else ""
            if "cpu_p50" in s:
                analysis += f"; CPU {s['cpu_p50'] * 1e3:.0f} ms ({s['analysis_cpu_p50'] * 1e3:.0f} ms)"
            serve_cells = [
                fmt_s(s["load"]), f"{s['p50'] * 1e3:.0f} ms{analysis}", fmt_bytes(s["peak"]),
                f"{s['track_p50'] * 1e3:.1f} ms ({s['exact_p50'] * 1e3:.0f} ms, {s['exact_p50'] / max(s['track_p50'], 1e-9):.0f}×)",
            ]
        recall_cells = [missing] * 2 if r is None else [f"{r['tracks']:.3f}", f"{r['segments']:.3f} ({r['segments_unseen']:.3f})"]
        curve.add(
            fmt_n(row["n"]), f"{fmt_n(b['segments'])} (every {b['stride']} window)", fmt_s(b["seconds"]), fmt_bytes(b["peak"]),
            fmt_bytes(b["disk"]), *serve_cells, *recall_cells,
        )
    when = section.table(
        "When each stage finished (load average 1, 5, 15 min before it started; 2 cores shared with other work)",
        ["tracks", "build", "serve", "recall"],
    )
    for row in rows:
        when.add(fmt_n(row["n"]), *(_when(row[x]) if row[x] is not None else missing for x in ("build", "serve", "recall")))
    chosen = section.table("What the rules chose", ["tracks", "storage", "track index", "segment index", "build seconds (tracks / segments / total)"])
    for row in rows:
        b = row["build"]
        chosen.add(
            fmt_n(row["n"]), f"tracks {b['storage']['tracks']}, segments {b['storage']['segments']}",
            f"{b.get('backend', 'scann')} {b['params'].get('algorithm')}", f"{b['segment_backend']} {b['segment_params'].get('algorithm', '')}",
            " / ".join(f"{b['build_seconds'].get(x, 0):.0f}" for x in ("tracks", "segments", "total")),
        )
    section.raw["rows"] = rows
    if not rows:
        return section
    biggest = rows[-1]
    n = biggest["n"]
    met = n >= 1_000_000
    from benchmarks.common import Target

    b, s, r = biggest["build"], biggest["serve"], biggest["recall"]
    why = "" if met else "1M not run in this mode"
    section.targets += [
        Target(f"peak RSS ≤ 8 GB, build and query ({fmt_n(n)} tracks)",
               f"build {fmt_bytes(b['peak'])}, serve {fmt_bytes(s['peak']) if s else missing}",
               (max(b["peak"], s["peak"] if s else 0) <= MEMORY_BAR) if met and s else None, why or ("" if s else "serve not measured")),
        Target(f"recall@10 ≥ 0.95 tracks and segments ({fmt_n(n)})",
               f"{r['tracks']:.3f} / {r['segments']:.3f}" if r else missing,
               min(r["tracks"], r["segments"]) >= 0.95 if r else None),
        Target(f"file query p50 ≤ 100 ms ({fmt_n(n)})", f"{s['p50'] * 1e3:.0f} ms" if s else missing,
               s["p50"] <= 0.1 if met and s else None, why),
        Target(f"serve ready ≤ 10 s ({fmt_n(n)})", fmt_s(s["load"]) if s else missing,
               s["load"] <= 10 if met and s else None, why),
    ]
    section.notes.append(_growth(rows))
    section.raw["rows"] = rows
    return section


def _when(result: dict[str, Any]) -> str:
    text = f"{result.get('date', '?')}, load {result.get('load_before', '?')}"
    return text + (" (reused from an earlier run)" if result.get("reused") else "")


# -- the anchors: ScaNN and faiss on the same track vectors --------------------------------------

ANCHORS: dict[str, tuple[dict[str, Any], str, list[Any]]] = {
    "ScaNN tree + AH (default)": ({}, "leaves_to_search", [0.5, 1, 2, 4]),
    "faiss IVF-PQ (4-bit fast scan)": ({"algorithm": "ivf_pq4"}, "nprobe", [8, 16, 32, 64, 128]),
    "faiss HNSW32 (8-bit rows)": ({"algorithm": "hnsw"}, "ef_search", [16, 32, 64, 128, 256]),
}
"""Name → (build parameters, the query knob, its values; ScaNN's are multiples of its rule's value)."""
TARGET_RECALL = 0.95


def anchor_data_job(job: dict[str, Any]) -> dict[str, Any]:
    """Write the normalised float32 track vectors, held-out queries and their exact top 10."""
    from soundalike.features import track_layout
    from soundalike.features.normalise import Normaliser
    from soundalike.index.exact import exact_search

    mods = models(Path(job["cache"]), job.get("clips"))
    catalog = SyntheticCatalog(mods, job["n"])
    norm = Normaliser.fit((raw for _ids, raw in catalog.iter_vectors(1)), track_layout(), {})
    folder = Path(job["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(job["n"], track_layout().dim))
    row = 0
    for _ids, raw in catalog.iter_vectors(1):
        out[row : row + len(raw)] = norm.transform(raw)
        row += len(raw)
    out.flush()
    queries = norm.transform(synthetic_raw(mods[0], QUERIES, seed=99_991))
    np.save(folder / "queries.npy", queries)
    np.save(folder / "truth.npy", exact_search(out, queries, 10)[0])
    return {"rows": row}


def anchor_job(job: dict[str, Any]) -> dict[str, Any]:
    from soundalike.index import build_index

    folder = Path(job["folder"])
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    backend = "scann" if job["name"].startswith("ScaNN") else "faiss"
    build_params, knob, values = ANCHORS[job["name"]]
    with tree_peak() as mem:
        t0 = time.perf_counter()
        index = build_index(backend, vectors, params=dict(build_params) or None)
        build_s = time.perf_counter() - t0
        base = index.params.get(knob)
        points = []
        for value in values:
            v = max(1, round(value * base)) if backend == "scann" else value
            if backend == "scann" and v > index.params["num_leaves"]:
                continue
            index.params[knob] = v
            index.query(queries[:5], 10)
            t0 = time.perf_counter()
            found = np.stack([index.query(q, 10)[0] for q in queries])
            seconds = time.perf_counter() - t0
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
            points.append({"knob": f"{knob}={v}", "recall": recall, "qps": len(queries) / seconds})
    return {"build": build_s, "peak": mem["peak"], "points": points}


def run_anchors(
    cache: Path,
    sizes: tuple[int, ...],
    *,
    work: Path,
    section: Section,
    clips: int | None = None,
    keep: bool = False,
    reuse_only: bool = False,
) -> None:
    table = section.table(
        "Anchors: the same normalised track vectors, each library's cheapest setting reaching recall@10 ≥ 0.95",
        ["tracks", "index", "setting", "recall@10", "queries/s (1 thread, one at a time)", "× ScaNN", "peak RSS (build + queries)", "build"],
    )
    from soundalike.index import bundle

    switch = section.table(
        f"Where the default (`auto`) switches: faiss IVF-PQ against ScaNN at recall@10 ≥ 0.95; from {fmt_n(bundle.TRACK_FAISS_FROM)} tracks `auto` builds faiss",
        ["tracks", "queries/s", "peak RSS", "build time", "`auto` builds"],
    )
    for n in sizes:
        folder = work / f"anchors-{n}"
        print(f"[scale] anchors {n}: data", file=sys.stderr, flush=True)
        try:
            stage(f"anchors-{n}-data", anchor_data_job, {"n": n, "folder": str(folder), "cache": str(cache), "clips": clips},
                  work=work, keep=keep, reuse_only=reuse_only)
        except NotRun as exc:
            table.add(fmt_n(n), "all", str(exc), "", "", "", "", "")
            continue
        results = {}
        for i, name in enumerate(ANCHORS):
            if n in CROSSOVER and "HNSW" in name:
                continue
            print(f"[scale] anchors {n}: {name}", file=sys.stderr, flush=True)
            try:
                results[name] = stage(f"anchors-{n}-{i}", anchor_job, {"name": name, "folder": str(folder)},
                                      work=work, keep=keep, reuse_only=reuse_only)
            except Exception as exc:  # one library failing must not lose the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        section.raw[f"anchors-{n}"] = results
        best = {name: _cheapest(r) for name, r in results.items()}
        scann = best.get("ScaNN tree + AH (default)")
        for name, r in results.items():
            if "error" in r:
                table.add(fmt_n(n), name, r["error"], "", "", "", "", "")
                continue
            point = best[name]
            if point is None:
                top = max(r["points"], key=lambda p: p["recall"])
                table.add(fmt_n(n), name, f"none reaches 0.95 (best {top['knob']})", f"{top['recall']:.3f}",
                          f"{top['qps']:.0f}", "", fmt_bytes(r["peak"]), fmt_s(r["build"]))
                continue
            ratio = f"{point['qps'] / scann['qps']:.2f}×" if scann else ""
            table.add(fmt_n(n), name, point["knob"], f"{point['recall']:.3f}", f"{point['qps']:.0f}", ratio,
                      fmt_bytes(r["peak"]), fmt_s(r["build"]))
        ivf = results.get("faiss IVF-PQ (4-bit fast scan)", {})
        if scann and best.get("faiss IVF-PQ (4-bit fast scan)") and "error" not in ivf:
            sc = results["ScaNN tree + AH (default)"]
            switch.add(fmt_n(n), f"{best['faiss IVF-PQ (4-bit fast scan)']['qps'] / scann['qps']:.2f}×",
                       f"{ivf['peak'] / sc['peak']:.2f}×", f"{ivf['build'] / sc['build']:.2f}×",
                       "faiss IVF-PQ" if n >= bundle.TRACK_FAISS_FROM else "ScaNN")


def _cheapest(result: dict[str, Any]) -> dict[str, Any] | None:
    good = [p for p in result.get("points", []) if p["recall"] >= TARGET_RECALL]
    return max(good, key=lambda p: p["qps"]) if good else None


# -- the segment density rule: clip identification with catalog windows every 2.5 s and every 5 s ---


def density_job(job: dict[str, Any]) -> dict[str, Any]:
    """Identify 10-s clips cut at off-grid times from synthesised 40-s tracks, with stride 1 and 2."""
    import soundfile

    from soundalike import synth
    from soundalike.catalog.sqlite import SQLiteCatalog
    from soundalike.index import bundle
    from soundalike.ingest import SerialRunner, ingest
    from soundalike.recommend import Recommender

    work = Path(job["folder"])
    music = work / "music"
    written = synth.write_library(music, synth.library_specs(keys=("C", "A"), duration=40.0)[: job["tracks"]], formats=("wav",))
    catalog = SQLiteCatalog(work / "catalog.sqlite")
    ingest([music], catalog, runner=SerialRunner())
    rng = np.random.default_rng(5)
    clips = []
    for i, (path, _spec) in enumerate(written):
        audio, rate = soundfile.read(path, dtype="float32")
        offset = float(rng.uniform(0.3, 29.7))
        clip_path = work / f"clip-{i}.wav"
        soundfile.write(clip_path, audio[int(offset * rate) : int((offset + 10.0) * rate)], rate)
        clips.append((clip_path, str(path), offset))
    out: dict[str, Any] = {}
    for stride in (1, 2):
        index = bundle.build(work / f"lib-{stride}", catalog, backend="exact", segment_stride=stride)
        rec = Recommender(catalog, index)
        top1 = located = 0
        errors, best = [], []
        for clip_path, source, offset in clips:
            r = rec.similar_to_file(clip_path, k=5, segments=True)
            top1 += r.results[0].track.path == source
            match = max(r.segment_matches, key=lambda m: m.similarity)
            best.append(match.similarity)
            if match.track.path == source:
                located += 1
                errors.append(abs(match.track_start - (offset + match.query_start)))
        out[str(stride)] = {
            "segments": len(index.seg_vectors), "top1": top1 / len(clips), "located": located / len(clips),
            "offset_error": float(np.median(errors)) if errors else float("nan"), "best_similarity": float(np.mean(best)),
        }
    return out


def run_density(section: Section, *, work: Path, tracks: int = 40, keep: bool = False, reuse_only: bool = False) -> None:
    print("[scale] density rule", file=sys.stderr, flush=True)
    try:
        result = stage("density", density_job, {"folder": str(work / "density"), "tracks": tracks},
                       work=work, keep=keep, reuse_only=reuse_only)
    except NotRun as exc:
        section.notes.append(f"**Segment density: not measured** ({exc}).")
        return
    section.raw["density"] = result
    table = section.table(
        f"Segment density: {tracks} synthesised 40-s tracks, one 10-s clip of each cut at a random off-grid time, "
        "queried with windows every 0.5 s",
        ["catalog windows indexed", "segments", "top-1 track", "best segment match on the source track",
         "median offset error of that match", "mean best-segment similarity"],
    )
    for stride, label in (("1", "every 2.5 s (stride 1)"), ("2", "every 5 s (stride 2)")):
        r = result[stride]
        table.add(label, fmt_n(r["segments"]), f"{r['top1']:.3f}", f"{r['located']:.3f}", f"{r['offset_error']:.2f} s",
                  f"{r['best_similarity']:.3f}")


def _growth(rows: list[dict[str, Any]]) -> str:
    """The growth of each cost between sizes (10× = linear in the library)."""
    lines = ["**Growth between sizes** (cost ratio for a 10× larger library; 10× = linear):", ""]
    lines.append("| from → to | build | peak RSS (build) | disk | file query p50 | load |")
    lines.append("|---|---|---|---|---|---|")
    for a, b in zip(rows, rows[1:], strict=False):
        def ratio(get: Any, a: dict[str, Any] = a, b: dict[str, Any] = b) -> str:
            try:
                return f"{get(b) / max(get(a), 1e-12):.1f}×"
            except TypeError:  # a stage not measured
                return "–"

        lines.append(
            f"| {fmt_n(a['n'])} → {fmt_n(b['n'])} | {ratio(lambda r: r['build']['seconds'])} | "
            f"{ratio(lambda r: r['build']['peak'])} | {ratio(lambda r: r['build']['disk'])} | "
            f"{ratio(lambda r: r['serve']['p50'])} | {ratio(lambda r: r['serve']['load'])} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """The curve as a small PNG: build time, peak memory, disk and clip query p50 against tracks (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    n = [r["n"] for r in rows]
    panels = [
        ("build (minutes)", [r["build"]["seconds"] / 60 for r in rows], None),
        ("peak RSS (GB)", [r["build"]["peak"] / (1 << 30) for r in rows], MEMORY_BAR / (1 << 30)),
        ("index on disk (GB)", [r["build"]["disk"] / (1 << 30) for r in rows], None),
        ("10-s clip query p50 (ms)", [r["serve"]["p50"] * 1e3 if r["serve"] else np.nan for r in rows], 100.0),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.8), dpi=80)
    for ax, (label, values, bar) in zip(axes, panels, strict=True):
        ax.loglog(n, values, "o-", color="#1f5f99")
        for x, v in zip(n, values, strict=True):  # a log axis has few labelled ticks: say each value
            if np.isfinite(v):
                ax.annotate(f"{v:.3g}", (x, v), textcoords="offset points", xytext=(3, -9), fontsize=7, color="#1f5f99")
        if label.startswith("10-s"):
            cpu = [r["serve"]["cpu_p50"] * 1e3 if r["serve"] and "cpu_p50" in r["serve"] else np.nan for r in rows]
            ax.loglog(n, cpu, "s--", color="#b35900", label="CPU time")
            ax.legend(fontsize=7, loc="upper left")
        if label.startswith("peak"):
            ax.loglog(n, [r["serve"]["peak"] / (1 << 30) if r["serve"] else np.nan for r in rows], "s--", color="#b35900", label="serve")
            ax.legend(fontsize=7, loc="upper left")
        if bar is not None:
            ax.axhline(bar, color="#a00", lw=0.8, ls=":")
            ax.text(n[0], bar * 1.05, "bar", color="#a00", fontsize=7)
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("tracks", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    os.environ.setdefault("GLOG_minloglevel", "2")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k only (minutes)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (overrides the mode)")
    parser.add_argument("--work", default=None, help="folder for the libraries (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the libraries and each stage's result in --work, and reuse those already there")
    parser.add_argument("--reuse-only", action="store_true",
                        help="with --keep: write the results from the stages saved in --work, run nothing (missing ones are 'not run')")
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-curve", action="store_true", help="skip the 10k/100k/1M library builds")
    parser.add_argument("--no-anchors", action="store_true", help="skip the ScaNN/faiss comparison")
    parser.add_argument("--no-density", action="store_true", help="skip the segment density measurement")
    parser.add_argument("--anchor-sizes", default=None,
                        help="sizes of the ScaNN/faiss comparison (default: the same, and 300k/500k/750k in the full run)")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (QUICK if args.quick else FULL)
    CACHE.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    started = time.perf_counter()
    if (args.keep or args.reuse_only) and not args.work:
        parser.error("--keep needs --work")
    args.keep = args.keep or args.reuse_only
    out = Path(args.out) if args.out else RESULTS / ("scale-quick.md" if args.quick else "scale.md")
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = Path(args.work)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soundalike-scale-", dir=args.work)))
        if args.no_curve:
            section = Section(title="Scale (issue 15): anchors and segment density")
        else:
            section = run(CACHE, sizes, work=work, keep=args.keep, reuse_only=args.reuse_only)
            if section.raw["rows"]:
                picture = plot(section.raw["rows"], out.with_suffix(".png"))
                section.notes.append(f"![The curve: build time, peak memory, disk and clip query p50 against library size]({picture.name})")
        if not args.no_anchors:
            full = not (args.sizes or args.quick)
            anchor_sizes = (tuple(int(x) for x in args.anchor_sizes.split(",")) if args.anchor_sizes
                            else tuple(sorted({*sizes, *CROSSOVER})) if full else sizes)
            run_anchors(CACHE, anchor_sizes, work=work, section=section, keep=args.keep, reuse_only=args.reuse_only)
        if not args.no_density:
            run_density(section, work=work, keep=args.keep, reuse_only=args.reuse_only)
    section.seconds = time.perf_counter() - started
    machine["load_after"] = load_average()
    text = render([section], machine, mode="quick" if args.quick else "full", seconds=section.seconds)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
