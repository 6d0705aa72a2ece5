"""Load: 8 concurrent clients, 400 requests mixing uploads and track-similarity calls, over HTTP.

The library is the end-to-end benchmark's (:func:`benchmarks.endtoend.library`): 2,000 catalog
records with feature vectors shaped like real music, indexed by ``bundle.build`` exactly as an
ingest indexes. The server is ``soundalike serve`` (waitress, 4 request threads) in its own process.

The requests are drawn once from a seeded generator, so every run sends the same sequence: a
quarter are uploads (``POST /api/recommend`` of a real 30-second MP3 clip, rotated), the rest are
``GET /api/tracks/<id>/similar`` for random catalog tracks, a third of those by one aspect. Eight
client threads take requests from one queue until it is empty. Every answer is checked (HTTP 200,
``k`` results, never the query track itself); anything else, including a connection error or a
timeout, is an error. The run is bounded: each request may take at most ``request_timeout``
seconds and the whole run ``deadline`` seconds, after which the remaining requests are counted
as errors.

``python -m benchmarks --only load`` writes ``benchmarks/results/load.md``; the hardening test
``tests/hardening/test_load.py`` runs the same load in ``make test`` and asserts 0 errors.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Section, Target, fmt_n, fmt_s
from benchmarks.endtoend import K, Server, library, upload_files

ASPECTS = ("timbre", "rhythm", "harmony")


@dataclass(frozen=True)
class LoadConfig:
    tracks: int = 2_000
    clients: int = 8
    requests: int = 400
    upload_share: float = 0.25
    threads: int = 4
    request_timeout: float = 60.0
    deadline: float = 600.0
    seed: int = 7


FULL = LoadConfig()


@dataclass(frozen=True)
class Call:
    """One request of the plan: an upload (``clip`` is an index into the uploads) or a track query."""

    kind: str  # "upload" or "similar"
    track_id: int = 0
    aspect: str | None = None
    clip: int = 0


@dataclass
class Outcome:
    kind: str
    seconds: float
    error: str | None = None


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    wall: float = 0.0

    def seconds(self, kind: str | None = None) -> list[float]:
        return [o.seconds for o in self.outcomes if kind is None or o.kind == kind]

    def errors(self, kind: str | None = None) -> list[str]:
        return [f"{o.kind}: {o.error}" for o in self.outcomes if o.error and (kind is None or o.kind == kind)]


def plan(track_ids: list[int], n_clips: int, config: LoadConfig) -> list[Call]:
    """The request sequence: reproducible for a seed, uploads spread through it."""
    rng = np.random.default_rng(config.seed)
    calls = []
    for i in range(config.requests):
        if rng.random() < config.upload_share:
            calls.append(Call("upload", clip=i % n_clips))
        else:
            aspect = str(rng.choice(ASPECTS)) if rng.random() < 1 / 3 else None
            calls.append(Call("similar", track_id=int(rng.choice(track_ids)), aspect=aspect))
    return calls


def _check(reply: Any, call: Call) -> str | None:
    if reply.status_code != 200:
        return f"HTTP {reply.status_code}: {reply.text[:200]}"
    results = reply.json().get("results", [])
    if len(results) != K:
        return f"{len(results)} results instead of {K}"
    if call.kind == "similar" and any(r["track_id"] == call.track_id for r in results):
        return f"track {call.track_id} recommended for itself"
    return None


def _send(session: Any, url: str, call: Call, uploads: list[tuple[str, bytes]], timeout: float) -> Outcome:
    started = time.perf_counter()
    try:
        if call.kind == "upload":
            name, data = uploads[call.clip]
            reply = session.post(url + "/api/recommend", files={"file": (name, data)}, data={"k": str(K)}, timeout=timeout)
        else:
            params: dict[str, Any] = {"k": K}
            if call.aspect:
                params["aspect"] = call.aspect
            reply = session.get(f"{url}/api/tracks/{call.track_id}/similar", params=params, timeout=timeout)
        error = _check(reply, call)
    except Exception as exc:  # a failed request is counted, not fatal
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return Outcome(call.kind, time.perf_counter() - started, error)


def run_load(url: str, calls: list[Call], uploads: list[tuple[str, bytes]], config: LoadConfig) -> LoadResult:
    """Send ``calls`` from ``config.clients`` threads sharing one queue; every call gets an outcome."""
    import requests

    todo: queue.SimpleQueue[Call] = queue.SimpleQueue()
    for call in calls:
        todo.put(call)
    result = LoadResult()
    lock = threading.Lock()
    stop_at = time.monotonic() + config.deadline

    def client() -> None:
        with requests.Session() as session:
            while True:
                try:
                    call = todo.get_nowait()
                except queue.Empty:
                    return
                if time.monotonic() > stop_at:
                    outcome = Outcome(call.kind, 0.0, f"not sent: the run's {config.deadline:.0f} s deadline passed")
                else:
                    outcome = _send(session, url, call, uploads, config.request_timeout)
                with lock:
                    result.outcomes.append(outcome)

    started = time.perf_counter()
    workers = [threading.Thread(target=client, name=f"load-client-{c}") for c in range(config.clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    result.wall = time.perf_counter() - started
    return result


def catalog_ids(folder: Path) -> list[int]:
    """Ids of the analysed tracks of the library in ``folder``."""
    from soundalike.catalog.sqlite import SQLiteCatalog

    catalog = SQLiteCatalog(folder / "catalog.sqlite", create=False)
    try:
        return [t.id for t in catalog.tracks()]
    finally:
        catalog.close()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(result: LoadResult, made: dict[str, Any], config: LoadConfig, n_clips: int) -> Section:
    """The results section: latency percentiles by kind of request, throughput, errors."""
    section = Section(
        title="Load: concurrent clients mixing uploads and track-similarity calls",
        intro=(
            f"A {fmt_n(made['tracks'])}-track library ({made['segments']:,} segments, {made['backend']} index) "
            f"served by `soundalike serve` (waitress, {config.threads} threads) on loopback; {config.clients} "
            f"client threads send {config.requests} requests from one queue, a seeded mix of about "
            f"{config.upload_share:.0%} uploads (`POST /api/recommend`, {n_clips} real 30-second MP3 clips in turn) "
            f"and track-similarity calls (`GET /api/tracks/<id>/similar`, k = {K}, a third by one aspect). "
            "Every answer checked: HTTP 200, k results, never the query track. Clients and server share the "
            "machine's cores."
        ),
        raw={"config": asdict(config), "library": made, "wall": result.wall,
             "outcomes": [asdict(o) for o in result.outcomes]},  # fmt: skip
    )
    table = section.table(
        "Latency from request to checked answer", ["requests", "count", "p50", "p95", "p99", "max", "errors"]
    )
    for label, kind in (("uploads", "upload"), ("track similarity", "similar"), ("**all**", None)):
        seconds = result.seconds(kind)
        table.add(
            label, len(seconds), fmt_s(_pct(seconds, 50)), fmt_s(_pct(seconds, 95)), fmt_s(_pct(seconds, 99)),
            fmt_s(max(seconds)) if seconds else "–", len(result.errors(kind)),
        )  # fmt: skip
    errors = result.errors()
    section.notes.append(
        f"{len(result.outcomes)} requests in {fmt_s(result.wall)}: {len(result.outcomes) / result.wall:.1f} requests/s."
    )
    if errors:
        section.notes.append("Errors: " + "; ".join(sorted(set(errors))[:5]))
    section.targets.append(
        Target(
            f"load: {config.clients} clients, {config.requests} mixed requests, {fmt_n(made['tracks'])} tracks, errors = 0",
            f"{len(errors)} errors; p50 {fmt_s(_pct(result.seconds(), 50))}, p95 {fmt_s(_pct(result.seconds(), 95))}, "
            f"p99 {fmt_s(_pct(result.seconds(), 99))}",
            not errors and len(result.outcomes) == config.requests,
        )
    )
    return section


def run(cache: Path, config: LoadConfig = FULL, *, fresh: bool = True) -> Section:
    """Build (or reuse) the library, serve it, send the load; see the module docstring."""
    folder, made = library(cache, config.tracks, fresh=fresh)
    uploads = [(f.name, f.read_bytes()) for f in upload_files(cache)]
    calls = plan(catalog_ids(folder), len(uploads), config)
    with Server(folder, "--threads", str(config.threads)) as server:
        result = run_load(server.url, calls, uploads, config)
    return report(result, made, config, len(uploads))
