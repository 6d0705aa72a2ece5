"""kill -9 at many moments of an ingest (batch writes, index rebuild): nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.index import bundle
from soundalike.ingest import SerialRunner, ingest


def _revision(db: Path) -> int:
    """The catalog revision: it moves on with every committed batch."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])
    except (sqlite3.Error, TypeError):
        return 0


def _building(library: Path) -> bool:
    """True while an index folder that is not yet published exists (a rebuild is under way)."""
    folder = library / "indexes"
    if not folder.is_dir():
        return False
    current = bundle.current_dir(library)
    return any(p.name != (current.name if current else None) and not (p / "manifest.json").exists() for p in folder.iterdir())


def kill_campaign(pool: list[Path], music: Path, library: Path, *, kills: int, seed: int) -> list[str]:
    """Run ingests and SIGKILL them at varied moments; return a description of each kill point.

    Before each run up to three more files from ``pool`` join ``music`` (fewer when the pool would
    not last all ``kills`` runs), so every run has analysis to do, batches to write and an index to
    rebuild.
    """
    rng = np.random.default_rng(seed)
    db = library / "catalog.sqlite"
    env = {**os.environ, "SOUNDALIKE_BATCH_SIZE": "1"}
    cmd = [sys.executable, "-m", "soundalike.cli", "--library", str(library), "ingest", str(music), "-j", "1", "-q", "--index", "exact"]
    points: list[str] = []
    waiting = list(pool)
    per_run = max(1, min(3, len(pool) // kills))
    for i in range(kills):
        for _ in range(per_run):
            if waiting:
                src = waiting.pop(0)
                shutil.copy(src, music / src.name)
        before = _revision(db)
        # Alternate targets: right after a batch commits (so the next write is in flight), or
        # during the index rebuild; then a random extra moment, so kills fall inside them.
        during_index = i % 3 == 2
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        what = "finished before the kill"
        while proc.poll() is None and time.monotonic() < deadline:
            if during_index and _building(library):
                what = "during index rebuild"
                break
            if not during_index and _revision(db) > before:
                what = "between or inside batch writes"
                break
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0, 0.03 if during_index else 0.2)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        else:
            what = "finished before the kill"
        proc.wait()
        points.append(what)
        catalog = SQLiteCatalog(db)
        problems = catalog.check()
        catalog.close()
        assert problems == [], f"kill {i} ({what}) left {problems}"
        if bundle.current_dir(library) is not None:
            bundle.load(library)  # a published index is always whole
    for src in waiting:
        shutil.copy(src, music / src.name)
    return points


def _finish_and_verify(music: Path, library: Path) -> None:
    catalog = SQLiteCatalog(library / "catalog.sqlite")
    summary = ingest([music], catalog, runner=SerialRunner())
    files = sorted(str(p) for p in music.iterdir())
    assert summary.found == len(files) and not summary.failed
    rows = sqlite3.connect(library / "catalog.sqlite").execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM tracks").fetchone()
    assert rows == (len(files), len(files)), "every file exactly once"
    assert sorted(t.path for t in catalog.tracks()) == files
    assert catalog.check() == []
    index, _ = bundle.ensure(library, catalog, backend="exact")
    assert index.count == len(files)
    pointer = json.loads((library / "index.json").read_text())
    assert (library / "indexes" / pointer["current"] / "manifest.json").exists()


def _split(synth_library, tmp_path: Path, first: int) -> tuple[list[Path], Path]:
    music = tmp_path / "music"
    music.mkdir()
    files = [p for p, _ in synth_library.tracks]
    for p in files[:first]:
        shutil.copy(p, music / p.name)
    return files[first:], music


def test_kill_nine_at_eight_moments_loses_and_doubles_nothing(synth_library, tmp_path):
    pool, music = _split(synth_library, tmp_path, 16)
    points = kill_campaign(pool, music, tmp_path / "library", kills=8, seed=1)
    print("kill points:", points)
    assert sum("batch" in p for p in points) >= 4 and sum("index" in p for p in points) >= 1, points
    _finish_and_verify(music, tmp_path / "library")


@pytest.mark.stress
def test_kill_nine_at_forty_moments_loses_and_doubles_nothing(synth_library, tmp_path):
    from soundalike import synth

    pool, music = _split(synth_library, tmp_path, 10)
    extra = tmp_path / "extra"
    specs = synth.library_specs(keys=("D", "F#m", "G"), duration=15.0, seed=7)
    pool += [p for p, _ in synth.write_library(extra, specs, formats=("wav", "flac"))]
    points = kill_campaign(pool, music, tmp_path / "library", kills=40, seed=2)
    print("kill points:", points)
    assert sum("batch" in p for p in points) >= 20 and sum("index" in p for p in points) >= 5, points
    assert sum("finished" in p for p in points) <= 4, f"most runs must really be killed: {points}"
    _finish_and_verify(music, tmp_path / "library")
