"""Radio and duplicates (issue 14): speed at 10k–1M tracks, smoothness on real music, duplicates' accuracy.

Three parts:

1. **Radio speed.** Libraries of N synthetic tracks (track vectors from the latent model of
   :mod:`benchmarks.common`, shaped like the dev-music features; tags: 20 tracks per artist, 10 per
   album) written into a real SQLite catalog; the track vectors normalised and indexed by ScaNN with
   its default rule, exactly as ``bundle.build`` does for the track index. Each track's 11 segment
   windows are real clips' windows plus noise, made on access from the row number (the radio reads
   only the windows of the tracks it is about to play, to recognise copies; building a segment
   index of 11M windows is not what is measured here). A 50-track radio from one seed (drift 0.5)
   is timed on one core, catalog look-ups included, against two baselines in the same run: one
   top-50 query of the same index (what ``similar -k 50`` costs) and the straightforward radio that
   scores every track at every step (exact, no index).
2. **Smoothness** on real libraries (dev-music clips; the dev-corpus's whole tracks when its
   library has been ingested into the cache): for each track as the seed, the mean distance
   ``sqrt(2 − 2c)`` between consecutive tracks of the radio, against the same tracks in random order
   and against the seed's plain top-n nearest neighbours in rank order.
3. **Duplicates.** (a) Real ground truth: every 9th dev-music clip copied byte for byte and made
   again by ffmpeg as MP3 192k, MP3 64k, Opus 64k and MP3 with 2 s of silence added, all ingested
   with the other clips; precision and recall of the pairs found. (b) Speed at 10k tracks: a
   synthetic catalog (segments as in part 1) with planted copies (byte copies, "transcodes" = the
   same windows plus small noise, and "silence added" = the windows one hop later), indexed by
   ``bundle.build``; time of ``find_duplicates`` and its precision and recall on the planted pairs.
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    LatentModel,
    Section,
    Target,
    devmusic_clips,
    fmt_n,
    fmt_s,
    real_features,
    run_job,
    sample_rss,
    synthetic_raw,
)

SEGMENTS_PER_TRACK = 11
SEGMENT_HOP_S = 2.5
TRACKS_PER_ARTIST = 20
TRACKS_PER_ALBUM = 10


@dataclass(frozen=True)
class RadioConfig:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    radios: int = 20
    """Radios timed per size (each from another seed)."""
    naive_radios: int = 3
    n: int = 50
    smooth_seeds: int = 91
    duplicates_tracks: int = 10_000
    real_clips: int | None = None
    """Real clips whose features shape the synthetic libraries (None: all)."""
    clips: int | None = None
    """Dev-music clips in the smoothness and ffmpeg-copies libraries (None: all)."""
    fresh_processes: bool = True


FULL = RadioConfig()
QUICK = RadioConfig(sizes=(10_000,), radios=5, naive_radios=1, smooth_seeds=20, duplicates_tracks=2_000)


# -- synthetic libraries ---------------------------------------------------------------------------


def _records(raw: np.ndarray, start: int, segments: Any | None) -> list[Any]:
    from soundalike.catalog import OK, TrackRecord
    from soundalike.features import FEATURE_VERSION

    out = []
    for j, vec in enumerate(raw):
        i = start + j
        artist, album = i // TRACKS_PER_ARTIST, i // TRACKS_PER_ALBUM
        segs = None if segments is None else segments(i)
        out.append(
            TrackRecord(
                path=f"/synthetic/artist-{artist:06d}/album-{album:07d}/track-{i:07d}.mp3",
                content_hash=f"{i:032x}",
                size=480_000,
                mtime=1.7e9,
                status=OK,
                duration=30.0,
                tags={"title": f"Track {i}", "artist": f"Artist {artist}", "album": f"Album {album}"},
                feature_version=FEATURE_VERSION,
                vector=vec,
                segments=None if segs is None else segs[0],
                segment_starts=None if segs is None else segs[1],
            )
        )
    return out


class WindowMaker:
    """Raw segment windows of synthetic track ``i``, seeded by ``i``: each window a real clip's window
    (any clip, any time) plus noise, so that two synthetic tracks are different recordings (windows
    taken whole from one clip would make every track built on that clip a near-copy of the others)."""

    def __init__(self, real_segments: list[np.ndarray], noise: float = 0.5) -> None:
        self.pool = np.concatenate(real_segments)
        self.scale = noise * self.pool.std(axis=0)

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(1_000_003 * 7 + i)
        base = self.pool[rng.integers(0, len(self.pool), SEGMENTS_PER_TRACK)]
        segs = (base + self.scale * rng.standard_normal(base.shape)).astype(np.float32)
        return segs, (np.arange(len(segs)) * SEGMENT_HOP_S).astype(np.float32)


def scale_job(job: dict[str, Any]) -> dict[str, Any]:
    """Make (or reuse) an N-track catalog, index its track vectors, time radios (in a fresh process)."""
    from numpy.lib.format import open_memmap

    from soundalike.catalog.sqlite import SQLiteCatalog
    from soundalike.features import segment_layout, track_layout
    from soundalike.features.normalise import Normaliser
    from soundalike.index import build_index
    from soundalike.index.bundle import LibraryIndex, Manifest
    from soundalike.radio import radio, seed_from_track

    n, cache = int(job["n"]), Path(job["cache"])
    raw_real, real_segments, source = real_features(cache, job.get("real_clips"))
    folder = cache / "radio" / f"scale-{n}-real{job.get('real_clips') or 'all'}"
    marker = folder / "made.json"
    out: dict[str, Any] = {"n": n, "source": source}
    if not marker.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        raw = synthetic_raw(LatentModel.fit(raw_real), n, seed=14 * 7919 + n)
        np.save(folder / "raw.npy", raw)
        catalog = SQLiteCatalog(folder / "catalog.sqlite")
        for s in range(0, n, 5000):
            catalog.write(_records(raw[s : s + 5000], s, None))
        catalog.close()
        marker.write_text(json.dumps({"seconds": time.perf_counter() - started}))
    raw = np.load(folder / "raw.npy", mmap_mode="r")
    catalog = SQLiteCatalog(folder / "catalog.sqlite", create=False)
    layout = track_layout()
    norm = Normaliser.fit((raw[s : s + 65536] for s in range(0, n, 65536)), layout, {})
    vectors = open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, layout.dim))
    for s in range(0, n, 65536):
        vectors[s : s + 65536] = norm.transform(raw[s : s + 65536])
    vectors.flush()
    t0 = time.perf_counter()
    with sample_rss() as memory:
        tracks = build_index("scann", np.asarray(vectors))
    out["index_build_seconds"] = time.perf_counter() - t0
    out["index_build_peak"] = memory.peak_delta
    out["params"] = dict(tracks.params)
    seg_norm = Normaliser.fit([np.concatenate(real_segments)], segment_layout(), {})
    seg_vectors = _segment_file(folder / "seg_vectors.npy", n, real_segments, seg_norm)
    starts = np.tile((np.arange(SEGMENTS_PER_TRACK) * SEGMENT_HOP_S).astype(np.float32), n)
    ids = np.arange(1, n + 1, dtype=np.int64)  # SQLite ids follow the insertion order
    manifest = Manifest(
        backend="scann", segment_backend="none", dim=layout.dim, segment_dim=segment_layout().dim, feature_version=0,
        count=n, segment_count=n * SEGMENTS_PER_TRACK, catalog_revision=0, catalog="", params=dict(tracks.params),
        segment_params={}, weights=dict(norm.weights), built_at=0.0, build_seconds={},
    )  # fmt: skip
    index = LibraryIndex(
        directory=folder, manifest=manifest, track_norm=norm, segment_norm=seg_norm, ids=ids, vectors=vectors,
        seg_vectors=seg_vectors, seg_rows=np.repeat(np.arange(n, dtype=np.int32), SEGMENTS_PER_TRACK), seg_starts=starts,
        seg_offsets=np.arange(n + 1, dtype=np.int64) * SEGMENTS_PER_TRACK, tracks=tracks, segments=tracks,
    )  # fmt: skip
    last = catalog.get(n)
    assert last is not None and last.path.endswith(f"track-{n - 1:07d}.mp3"), "catalog ids follow the rows"
    lookups = 0

    def lookup(track_id: int) -> Any:
        nonlocal lookups
        lookups += 1
        return catalog.get(track_id)

    rng = np.random.default_rng(20261202 + n)
    seeds = [int(r) for r in rng.choice(n, size=int(job["radios"]), replace=False)]
    want = int(job["n_tracks"])
    radio_s, top_s, lookups_per = [], [], []
    smooth = []
    for row in seeds:
        seed = seed_from_track(index, catalog.get(int(ids[row])))
        t0 = time.perf_counter()
        tracks.query(vectors[row], want + 1)
        top_s.append(time.perf_counter() - t0)
        lookups = 0
        t0 = time.perf_counter()
        playlist = radio(index, lookup, [seed], n=want)
        radio_s.append(time.perf_counter() - t0)
        lookups_per.append(lookups)
        assert len(playlist.entries) == want
        smooth.append(float(np.mean([e.distance for e in playlist.entries])))
    # the straightforward radio: every track scored at every step (exact), same rules but copies
    naive_s = []
    for row in seeds[: int(job["naive_radios"])]:
        t0 = time.perf_counter()
        _naive_radio(vectors, row, want)
        naive_s.append(time.perf_counter() - t0)
    spread_s = []
    from soundalike.radio import Spread

    for row in seeds[: max(1, len(seeds) // 4)]:
        seed = seed_from_track(index, catalog.get(int(ids[row])))
        t0 = time.perf_counter()
        radio(index, catalog.get, [seed], n=want, spread=Spread("artist", 3))
        spread_s.append(time.perf_counter() - t0)
    out.update(radio=radio_s, top=top_s, naive=naive_s, spread=spread_s, lookups=lookups_per, step_distance=smooth)
    catalog.close()
    del index, tracks, vectors
    (folder / "vectors.npy").unlink()
    return out


def _segment_file(path: Path, n: int, real_segments: list[np.ndarray], norm: Any) -> np.ndarray:
    """Normalised windows of ``n`` synthetic tracks in a memory-mapped ``.npy`` (made once, then reused)."""
    from numpy.lib.format import open_memmap

    rows = n * SEGMENTS_PER_TRACK
    if path.is_file():
        existing = np.load(path, mmap_mode="r")
        if existing.shape[0] == rows:
            return existing
    pool = np.concatenate(real_segments)
    scale = 0.5 * pool.std(axis=0)
    rng = np.random.default_rng(n)
    out = open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(rows, pool.shape[1]))
    for s in range(0, rows, 1 << 18):
        m = min(1 << 18, rows - s)
        out[s : s + m] = norm.transform(pool[rng.integers(0, len(pool), m)] + scale * rng.standard_normal((m, pool.shape[1])))
    out.flush()
    del out
    path.with_suffix(".tmp.npy").rename(path)
    return np.load(path, mmap_mode="r")


def _naive_radio(vectors: np.ndarray, seed_row: int, n: int, drift: float = 0.5) -> list[int]:
    """Greedy radio scoring all N tracks at every step (the baseline without an index)."""
    x = np.asarray(vectors)
    seed = x[seed_row]
    to_seed = x @ seed
    used = np.zeros(len(x), dtype=bool)
    used[seed_row] = True
    prev = seed
    out = []
    for _ in range(n):
        score = drift * (x @ prev) + (1 - drift) * to_seed
        score[used] = -np.inf
        row = int(np.argmax(score))
        used[row] = True
        out.append(row)
        prev = x[row]
    return out


# -- smoothness on real music ----------------------------------------------------------------------


def _ingest_clips(folder: Path, music: list[Path] | Path) -> Any:
    from soundalike.ingest import ProcessRunner, ingest
    from soundalike.library import Library
    from soundalike.settings import load_settings

    library = Library.open(load_settings({"library": folder}), create=True)
    if not (folder / "ingested.json").is_file():
        paths = music if isinstance(music, list) else [music]
        ingest(paths, library.catalog, runner=ProcessRunner(1))
        (folder / "ingested.json").write_text("{}")
    return library


def smoothness(library: Any, seeds: int, n: int) -> dict[str, Any]:
    """Mean step distance of radios from each seed vs random order and top-n order (exact index)."""
    from soundalike.radio import mean_step_distance, radio, seed_from_track

    index = library.index(backend="exact").index
    rec = library.recommender(index)
    n = min(n, index.count // 2)
    rng = np.random.default_rng(7)
    rows = list(range(index.count))[:seeds]
    out: dict[str, list[float]] = {"radio": [], "radio_drift1": [], "random": [], "top": []}
    for row in rows:
        track = library.catalog.get(int(index.ids[row]))
        seed = seed_from_track(index, track)
        playlist = radio(index, library.catalog.get, [seed], n=n)
        vecs = np.asarray(index.vectors[[index.row_of(t.id) for t in playlist.tracks]])
        out["radio"].append(mean_step_distance(vecs))
        wander = radio(index, library.catalog.get, [seed], n=n, drift=1.0)
        out["radio_drift1"].append(mean_step_distance(np.asarray(index.vectors[[index.row_of(t.id) for t in wander.tracks]])))
        out["random"].append(float(np.mean([mean_step_distance(vecs[rng.permutation(len(vecs))]) for _ in range(20)])))
        top = rec.similar_to_track(track, k=n).results
        out["top"].append(mean_step_distance(np.asarray(index.vectors[[index.row_of(r.track.id) for r in top]])))
    return {"n": n, "seeds": len(rows), "tracks": index.count, **out}


# -- duplicates ------------------------------------------------------------------------------------


def _ffmpeg(source: Path, target: Path, *args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *args, str(target)], check=True)


def devmusic_copies(cache: Path, limit: int | None = None) -> tuple[Path, list[set[str]]]:
    """Dev-music clips plus ffmpeg copies of every 9th clip; returns the music folder and the truth."""
    clips = devmusic_clips()[:limit]
    music = cache / "radio" / f"devmusic-copies-{len(clips)}"
    groups: list[set[str]] = []
    made = music / "made.json"
    for i, clip in enumerate(clips):
        target = music / clip.parent.name / clip.name
        if not made.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(clip, target)
        if i % 9:
            continue
        stem = music / "copies" / f"{clip.parent.name}-{clip.stem}"
        group = {str(target)}
        for suffix, args in (
            (".byte" + clip.suffix, None),  # an identical file under another name
            (".192k.mp3", ("-b:a", "192k")),
            (".64k.mp3", ("-b:a", "64k")),
            (".opus", ("-c:a", "libopus", "-b:a", "64k")),
            (".silence.mp3", ("-af", "adelay=2000:all=1", "-b:a", "128k")),
        ):
            out = Path(f"{stem}{suffix}")
            if not made.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(clip, out) if args is None else _ffmpeg(clip, out, *args)
            group.add(str(out))
        groups.append(group)
    made.write_text("{}")
    return music, groups


def _pairs(groups: Any) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


def precision_recall(found: Any, truth: list[set[str]]) -> tuple[float, float, int, int]:
    reported = _pairs({t.path for t in g.tracks} for g in found.groups)
    true = _pairs(truth)
    tp = len(reported & true)
    return (tp / len(reported) if reported else 1.0), (tp / len(true) if true else 1.0), len(reported), len(true)


def duplicates_job(job: dict[str, Any]) -> dict[str, Any]:
    """A synthetic catalog with planted copies, ``bundle.build``, ``find_duplicates`` (fresh process)."""
    from soundalike.catalog import OK, TrackRecord
    from soundalike.catalog.sqlite import SQLiteCatalog
    from soundalike.copies import find_duplicates
    from soundalike.index import bundle

    n, cache = int(job["n"]), Path(job["cache"])
    raw_real, real_segments, _ = real_features(cache, job.get("real_clips"))
    folder = cache / "radio" / f"duplicates-{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    windows = WindowMaker(real_segments)
    copy_noise = 0.1 * np.concatenate(real_segments).std(axis=0)
    copies = n // 10
    originals = n - copies
    raw = synthetic_raw(LatentModel.fit(raw_real), n, seed=99 + n)
    catalog = SQLiteCatalog(folder / "catalog.sqlite")
    records = _records(raw[:originals], 0, windows)
    rng = np.random.default_rng(5)
    truth: dict[str, set[str]] = {}
    for j in range(copies):
        src = int(rng.integers(0, originals))
        base = records[src]
        assert base.segments is not None and base.segment_starts is not None
        kind = ("byte", "transcode", "silence")[j % 3]
        segs, starts, digest = base.segments, base.segment_starts, base.content_hash
        if kind != "byte":
            digest = f"{originals + j:032x}"
            segs = (segs + copy_noise * rng.standard_normal(segs.shape)).astype(np.float32)
        if kind == "silence":  # 2.5 s of silence in front: the same windows, one hop later, plus a quiet one
            quiet = (segs[:1] * 0.05).astype(np.float32)
            segs = np.concatenate([quiet, segs])[: len(segs) + 1]
            starts = (np.arange(len(segs)) * SEGMENT_HOP_S).astype(np.float32)
        path = f"/synthetic/copies/{kind}-{j:06d}.mp3"
        records.append(
            TrackRecord(
                path=path, content_hash=digest, size=base.size, mtime=base.mtime, status=OK, duration=30.0,
                tags={}, feature_version=base.feature_version, vector=base.vector if kind == "byte" else raw[originals + j],
                segments=segs, segment_starts=starts,
            )
        )  # fmt: skip
        truth.setdefault(base.path, {base.path}).add(path)
    for s in range(0, len(records), 2000):
        catalog.write(records[s : s + 2000])
    t0 = time.perf_counter()
    index = bundle.build(folder, catalog, backend="scann")
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with sample_rss() as memory:
        found = find_duplicates(index, catalog.get)
    seconds = time.perf_counter() - t0
    precision, recall, reported, true = precision_recall(found, list(truth.values()))
    catalog.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "n": n, "copies": copies, "segments": int(len(index.seg_vectors)), "build_seconds": build_s, "seconds": seconds,
        "peak": memory.peak_delta, "precision": precision, "recall": recall, "reported_pairs": reported, "true_pairs": true,
        "candidate_pairs": found.candidate_pairs, "groups": len(found.groups),
    }  # fmt: skip


# -- the section -----------------------------------------------------------------------------------


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(cache: Path, config: RadioConfig = FULL) -> Section:
    """Measure radio speed, smoothness and duplicates; see the module docstring."""
    section = Section(
        title="Radio and duplicates (issue 14)",
        intro=(
            "A 50-track radio (drift 0.5) from one seed, on one core, catalog look-ups in a real SQLite catalog "
            "included; smoothness on real music; duplicates against ffmpeg-made copies and at 10k tracks. "
            "See `benchmarks/radio.py` for how each library is made."
        ),
        raw={"config": asdict(config)},
    )
    # 1. speed
    speed = section.table(
        "Radio time by library size (one seed, n = 50, ScaNN track index)",
        ["tracks", "radio p50", "radio p95", "top-50 query p50", "radio ÷ top-50", "every-track radio (no index)",
         "index ÷ no index", "with --spread artist 3, p50", "catalog look-ups per radio"],
    )  # fmt: skip
    scale_results = []
    for n in config.sizes:
        job = {"n": n, "cache": str(cache), "radios": config.radios, "naive_radios": config.naive_radios,
               "n_tracks": config.n, "real_clips": config.real_clips}  # fmt: skip
        try:
            r = run_job(scale_job, job, fresh=config.fresh_processes)
        except Exception as exc:  # noqa: BLE001 - one size failing (memory) must not lose the others
            section.notes.append(f"{fmt_n(n)}: could not run ({type(exc).__name__}: {exc})")
            continue
        scale_results.append(r)
        p50, top50, naive = _p(r["radio"], 50), _p(r["top"], 50), _p(r["naive"], 50)
        speed.add(
            fmt_n(n), fmt_s(p50), fmt_s(_p(r["radio"], 95)), fmt_s(top50), f"{p50 / top50:.0f}×",
            fmt_s(naive), f"{naive / p50:.1f}× faster", fmt_s(_p(r["spread"], 50)), f"{statistics.median(r['lookups']):.0f}",
        )  # fmt: skip
        bar = {100_000: 1.0, 1_000_000: 3.0}.get(n)
        if bar is not None:
            section.targets.append(Target(f"50-track radio on {fmt_n(n)} tracks ≤ {bar:g} s p50 (one core)", fmt_s(p50), p50 <= bar))
    section.raw["scale"] = scale_results
    measured = {r["n"] for r in scale_results}
    for n, bar in ((100_000, 1.0), (1_000_000, 3.0)):
        if n not in measured:
            section.targets.append(Target(f"50-track radio on {fmt_n(n)} tracks ≤ {bar:g} s p50 (one core)", "not measured", None))

    # 2. smoothness
    smooth = section.table(
        "Smoothness: mean distance between consecutive tracks (lower is smoother), mean over seeds",
        ["library", "tracks", "seeds", "n", "radio (drift 0.5)", "same tracks, random order", "top-n of the seed, rank order",
         "radio (drift 1)", "seeds where radio < both"],
    )  # fmt: skip
    libraries: list[tuple[str, Any]] = []
    clips = devmusic_clips()[: config.clips]
    if clips:
        libraries.append(("dev-music (30-s clips)", _ingest_clips(cache / "radio" / f"devmusic-library-{len(clips)}", clips)))
    corpus = cache / "radio" / "devcorpus-library"
    if (corpus / "index.json").is_file():  # written when `soundalike ingest` has finished
        from soundalike.library import Library
        from soundalike.settings import load_settings

        libraries.append(("dev-corpus (whole tracks)", Library.open(load_settings({"library": corpus}))))
    else:
        section.notes.append("dev-corpus: not ingested into the cache (`soundalike --library benchmarks/.cache/radio/devcorpus-library ingest /tmp/soundalike-dev-corpus/library`), so not measured")
    smooth_raw = {}
    for name, library in libraries:
        s = smoothness(library, config.smooth_seeds, config.n)
        smooth_raw[name] = s
        wins = sum(r < min(a, b) for r, a, b in zip(s["radio"], s["random"], s["top"], strict=True))
        smooth.add(
            name, s["tracks"], s["seeds"], s["n"], f"{np.mean(s['radio']):.3f}", f"{np.mean(s['random']):.3f}",
            f"{np.mean(s['top']):.3f}", f"{np.mean(s['radio_drift1']):.3f}", f"{wins} / {s['seeds']}",
        )  # fmt: skip
        section.targets.append(
            Target(
                f"radio smoother than random order and than top-n ({name})",
                f"{np.mean(s['radio']):.3f} vs {np.mean(s['random']):.3f} and {np.mean(s['top']):.3f}",
                bool(np.mean(s["radio"]) < min(np.mean(s["random"]), np.mean(s["top"]))),
            )
        )
    section.raw["smoothness"] = smooth_raw
    if not libraries:  # no real music beside the checkout: say so instead of an empty table
        smooth.add("(no dev-music beside this checkout: not measured)", "–", "–", "–", "–", "–", "–", "–", "–")

    # 3. duplicates
    dup = section.table(
        "Duplicates", ["library", "tracks", "true pairs", "reported pairs", "precision", "recall", "time"],
    )  # fmt: skip
    if clips and shutil.which("ffmpeg") is None:
        section.notes.append("dev-music + ffmpeg copies: not measured (no `ffmpeg` command on this machine)")
    elif clips:
        from soundalike.copies import find_duplicates

        music, truth = devmusic_copies(cache, config.clips)
        library = _ingest_clips(cache / "radio" / f"devmusic-copies-library-{len(clips)}", music)
        index = library.index(backend="scann").index
        t0 = time.perf_counter()
        found = find_duplicates(index, library.catalog.get)
        seconds = time.perf_counter() - t0
        precision, recall, reported, true = precision_recall(found, truth)
        dup.add(
            "dev-music + ffmpeg copies of every 9th clip (byte, MP3 192k/64k, Opus, +2 s silence)", index.count, true,
            reported, f"{precision:.3f}", f"{recall:.3f}", fmt_s(seconds),
        )  # fmt: skip
        section.raw["duplicates_devmusic"] = {"precision": precision, "recall": recall, "seconds": seconds, "tracks": index.count}
    d = run_job(
        duplicates_job, {"n": config.duplicates_tracks, "cache": str(cache), "real_clips": config.real_clips},
        fresh=config.fresh_processes,
    )  # fmt: skip
    section.raw["duplicates_scale"] = d
    dup.add(
        f"synthetic, {fmt_n(d['n'])} tracks ({d['segments']:,} windows), {d['copies']} planted copies", d["n"],
        d["true_pairs"], d["reported_pairs"], f"{d['precision']:.3f}", f"{d['recall']:.3f}", fmt_s(d["seconds"]),
    )  # fmt: skip
    section.notes.append(
        f"Duplicates at {fmt_n(d['n'])}: {d['candidate_pairs']} candidate pairs aligned; the index build before it "
        f"(`bundle.build`, track and segment indexes) took {fmt_s(d['build_seconds'])}."
    )
    if d["n"] == 10_000:
        section.targets.append(Target("duplicates on 10k tracks ≤ 60 s", fmt_s(d["seconds"]), d["seconds"] <= 60))
    return section
