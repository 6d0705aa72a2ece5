"""Shared fixtures: a seeded rng, and synthesised libraries with known ground truth."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import mongo_stand_in
from soundalike import synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.index import bundle
from soundalike.index.bundle import LibraryIndex
from soundalike.ingest import IngestSummary, ProcessRunner, ingest
from soundalike.recommend import Recommender

mongo_stand_in.register()  # `--catalog mongomock://NAME/DB` opens the in-process MongoDB stand-in

os.environ.setdefault("GLOG_minloglevel", "2")  # keep ScaNN's C++ log lines out of test output


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


@dataclass
class Library:
    """A synthesised music folder ingested into a catalog."""

    folder: Path
    music: Path
    tracks: list[tuple[Path, synth.TrackSpec]]
    catalog: SQLiteCatalog
    summary: IngestSummary

    def spec_of(self, path: str) -> synth.TrackSpec:
        return {str(p): s for p, s in self.tracks}[path]


SYNTH_DURATION = 20.0


@pytest.fixture(scope="session")
def synth_library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """40 tracks (4 instruments × 5 grooves × 2 keys, 20 s each) as MP3/OGG/FLAC/WAV, ingested."""
    music = tmp_path_factory.mktemp("music")
    written = synth.write_library(music, synth.library_specs(keys=("C", "A"), duration=SYNTH_DURATION))
    folder = tmp_path_factory.mktemp("library")
    catalog = SQLiteCatalog(folder / "catalog.sqlite")
    summary = ingest([music], catalog, runner=ProcessRunner(2))
    return Library(folder=folder, music=music, tracks=written, catalog=catalog, summary=summary)


@pytest.fixture(scope="session")
def indexes(synth_library: Library, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LibraryIndex]:
    """The synthetic library indexed by every backend (each in its own folder)."""
    out = {}
    for backend in ("exact", "scann", "annoy"):
        out[backend] = bundle.build(tmp_path_factory.mktemp(f"index-{backend}"), synth_library.catalog, backend=backend)
    return out


@pytest.fixture(scope="session")
def recommender(synth_library: Library, indexes: dict[str, LibraryIndex]) -> Recommender:
    """The exact-search recommender over the synthetic library (the reference)."""
    return Recommender(synth_library.catalog, indexes["exact"])


def start_ingest_until(args: list[str], db: Path, rows: int, *, batch_size: int = 2) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``soundalike ARGS`` in a subprocess and return once ``db`` holds ``rows`` tracks.

    The process is left running (the caller kills it); returns it and the rows seen. Polls with a
    deadline rather than sleeping a fixed time.
    """
    env = {**os.environ, "SOUNDALIKE_BATCH_SIZE": str(batch_size)}
    proc = subprocess.Popen([sys.executable, "-m", "soundalike.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    written = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    written = conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
            except sqlite3.OperationalError:
                written = 0
            if written >= rows:
                break
        time.sleep(0.02)  # polling interval, not synchronisation
    return proc, written


@pytest.fixture
def ingest_until():
    """:func:`start_ingest_until` as a fixture, so test modules need not import conftest."""
    return start_ingest_until
