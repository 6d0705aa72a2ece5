"""Readers and writers together: `soundalike serve` answers every request while ingests grow its library.

A real ``soundalike serve`` process serves a library of synthetic tracks while real ``soundalike
ingest`` processes add more, round after round (two files per committed batch, then an index
rebuild each). Client threads keep asking for health, the catalog listing, neighbours of a track,
recommendations for an uploaded clip and track audio the whole time. Afterwards every answer is
checked against the indexes that were actually published:

* every request was answered ``200`` (no refused connection, no 5xx, no 503 "locked");
* each ``health`` answer names one published index whole (its build time, track count, segment
  count and catalog revision belong to the same index) and a catalog at least that large;
* each ``similar`` and ``recommend`` answer equals, result for result, what one published index
  gives for that query (recomputed here from a copy of that index), so no answer mixes two
  generations;
* nothing goes back in time: an answer that began after another ended comes from the same index
  or a newer one, and the catalog listing never shrinks nor lacks a track of an index already seen;
* the server switches to each newly published index (polled with a deadline), and at the end it
  serves exactly what ``soundalike index`` builds from the final catalog; ``soundalike check`` passes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from benchmarks.endtoend import Server

from soundalike import audio, synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.index import bundle
from soundalike.index.bundle import LibraryIndex
from soundalike.recommend import Recommender

from .conftest import cli_env, copy_catalog, describe, wait_for

SR = 22050
TOLERANCE = 1e-5
"""Largest difference between a served and a recomputed similarity (both are rounded to 1e-6)."""
OPERATIONS = {"health": 0.2, "tracks": 0.15, "similar": 0.35, "audio": 0.2, "recommend": 0.1}
"""The request mix of every client thread (probabilities)."""
KS = (3, 5, 10)


@dataclass(frozen=True)
class Plan:
    """How big a run is: tracks at the start, tracks added per ingest round, clients."""

    initial: int
    per_round: int
    rounds: int
    clients: int
    duration: float
    keys: tuple[str, ...]
    workers: int = 1
    seed: int = 5


@dataclass(frozen=True)
class Generation:
    """One published index, identified by its manifest, with a private copy to recompute answers."""

    number: int
    built_at: float
    count: int
    segments: int
    revision: int
    ids: frozenset[int]
    snapshot: Path


@dataclass
class Answer:
    """One request a client made and what came back (parsed JSON, or the audio's length and hash)."""

    client: int
    kind: str
    target: str
    started: float
    ended: float
    params: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    error: str | None = None
    body: Any = None
    possible: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"client {self.client} {self.kind} {self.target}"

    def describe(self) -> str:
        """The request and, unless it was answered 200, what went wrong."""
        if self.error is None and self.status == 200:
            return self.label
        return f"{self.label}: {self.error or f'HTTP {self.status} {str(self.body)[:200]}'}"


# -- the run ---------------------------------------------------------------------------------------


def write_rounds(root: Path, plan: Plan) -> list[Path]:
    """Synthesise the library: folder 0 is ingested before serving, folders 1… during it."""
    specs = synth.library_specs(keys=plan.keys, duration=plan.duration, seed=plan.seed)
    needed = plan.initial + plan.rounds * plan.per_round
    assert len(specs) >= needed, f"the design has {len(specs)} tracks, the plan needs {needed}"
    order = np.random.default_rng(plan.seed).permutation(len(specs))[:needed]
    folders = []
    start = 0
    for r, size in enumerate([plan.initial] + [plan.per_round] * plan.rounds):
        folder = root / f"round-{r}"
        synth.write_library(folder, [specs[i] for i in order[start : start + size]])
        (folder / "labels.csv").unlink()  # only audio in the folders the ingests walk
        folders.append(folder)
        start += size
    return folders


def write_clips(root: Path) -> dict[str, bytes]:
    """Two query clips that are not in the library (a WAV and an MP3), by upload name."""
    root.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name, spec in (
        ("clip-pluck.wav", synth.TrackSpec("pluck", "backbeat", "C", duration=8.0, seed=9001)),
        ("clip-pad.mp3", synth.TrackSpec("pad", "waltz", "A", duration=8.0, seed=9002)),
    ):
        y = audio.excerpt(synth.render(spec, sample_rate=SR), sample_rate=SR, start_s=1.0, duration_s=6.0)
        clips[name] = audio.encode(root / name, y, sample_rate=SR).read_bytes()
    return clips


def run_ingest(library: Path, folder: Path, *, workers: int) -> str:
    """``soundalike ingest FOLDER`` in its own process, two files per committed batch."""
    proc = subprocess.run(
        [sys.executable, "-m", "soundalike.cli", "--library", str(library), "ingest", str(folder), "-q", "-j", str(workers)],
        env=cli_env(SOUNDALIKE_BATCH_SIZE="2"), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"ingest of {folder.name} failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    assert "failed 0" in proc.stdout, proc.stdout
    return proc.stdout


def record_generation(library: Path, number: int, snapshots: Path) -> Generation:
    """Describe the index now published in ``library`` and keep a copy of it as a library of its own.

    The copy is taken before the next ingest starts, so before the index can be pruned.
    """
    manifest = bundle.read_manifest(library)
    published = bundle.current_dir(library)
    assert manifest is not None and published is not None, "ingest published no index"
    snapshot = snapshots / f"generation-{number}"
    shutil.copytree(published, snapshot / bundle.INDEXES / published.name)
    (snapshot / bundle.POINTER).write_text(json.dumps({"current": published.name}))
    return Generation(
        number=number,
        built_at=float(manifest.built_at),
        count=int(manifest.count),
        segments=int(manifest.segment_count),
        revision=int(manifest.catalog_revision),
        ids=frozenset(int(i) for i in np.load(published / "ids.npy")),
        snapshot=snapshot,
    )


def health(url: str) -> dict[str, Any]:
    reply = requests.get(url + "/api/health", timeout=60)
    assert reply.status_code == 200, f"health: HTTP {reply.status_code} {reply.text[:200]}"
    body: dict[str, Any] = reply.json()
    return body




class Client(threading.Thread):
    """Asks the server one request after another, in the mix of :data:`OPERATIONS`, until stopped."""

    def __init__(self, number: int, url: str, clips: dict[str, bytes], ids: list[int], stop: threading.Event) -> None:
        super().__init__(name=f"client-{number}", daemon=True)
        self.number = number
        self.url = url
        self.clips = clips
        self.ids = list(ids)  # the catalog as this client last listed it
        self.stop = stop
        self.rng = np.random.default_rng(1000 + number)
        self.answers: list[Answer] = []

    def run(self) -> None:
        kinds = list(OPERATIONS)
        weights = np.array(list(OPERATIONS.values()))
        with requests.Session() as session:
            while not self.stop.is_set():
                kind = kinds[int(self.rng.choice(len(kinds), p=weights / weights.sum()))]
                self.answers.append(self.ask(session, kind))

    def ask(self, session: requests.Session, kind: str) -> Answer:
        """Make one request of ``kind`` and record it (never raises for a failed request)."""
        track_id = int(self.rng.choice(self.ids))
        k = int(self.rng.choice(KS))
        clip = sorted(self.clips)[int(self.rng.integers(len(self.clips)))]
        method, options, params = "GET", {}, {}
        if kind == "health":
            target = "/api/health"
        elif kind == "tracks":
            target = "/api/tracks?per_page=200"
        elif kind == "similar":
            target, params = f"/api/tracks/{track_id}/similar?k={k}", {"track_id": track_id, "k": k}
        elif kind == "audio":
            target, params = f"/api/tracks/{track_id}/audio", {"track_id": track_id}
        else:
            target, params, method = "/api/recommend", {"clip": clip, "k": k}, "POST"
            options = {"files": {"file": (clip, self.clips[clip], "application/octet-stream")}, "data": {"k": str(k)}}
        answer = Answer(self.number, kind, target, time.monotonic(), 0.0, params)
        try:
            reply = session.request(method, self.url + target, timeout=60, **options)
        except requests.RequestException as exc:
            answer.error = describe(exc)
        else:
            answer.status = reply.status_code
            if kind == "audio":
                answer.body = (len(reply.content), hashlib.sha256(reply.content).hexdigest())
            else:
                try:
                    answer.body = reply.json()
                except ValueError:
                    answer.body = reply.text[:300]
                    answer.error = answer.error or "answer is not JSON"
            if kind == "tracks" and reply.status_code == 200 and isinstance(answer.body, dict):
                self.ids = [int(t["id"]) for t in answer.body["tracks"]] or self.ids
        answer.ended = time.monotonic()
        return answer


def serving(watcher: Client, session: requests.Session, generation: Generation) -> bool:
    """One health request by ``watcher`` (kept with the others): is ``generation`` being served?"""
    answer = watcher.ask(session, "health")
    watcher.answers.append(answer)
    index = answer.body.get("index") if answer.status == 200 and isinstance(answer.body, dict) else None
    return index is not None and index["built_at"] == generation.built_at


# -- what the answers should have been -------------------------------------------------------------


class Oracle:
    """Answers recomputed in this process from each generation's copy and the final catalog.

    The catalog only grows and a track's row never changes, so the final catalog gives every
    generation the same query vectors and track details the server saw at the time.
    """

    def __init__(self, catalog: SQLiteCatalog, generations: list[Generation], clips: dict[str, bytes]) -> None:
        self.clips = clips
        self.recommenders = [Recommender(catalog, bundle.load(g.snapshot)) for g in generations]
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def similar(self, generation: int, track_id: int, k: int) -> dict[str, Any]:
        key = ("similar", generation, track_id, k)
        if key not in self._cache:
            self._cache[key] = self.recommenders[generation].similar_to_track(track_id, k=k).to_dict()
        return self._cache[key]

    def recommend(self, generation: int, clip: str, k: int) -> dict[str, Any]:
        key = ("recommend", generation, clip, k)
        if key not in self._cache:
            rec = self.recommenders[generation]
            self._cache[key] = rec.similar_to_file(self.clips[clip], k=k, name=clip).to_dict()
        return self._cache[key]


def same_results(served: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Same tracks in the same order, similarities within :data:`TOLERANCE`, for best and worst."""
    for key in ("results", "least_similar"):
        got, want = served[key], expected[key]
        if [r["track_id"] for r in got] != [r["track_id"] for r in want]:
            return False
        if any(abs(a["similarity"] - b["similarity"]) > TOLERANCE for a, b in zip(got, want, strict=True)):
            return False
    return True


def explain(answer: Answer, generations: list[Generation], oracle: Oracle, files: dict[int, tuple[int, str]]) -> list[str]:
    """Fill ``answer.possible`` (the generations it can have come from); return what is inconsistent."""
    body, numbers = answer.body, range(len(generations))
    if answer.kind == "health":
        index = body["index"]
        match = [g for g in generations if index is not None and index["built_at"] == g.built_at]
        if not match:
            return [f"{answer.describe()}: names an index that was never published: {index}"]
        g = match[0]
        answer.possible = {g.number}
        seen = (index["tracks"], index["segments"], index["catalog_revision"])
        problems = []
        if seen != (g.count, g.segments, g.revision):
            problems.append(f"{answer.describe()}: mixes index {g.number} {(g.count, g.segments, g.revision)} with {seen}")
        if not g.count <= body["tracks"] <= generations[-1].count:
            problems.append(f"{answer.describe()}: catalog of {body['tracks']} tracks beside index {g.number} of {g.count}")
        return problems
    if answer.kind == "similar":
        p = answer.params
        if len(body["results"]) != p["k"]:
            return [f"{answer.describe()}: {len(body['results'])} results for k={p['k']}"]
        answer.possible = {g for g in numbers if same_results(body, oracle.similar(g, p["track_id"], p["k"]))}
    elif answer.kind == "recommend":
        p = answer.params
        answer.possible = {g for g in numbers if same_results(body, oracle.recommend(g, p["clip"], p["k"]))}
    elif answer.kind == "audio":
        want = files[answer.params["track_id"]]
        return [] if tuple(body) == want else [f"{answer.describe()}: {body} is not the file {want}"]
    else:  # the catalog listing
        ids = [t["id"] for t in body["tracks"]]
        final = generations[-1].ids
        if len(ids) != body["total"] or not set(ids) <= final or any(t["status"] != "ok" for t in body["tracks"]):
            return [f"{answer.describe()}: listing of {len(ids)} of {body['total']} is not part of the final catalog"]
        return []
    if not answer.possible:
        return [f"{answer.describe()}: matches no published index"]
    return []


def check_order(answers: list[Answer], generations: list[Generation]) -> list[str]:
    """Nothing goes back: an answer begun after another ended is from the same or a newer index.

    Also the catalog listing never shrinks, and it always holds every track of an index already
    served (the catalog commits before the index that includes it is published).
    """
    by_end = sorted(answers, key=lambda a: a.ended)
    floor, listed, i = 0, 0, 0
    problems = []
    for answer in sorted(answers, key=lambda a: a.started):
        while i < len(by_end) and by_end[i].ended < answer.started:
            done = by_end[i]
            floor = max(floor, min(done.possible, default=0))
            if done.kind == "tracks":
                listed = max(listed, done.body["total"])
            i += 1
        if answer.possible and max(answer.possible) < floor:
            problems.append(f"{answer.describe()}: from index {sorted(answer.possible)} after index {floor} was served")
        if answer.kind == "tracks":
            ids = {t["id"] for t in answer.body["tracks"]}
            if answer.body["total"] < listed:
                problems.append(f"{answer.describe()}: the catalog shrank from {listed} to {answer.body['total']} tracks")
            if not generations[floor].ids <= ids:
                problems.append(f"{answer.describe()}: lacks tracks of index {floor}, which was already served")
    return problems


def switches(answers: list[Answer]) -> dict[int, int]:
    """Per client, how often the index its health answers named changed (a client asks in order)."""
    out = {}
    for client in sorted({a.client for a in answers}):
        seen = [min(a.possible) for a in answers if a.client == client and a.kind == "health" and a.possible]
        out[client] = sum(1 for before, after in zip(seen, seen[1:], strict=False) if after != before)
    return out


# -- the end state --------------------------------------------------------------------------------


def same_index(served: LibraryIndex, built: LibraryIndex) -> list[str]:
    """Where two loaded indexes differ (empty when they hold the same data)."""
    problems = []
    for key in ("backend", "count", "segment_count", "catalog_revision", "feature_version", "params", "weights"):
        mine, theirs = getattr(served.manifest, key), getattr(built.manifest, key)
        if mine != theirs:
            problems.append(f"manifest {key}: served {mine}, built {theirs}")
    for name in ("ids", "seg_rows", "seg_offsets", "seg_starts", "vectors", "seg_vectors"):
        a, b = np.asarray(getattr(served, name)), np.asarray(getattr(built, name))
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
            problems.append(f"{name}: served {a.shape}, built {b.shape}, not equal")
    return problems


def check_final_state(url: str, library: Path, scratch: Path, final: Generation) -> None:
    """The server serves what `soundalike index` builds from the final catalog; `soundalike check` passes."""
    rebuilt = scratch / "rebuilt"
    copy_catalog(library / "catalog.sqlite", rebuilt / "catalog.sqlite")
    cli = [sys.executable, "-m", "soundalike.cli", "--library"]
    proc = subprocess.run([*cli, str(rebuilt), "index"], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = bundle.load(rebuilt)
    served = bundle.load(final.snapshot)
    assert same_index(served, built) == []

    catalog = SQLiteCatalog(rebuilt / "catalog.sqlite", create=False)
    try:
        reference = Recommender(catalog, built)
        with requests.Session() as session:
            for track_id in sorted(final.ids):
                reply = session.get(f"{url}/api/tracks/{track_id}/similar?k=10", timeout=60)
                assert reply.status_code == 200, reply.text[:300]
                want = reference.similar_to_track(track_id, k=10).to_dict()
                assert same_results(reply.json(), want), f"track {track_id}: served {reply.json()}, built {want}"
    finally:
        catalog.close()

    proc = subprocess.run([*cli, str(library), "check"], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith(f"ok: {final.count} tracks, 0 failures"), proc.stdout + proc.stderr


def hammer_during_ingests(url: str, library: Path, folders: list[Path], plan: Plan, clips: dict[str, bytes], generations: list[Generation]) -> list[Answer]:
    """Ingest ``folders`` one after another while client threads query ``url``; return every answer.

    After each ingest the new index is recorded in ``generations`` and the server is polled until
    it serves that index, so each switch happens while the clients are busy.
    """
    stop = threading.Event()
    first_ids = sorted(generations[0].ids)
    clients = [Client(n, url, clips, first_ids, stop) for n in range(plan.clients)]
    watcher = Client(-1, url, clips, first_ids, stop)  # polls from this thread; its answers count too
    for client in clients:
        client.start()
    try:
        with requests.Session() as session:
            for folder in folders:
                run_ingest(library, folder, workers=plan.workers)
                generation = record_generation(library, len(generations), generations[0].snapshot.parent)
                generations.append(generation)
                wait_for(lambda g=generation: serving(watcher, session, g), timeout=120, what=f"the switch to index {generation.number}")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=120)
    assert not any(client.is_alive() for client in clients), "a client is stuck in a request"
    return [a for client in [*clients, watcher] for a in client.answers]


def verify_answers(answers: list[Answer], library: Path, generations: list[Generation], clips: dict[str, bytes]) -> None:
    """Every answer was a 200, consistent with one published index, and none went back in time."""
    failed = [a for a in answers if a.error is not None or a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed; the first: " + "; ".join(a.describe() for a in failed[:5])
    catalog = SQLiteCatalog(library / "catalog.sqlite", create=False)
    try:
        files = {}
        for track_id in generations[-1].ids:
            track = catalog.get(track_id)
            assert track is not None, f"track {track_id} of the final index is not in the catalog"
            data = Path(track.path).read_bytes()
            files[track_id] = (len(data), hashlib.sha256(data).hexdigest())
        oracle = Oracle(catalog, generations, clips)
        problems = [p for a in answers for p in explain(a, generations, oracle, files)]
    finally:
        catalog.close()
    assert not problems, f"{len(problems)} inconsistent answers; the first: " + "; ".join(problems[:5])
    problems = check_order(answers, generations)
    assert not problems, f"{len(problems)} answers went back in time; the first: " + "; ".join(problems[:5])


def figures(answers: list[Answer], generations: list[Generation]) -> dict[str, Any]:
    """What the run did, for the test report."""
    queries = [a for a in answers if a.kind in ("similar", "recommend")]
    return {
        "requests": len(answers),
        "by kind": dict(Counter(a.kind for a in answers)),
        "errors": sum(1 for a in answers if a.error is not None or a.status != 200),
        "index sizes": [g.count for g in generations],
        "index switches seen by each client's health requests (-1: the poller)": switches(answers),
        "generations seen by health": sorted({g for a in answers if a.kind == "health" for g in a.possible}),
        "similar/recommend answers by newest matching index": dict(sorted(Counter(max(a.possible) for a in queries).items())),
        "similar/recommend answers matching exactly one index": sum(1 for a in queries if len(a.possible) == 1),
        "similar answers for tracks not yet in the served index": sum(
            1 for a in queries if a.kind == "similar" and a.params["track_id"] not in generations[max(a.possible)].ids
        ),
    }


def readers_and_writers(tmp_path: Path, plan: Plan) -> dict[str, Any]:
    """Run the whole scenario for ``plan``; assert everything; return figures for the report."""
    started = time.monotonic()
    library = tmp_path / "library"
    folders = write_rounds(tmp_path / "music", plan)
    clips = write_clips(tmp_path / "clips")
    run_ingest(library, folders[0], workers=plan.workers)
    generations = [record_generation(library, 0, tmp_path / "snapshots")]
    assert generations[0].count == plan.initial

    with Server(library, "--threads", "4", log=tmp_path / "serve.log") as server:
        first = health(server.url)
        assert first["tracks"] == plan.initial and first["index"]["built_at"] == generations[0].built_at
        answers = hammer_during_ingests(server.url, library, folders[1:], plan, clips, generations)
        assert [g.count for g in generations] == [plan.initial + r * plan.per_round for r in range(plan.rounds + 1)]
        verify_answers(answers, library, generations, clips)
        last = max((a for a in answers if a.kind == "health"), key=lambda a: a.started)
        assert last.possible == {plan.rounds}, "health never reached the final index"
        check_final_state(server.url, library, tmp_path, generations[-1])
        log = server.stop()
    assert server.proc.returncode == 0 and "Traceback" not in log, log[-3000:]
    report = {**figures(answers, generations), "seconds": round(time.monotonic() - started, 1)}
    print("readers and writers:", json.dumps(report))
    return report


# -- the tests -------------------------------------------------------------------------------------


def test_serve_answers_everything_while_ingests_grow_the_library(tmp_path):
    plan = Plan(initial=12, per_round=6, rounds=3, clients=4, duration=8.0, keys=("C", "A"))
    report = readers_and_writers(tmp_path, plan)
    assert report["generations seen by health"] == list(range(plan.rounds + 1))


@pytest.mark.stress
@pytest.mark.timeout(1200)  # about four minutes on two cores
def test_serve_answers_everything_through_many_ingests(tmp_path):
    plan = Plan(initial=12, per_round=8, rounds=8, clients=8, duration=15.0, keys=("C", "A", "D", "F#m"), workers=2)
    report = readers_and_writers(tmp_path, plan)
    assert report["generations seen by health"] == list(range(plan.rounds + 1))
