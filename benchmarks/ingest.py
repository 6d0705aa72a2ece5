"""Ingest throughput: tracks per second for a synthetic library, with 1 and 2 worker processes.

The library is rendered by :mod:`soundalike.synth` (every instrument, groove and key, one seed per
track) at 44.1 kHz mono and written half as MP3 (128 kbit/s), half as Ogg Vorbis, then cached in
``benchmarks/.cache``. Each run ingests it from scratch into a fresh SQLite catalog through
:func:`soundalike.ingest.ingest` exactly as ``soundalike ingest --workers N`` does (walk, hash,
decode, analyse, read tags, write in batches), including the worker processes' start-up.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import Section, Target, fmt_s, fmt_x

RATE = 44100


@dataclass(frozen=True)
class IngestConfig:
    tracks: int = 500
    seconds: float = 30.0
    workers: tuple[int, ...] = (1, 2)
    serial: bool = True
    """Also ingest in this process (no pool): the cost of the pool itself."""


FULL = IngestConfig()
QUICK = IngestConfig(tracks=48)


def _write_one(args: tuple[str, dict[str, object]]) -> None:
    from soundalike import audio, synth

    path, spec_fields = args
    spec = synth.TrackSpec(**spec_fields)  # type: ignore[arg-type]
    bitrate = "128k" if path.endswith(".mp3") else None
    audio.encode(path, synth.render(spec, sample_rate=RATE), sample_rate=RATE, bitrate=bitrate)


def library(cache: Path, tracks: int, seconds: float, *, workers: int = 2) -> Path:
    """The synthetic library folder, generated once (in ``workers`` processes) and then reused."""
    from soundalike import synth

    folder = cache / f"ingest-library-{tracks}x{seconds:.0f}s"
    marker = folder / "complete.json"
    if marker.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    combos = len(synth.INSTRUMENTS) * len(synth.GROOVES) * len(synth.KEYS)
    specs = synth.library_specs(keys=synth.KEYS, duration=seconds, replicates=math.ceil(tracks / combos))
    step = len(specs) / tracks
    chosen = [specs[int(i * step)] for i in range(tracks)]
    jobs = [
        (str(folder / f"{spec.name}.{'mp3' if i % 2 == 0 else 'ogg'}"), asdict(spec)) for i, spec in enumerate(chosen)
    ]
    if workers <= 1 or len(jobs) < 16:
        for job in jobs:
            _write_one(job)
    else:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            list(pool.map(_write_one, jobs, chunksize=8))
    marker.write_text(json.dumps({"tracks": tracks, "seconds": seconds, "rate": RATE}))
    return folder


def ingest_once(music: Path, workers: int | None) -> dict[str, float]:
    """Ingest ``music`` into a fresh catalog; ``workers=None`` analyses in this process."""
    from soundalike.catalog.sqlite import SQLiteCatalog
    from soundalike.ingest import ProcessRunner, SerialRunner, ingest

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        catalog = SQLiteCatalog(Path(tmp) / "catalog.sqlite")
        try:
            runner = SerialRunner() if workers is None else ProcessRunner(workers)
            started = time.perf_counter()
            summary = ingest([music], catalog, runner=runner)
            seconds = time.perf_counter() - started
        finally:
            catalog.close()
    return {
        "seconds": seconds,
        "tracks": float(summary.analysed),
        "failed": float(len(summary.failed)),
        "audio_seconds": summary.audio_seconds,
        "tracks_per_s": summary.analysed / seconds,
        "x_realtime": summary.audio_seconds / seconds,
    }


def run(cache: Path, config: IngestConfig = FULL) -> Section:
    """Measure ingest throughput; see the module docstring."""
    from tqdm import tqdm

    music = library(cache, config.tracks, config.seconds)
    plan: list[int | None] = ([None] if config.serial else []) + list(config.workers)
    results: dict[str, dict[str, float]] = {}
    for workers in tqdm(plan, desc="ingest", unit="run", leave=False):
        results["serial" if workers is None else str(workers)] = ingest_once(music, workers)

    section = Section(
        title="2. Ingest throughput",
        intro=(
            f"A synthetic library of {config.tracks} tracks of {config.seconds:.0f} s (`soundalike.synth`, every "
            "instrument × groove × key, 44.1 kHz mono, half MP3 128 kbit/s, half Ogg Vorbis), ingested from "
            "scratch into a new SQLite catalog by `soundalike.ingest.ingest` (walk, hash, decode, analyse, "
            "tags, batched writes), worker start-up included. Each worker process is single-threaded."
        ),
        raw={"runs": results, "config": asdict(config)},
    )
    table = section.table(
        "Tracks per second", ["runner", "wall time", "tracks/s", "× real time", "scaling efficiency", "failed"]
    )
    one = results.get("1")
    for key, r in results.items():
        label = "in-process (`SerialRunner`)" if key == "serial" else f"`ProcessRunner({key})`"
        efficiency = "–"
        if one and key not in ("serial", "1"):
            efficiency = f"{r['tracks_per_s'] / (int(key) * one['tracks_per_s']):.0%}"
        table.add(
            label, fmt_s(r["seconds"]), f"{r['tracks_per_s']:.1f}", fmt_x(r["x_realtime"]), efficiency, f"{r['failed']:.0f}"
        )
    if one and "2" in results:
        eff = results["2"]["tracks_per_s"] / (2 * one["tracks_per_s"])
        section.targets.append(
            Target(
                "ingest with 2 workers: tracks/s and scaling efficiency (no numeric target)",
                f"{results['2']['tracks_per_s']:.1f} tracks/s vs {one['tracks_per_s']:.1f} with 1 worker, "
                f"efficiency {eff:.0%}",
                None,
            )
        )
    section.notes.append(
        "Scaling efficiency = tracks/s with N workers ÷ (N × tracks/s with 1 worker). The machine has two cores "
        "and the driver (walk, SQLite writes) shares them with the workers, so 100 % is out of reach; other "
        "processes on the machine lower it further (see the load averages above)."
    )
    return section
