"""End to end: ``POST /api/recommend`` of a 30-second MP3 on a 10k-track library, over HTTP.

The library is synthetic where that costs nothing in realism for this measurement: its 10,000
catalog records are written directly through :meth:`SQLiteCatalog.write`, with track vectors from
the latent model of :mod:`benchmarks.search` (shaped like real features) and segment vectors made
from a real clip's windows plus noise; their paths name no real file (the audio endpoint is not
measured). The index is then built and published by :func:`soundalike.index.bundle.build` with
the default backend, exactly as ``soundalike ingest`` does. The server is the real thing:
``soundalike serve`` (waitress, 4 request threads) in its own process, BLAS on one thread.

The uploads are real 30-second dev-music MP3 clips (44.1 kHz stereo, 128 kbit/s), rotated so that
no two consecutive requests send the same bytes. Each answer is checked: HTTP 200 and ``k`` results.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from benchmarks.common import (
    LatentModel,
    Section,
    Target,
    devmusic_clips,
    dir_size,
    fmt_bytes,
    fmt_n,
    fmt_s,
    real_features,
    run_job,
    sample_rss,
    synthetic_raw,
)

K = 10
SEGMENT_HOP_S = 2.5


@dataclass(frozen=True)
class EndToEndConfig:
    tracks: int = 10_000
    sequential: int = 50
    clients: int = 8
    per_client: int = 8
    in_process: int = 20
    threads: int = 4
    real_clips: int | None = None
    """Real clips whose features shape the synthetic library (None: all)."""
    fresh_processes: bool = True
    """Build the library in new processes (their own memory figures); False only for smoke tests."""


FULL = EndToEndConfig()
QUICK = EndToEndConfig(sequential=12, per_client=2, in_process=5)


# -- the library ---------------------------------------------------------------------------------


def make_library(job: dict[str, Any]) -> dict[str, Any]:
    """Write ``job["tracks"]`` synthetic records into a new catalog (run in a fresh process)."""
    from soundalike.catalog import OK, TrackRecord
    from soundalike.catalog.sqlite import SQLiteCatalog
    from soundalike.features import FEATURE_VERSION

    folder, n = Path(job["folder"]), int(job["tracks"])
    raw_real, real_segments, _ = real_features(Path(job["cache"]), job.get("real_clips"))
    rng = np.random.default_rng(20261122)
    vectors = synthetic_raw(LatentModel.fit(raw_real), n, seed=11)
    all_segments = np.concatenate(real_segments)
    seg_noise = 0.5 * all_segments.std(axis=0)
    catalog = SQLiteCatalog(folder / "catalog.sqlite")
    started = time.perf_counter()
    batch: list[TrackRecord] = []
    for i in range(n):
        base = real_segments[int(rng.integers(0, len(real_segments)))]
        segments = (base + seg_noise * rng.standard_normal(base.shape)).astype(np.float32)
        artist = i // 20
        batch.append(
            TrackRecord(
                path=f"/synthetic/artist-{artist:05d}/track-{i:06d}.mp3",
                content_hash=f"{rng.integers(0, 2**63):016x}{i:016x}",
                size=480_000,
                mtime=1.7e9,
                status=OK,
                duration=30.0,
                tags={"title": f"Synthetic track {i}", "artist": f"Synthetic artist {artist}", "genre": "synthetic"},
                feature_version=FEATURE_VERSION,
                vector=vectors[i],
                segments=segments,
                segment_starts=(np.arange(len(segments)) * SEGMENT_HOP_S).astype(np.float32),
            )
        )
        if len(batch) == 500:
            catalog.write(batch)
            batch = []
    catalog.write(batch)
    catalog.close()
    return {"write_seconds": time.perf_counter() - started}


def build_library_index(job: dict[str, Any]) -> dict[str, Any]:
    """Build and publish the index with ``bundle.build`` (run in a fresh process: its peak is the build's)."""
    from soundalike.catalog.sqlite import SQLiteCatalog
    from soundalike.index import bundle

    folder = Path(job["folder"])
    catalog = SQLiteCatalog(folder / "catalog.sqlite", create=False)
    import scann  # noqa: F401  (imported before the baseline so the library's own size is not counted)

    # Sampled, not ``ru_maxrss``: a spawned process can start with its parent's high-water mark
    # (2026-12-02: a 10k build reported the 3.6 GB its parent had reached).
    started = time.perf_counter()
    with sample_rss() as memory:
        index = bundle.build(folder, catalog, backend="scann")
    out = {
        "tracks": index.count,
        "segments": int(len(index.seg_vectors)),
        "backend": index.backend,
        "build_seconds": time.perf_counter() - started,
        "build_peak_bytes": memory.peak_delta,
        "catalog_bytes": (folder / "catalog.sqlite").stat().st_size,
        "index_bytes": dir_size(index.directory),
    }
    catalog.close()
    return out


def library(
    cache: Path, tracks: int, *, real_clips: int | None = None, fresh: bool = True
) -> tuple[Path, dict[str, Any]]:
    """A library of ``tracks`` synthetic records with a freshly built index.

    The catalog is written once and reused (remade if the features changed); the index is built
    again on every call, so its time and memory are measured in this run.
    """
    import shutil

    from soundalike.features import FEATURE_VERSION, segment_layout, track_layout

    folder = cache / f"library-{tracks}"
    marker = folder / "benchmark.json"
    key = {
        "tracks": tracks, "real_clips": real_clips, "feature_version": FEATURE_VERSION,
        "dim": track_layout().dim, "segment_dim": segment_layout().dim,
    }  # fmt: skip
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    if saved.get("key") == key:
        made = dict(saved["made"])
    else:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        job = {"folder": str(folder), "tracks": tracks, "cache": str(cache), "real_clips": real_clips}
        made = run_job(make_library, job, fresh=fresh)
        marker.write_text(json.dumps({"key": key, "made": made}))
    made.update(run_job(build_library_index, {"folder": str(folder)}, fresh=fresh))
    return folder, made


def upload_files(cache: Path, n: int = 10) -> list[Path]:
    """Real 30-second MP3 clips (or synthesised ones when dev-music is absent)."""
    clips = [c for c in devmusic_clips() if c.suffix == ".mp3"][:n]
    if clips:
        return clips
    from benchmarks.analysis import clip_files

    return clip_files(cache, n)[0]


# -- the server ----------------------------------------------------------------------------------


class Server:
    """``soundalike serve`` on a free loopback port, in its own process, its output in a log file.

    Used by the benchmarks and by the hardening tests (``tests/hardening``). ``args`` go to
    ``serve`` after ``--port 0``; without ``log`` the output goes to a temporary file that is
    deleted when the server is closed.
    """

    def __init__(self, library: Path, *args: str, log: Path | None = None, start_timeout: float = 180.0) -> None:
        self._own_log = log is None
        self.log = log or Path(tempfile.mkstemp(prefix="bench-serve-", suffix=".log")[1])
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "soundalike.cli", "--library", str(library), "serve", "--port", "0", *args],
                stdout=out, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "GLOG_minloglevel": "2", "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        try:
            self.url = self._wait_for_url(start_timeout)
        except BaseException:
            self.close()
            raise
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", int(parts.port or 80)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if line.startswith("serving ") and " at " in line:
                    return line.split(" at ", 1)[1].split()[0].rstrip("/")
            if self.proc.poll() is not None:
                raise RuntimeError(f"soundalike serve exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)  # polling the log for the line the server prints once it listens
        raise RuntimeError(f"soundalike serve did not start within {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> str:
        """Stop the server as a service manager would (SIGTERM); return its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text()

    def close(self) -> None:
        self.stop()
        if self._own_log:
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def post(session: Any, url: str, name: str, data: bytes) -> tuple[float, str | None]:
    """One upload; returns (seconds, error or None)."""
    started = time.perf_counter()
    try:
        response = session.post(url + "/api/recommend", files={"file": (name, data)}, data={"k": str(K)}, timeout=300)
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            return seconds, f"HTTP {response.status_code}: {response.text[:200]}"
        results = response.json().get("results", [])
        if len(results) != K:
            return seconds, f"{len(results)} results instead of {K}"
        return seconds, None
    except Exception as exc:  # a failed request is counted, not fatal
        return time.perf_counter() - started, f"{type(exc).__name__}: {exc}"


def http_load(url: str, uploads: list[tuple[str, bytes]], config: EndToEndConfig) -> dict[str, Any]:
    """Sequential requests, then ``clients`` concurrent clients."""
    import requests

    with requests.Session() as session:
        post(session, url, *uploads[0])  # the first request warms up the server's caches
        sequential = [post(session, url, *uploads[i % len(uploads)]) for i in range(config.sequential)]

    lock = threading.Lock()
    concurrent: list[tuple[float, str | None]] = []

    def client(c: int) -> None:
        with requests.Session() as s:
            for j in range(config.per_client):
                result = post(s, url, *uploads[(c * config.per_client + j) % len(uploads)])
                with lock:
                    concurrent.append(result)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=config.clients) as pool:
        list(pool.map(client, range(config.clients)))
    wall = time.perf_counter() - started
    return {"sequential": sequential, "concurrent": concurrent, "concurrent_wall": wall}


def in_process(folder: Path, uploads: list[tuple[str, bytes]], runs: int) -> dict[str, list[float]]:
    """The same query without HTTP, split into decode, features and the rest (search, ranking)."""
    from soundalike.audio import decode
    from soundalike.catalog.sqlite import SQLiteCatalog
    from soundalike.features import extract_query
    from soundalike.index import bundle
    from soundalike.recommend import Recommender

    catalog = SQLiteCatalog(folder / "catalog.sqlite", create=False)
    try:
        rec = Recommender(catalog, bundle.load(folder, catalog=catalog))
        rec.similar_to_file(uploads[0][1], k=K)  # warm-up
        out: dict[str, list[float]] = {"decode": [], "features": [], "total": []}
        for i in range(runs):
            name, data = uploads[i % len(uploads)]
            t0 = time.perf_counter()
            audio = decode(data, name=name)
            t1 = time.perf_counter()
            extract_query(audio.samples, sample_rate=audio.sample_rate, style=rec.style)
            t2 = time.perf_counter()
            rec.similar_to_file(data, k=K, name=name)
            t3 = time.perf_counter()
            out["decode"].append(t1 - t0)
            out["features"].append(t2 - t1)
            out["total"].append(t3 - t2)
    finally:
        catalog.close()
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(cache: Path, config: EndToEndConfig = FULL) -> Section:
    """Measure upload-to-answer time; see the module docstring."""
    folder, made = library(cache, config.tracks, real_clips=config.real_clips, fresh=config.fresh_processes)
    files = upload_files(cache)
    uploads = [(f.name, f.read_bytes()) for f in files]
    local = in_process(folder, uploads, config.in_process)
    with Server(folder, "--threads", str(config.threads)) as server:
        load = http_load(server.url, uploads, config)

    seq = [s for s, _ in load["sequential"]]
    seq_errors = [e for _, e in load["sequential"] if e]
    conc = [s for s, _ in load["concurrent"]]
    conc_errors = [e for _, e in load["concurrent"] if e]
    rps = len(conc) / load["concurrent_wall"]
    section = Section(
        title="4. End to end: upload → recommendations over HTTP",
        intro=(
            f"A {fmt_n(made['tracks'])}-track library ({made['segments']:,} segments) with synthetic feature vectors "
            "written straight into the SQLite catalog, indexed by `bundle.build` (default backend: "
            f"{made['backend']}); `soundalike serve` (waitress, {config.threads} threads) on loopback; uploads of "
            f"{len(files)} real 30-second MP3 clips in turn (`POST /api/recommend`, k = {K}), each answer checked "
            "(HTTP 200, k results). Client and server share the machine's two cores."
        ),
        raw={"library": made, "sequential": load["sequential"], "concurrent": load["concurrent"],
             "concurrent_wall": load["concurrent_wall"], "in_process": local, "config": asdict(config)},  # fmt: skip
    )
    table = section.table("Time from upload to JSON answer", ["how", "requests", "p50", "p95", "requests/s", "errors"])
    table.add(
        "one client, one request at a time", len(seq), fmt_s(_pct(seq, 50)), fmt_s(_pct(seq, 95)),
        f"{len(seq) / sum(seq):.2f}" if seq else "–", len(seq_errors),
    )  # fmt: skip
    table.add(
        f"{config.clients} concurrent clients", len(conc), fmt_s(_pct(conc, 50)), fmt_s(_pct(conc, 95)),
        f"{rps:.2f}", len(conc_errors),
    )  # fmt: skip
    parts = section.table(
        "Where the time goes (the same query in-process, no HTTP; median of "
        f"{config.in_process})",
        ["part", "median"],
    )
    decode_s, features_s, total_s = (statistics.median(local[k]) for k in ("decode", "features", "total"))
    parts.add("decode the upload (MP3 → 22,050 Hz mono)", fmt_s(decode_s))
    parts.add("features, with query segments every 0.5 s", fmt_s(features_s))
    parts.add("search and ranking (track index, segment index, re-ranking, catalog look-ups)", fmt_s(max(0.0, total_s - decode_s - features_s)))
    parts.add("**`Recommender.similar_to_file` in all**", fmt_s(total_s))
    parts.add("HTTP, upload parsing and JSON (p50 over HTTP minus the above)", fmt_s(max(0.0, _pct(seq, 50) - total_s)))
    section.notes.append(
        f"That library's index, built in this run by `bundle.build` (track and segment indexes): "
        f"{fmt_s(made['build_seconds'])}, peak RSS growth {fmt_bytes(made['build_peak_bytes'])}; catalog file "
        f"{fmt_bytes(made['catalog_bytes'])} (writing its records took {fmt_s(made['write_seconds'])} when it was made)."
    )
    for errors in (seq_errors, conc_errors):
        if errors:
            section.notes.append("Errors: " + "; ".join(sorted(set(errors))[:5]))
    p50 = _pct(seq, 50)
    section.targets += [
        Target("end to end: p50 from upload to JSON under 0.3 s (10k tracks)", f"p50 {fmt_s(p50)}, p95 {fmt_s(_pct(seq, 95))}", p50 < 0.3),
        Target(
            f"end to end: {config.clients} concurrent clients, errors = 0",
            f"{rps:.2f} requests/s, {len(conc_errors)} errors in {len(conc)} requests",
            not conc_errors,
        ),
    ]
    return section
