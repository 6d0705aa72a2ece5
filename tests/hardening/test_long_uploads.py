"""Eight parallel uploads of a 30-minute Opus file against a real `soundalike serve` (issue 11);
and a library track that long, whose picture must be drawn from no more than the analysed duration.

A 1.1 MB Opus file of 29.5 minutes used to cost 1.4 GB of server memory; eight at once took the
server to 5.5 GB and ``/api/health`` to 39 s. The issue states the bar this test holds the server
to: every answer 200, 413, 422 or 503, ``/api/health`` never slower than 1 s, and the server's peak
RSS (sampled over its process tree) under 1.5 GB. The figures measured are printed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil
import pytest
import requests
from benchmarks.endtoend import Server

from soundalike import synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.web import create_app, pictures

from ..web.conftest import LiveServer
from .conftest import copy_catalog, serve_copy

UPLOADS = 8
LONG_S = 29.5 * 60  # as the file: under the 30-minute max_duration, so all of it would be decoded
HEALTH_BOUND_S = 1.0
RSS_BOUND = 1.5 * 1024**3
ALLOWED = {200, 413, 422, 503}


def write_long_opus(path: Path, *, seconds: float, spec: synth.TrackSpec, bitrate: int = 8_000, rate: int = 16_000) -> Path:
    """A mono Ogg Opus file of ``seconds``: a synthetic track, over and over at changing levels.

    Written through libopus (PyAV) a 20-s block at a time, so the test never holds the whole signal;
    the fastest encoder settings keep 30 minutes to seconds of encoding.
    """
    y = synth.render(spec, sample_rate=rate).astype(np.float32)
    total, done, repeat = int(seconds * rate), 0, 0
    with av.open(str(path), "w", format="ogg") as out:
        stream: Any = out.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = bitrate
        stream.options = {"compression_level": "0", "frame_duration": "60", "application": "audio"}
        while done < total:
            block = y[: min(len(y), total - done)] * (0.5 + 0.1 * (repeat % 5))
            frame = av.AudioFrame.from_ndarray(block[np.newaxis, :], format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
            done, repeat = done + len(block), repeat + 1
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def long_opus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 minutes of music as Opus at 8 kbit/s (about 1.9 MB)."""
    spec = synth.TrackSpec(instrument="pluck", groove="backbeat", key="C", duration=20.0, seed=3)
    path = write_long_opus(tmp_path_factory.mktemp("long-opus") / "long.opus", seconds=LONG_S, spec=spec)
    with av.open(str(path)) as container:
        assert float(container.duration or 0) / av.time_base == pytest.approx(LONG_S, abs=1.0)
    return path


@pytest.fixture(scope="module")
def long_opus(long_opus_file: Path) -> bytes:
    return long_opus_file.read_bytes()


@pytest.fixture(scope="module")
def served(synth_library: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`soundalike serve` with its default upload settings, on a copy of the synthetic library."""
    with serve_copy(synth_library.catalog.path, tmp_path_factory.mktemp("long-uploads-library"), "--threads", "4") as server:
        yield server


class Sampler:
    """Samples in a thread until stopped: the server tree's RSS and ``/api/health``'s latency."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.process = psutil.Process(server.proc.pid)
        self.peak_rss = 0
        self.health: list[float] = []
        self.health_errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rss), threading.Thread(target=self._health)]

    def _rss(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in tree))
            except psutil.NoSuchProcess:
                return
            self._stop.wait(0.02)  # sampling interval

    def _health(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    reply = session.get(self.server.url + "/api/health", timeout=30)
                    if reply.status_code != 200:
                        self.health_errors.append(f"HTTP {reply.status_code}")
                except requests.RequestException as exc:
                    self.health_errors.append(type(exc).__name__)
                self.health.append(time.perf_counter() - started)
                self._stop.wait(0.05)  # sampling interval

    def __enter__(self) -> Sampler:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def test_eight_parallel_thirty_minute_opus_uploads_keep_the_server_within_bounds(served: Server, long_opus: bytes) -> None:
    baseline = psutil.Process(served.proc.pid).memory_info().rss

    def upload(n: int) -> tuple[int, float, dict[str, Any]]:
        started = time.perf_counter()
        reply = requests.post(
            served.url + "/api/recommend", files={"file": (f"long-{n}.opus", long_opus)}, data={"k": "5"}, timeout=300
        )
        body = reply.json() if reply.headers.get("Content-Type", "").startswith("application/json") else {}
        return reply.status_code, time.perf_counter() - started, body

    started = time.perf_counter()
    with Sampler(served) as sampler, ThreadPoolExecutor(UPLOADS) as pool:
        answers = list(pool.map(upload, range(UPLOADS)))
    wall = time.perf_counter() - started

    statuses = sorted(status for status, _, _ in answers)
    worst_health = max(sampler.health)
    print(
        f"\n{UPLOADS} uploads of {len(long_opus) / 1e6:.2f} MB ({LONG_S / 60:g} min Opus) in {wall:.1f} s: "
        f"statuses {statuses}, upload seconds {[round(s, 1) for _, s, _ in answers]}; "
        f"/api/health {len(sampler.health)} requests, max {worst_health * 1000:.0f} ms, "
        f"median {np.median(sampler.health) * 1000:.0f} ms; server RSS {baseline / 2**20:.0f} MB before, "
        f"peak {sampler.peak_rss / 2**20:.0f} MB"
    )
    assert set(statuses) <= ALLOWED, answers
    assert 200 in statuses, "no upload was analysed at all"
    for status, _, body in answers:
        if status == 200:
            assert body["query"]["truncated_to_s"] == 600.0 and len(body["results"]) == 5
    assert not sampler.health_errors, sampler.health_errors
    assert worst_health < HEALTH_BOUND_S, f"/api/health took {worst_health:.2f} s"
    assert sampler.peak_rss < RSS_BOUND, f"server peak RSS {sampler.peak_rss / 2**20:.0f} MB"


def test_a_long_library_tracks_picture_is_drawn_from_the_analysed_duration_only(
    synth_library: Any, long_opus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    analysed_s = 60.0
    library = tmp_path / "library"
    copy_catalog(synth_library.catalog.path, library / "catalog.sqlite")
    with sqlite3.connect(library / "catalog.sqlite") as db:  # track 1's file is now 30 minutes long
        db.execute("UPDATE tracks SET path = ?, path_text = ? WHERE id = 1", (bytes(long_opus_file), str(long_opus_file)))
    drawn: list[float] = []
    draw = pictures.feature_picture

    def spy(samples: np.ndarray, sample_rate: int, **kw: Any) -> bytes:
        drawn.append(len(samples) / sample_rate)
        return draw(samples, sample_rate, **kw)

    monkeypatch.setattr(pictures, "feature_picture", spy)
    app = create_app(
        {
            "SOUNDALIKE_LIBRARY": library,
            "SOUNDALIKE_CATALOG": SQLiteCatalog(library / "catalog.sqlite"),
            "SOUNDALIKE_INDEX": None,
            "SOUNDALIKE_UPLOAD_ANALYSED_S": analysed_s,
        }
    )
    with LiveServer(app) as live:
        reply = requests.get(live.url + "/tracks/1/picture.png", timeout=120)
    assert reply.status_code == 200 and reply.content.startswith(b"\x89PNG")
    assert drawn == [pytest.approx(analysed_s, abs=0.1)]
