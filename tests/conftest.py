"""Shared fixtures: a seeded rng, and synthesised libraries with known ground truth."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import dev_music
import mongo_stand_in
from soundalike import audio as audio_mod
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


# -- a library with known copies (issue 14: radio and duplicates) ------------------------------


@dataclass
class CopiesLibrary:
    """Tagged tracks in artist folders plus copies of some of them made by real encoders.

    ``groups`` is the ground truth: each original's path with the paths of its copies; every other
    pair of tracks is different music (some share instrument and groove: one "soundtrack").
    """

    folder: Path
    music: Path
    originals: list[Path]
    groups: list[set[str]]
    catalog: SQLiteCatalog
    index: LibraryIndex


def transcode(source: Path, target: Path, *, bitrate: str | None = None, pad_s: float = 0.0, trim_s: float = 0.0) -> Path:
    """Decode ``source`` (PyAV) and encode it again as ``target``'s format (libsndfile's LAME or Opus,
    PyAV's AAC), with ``pad_s`` seconds of silence added in front or the first ``trim_s`` cut."""
    from soundalike.audio import decode

    audio = decode(source)
    y = audio.samples[int(trim_s * audio.sample_rate) :]
    if pad_s:
        y = np.concatenate([np.zeros(int(pad_s * audio.sample_rate), dtype=np.float32), y])
    return audio_mod.encode(target, y, sample_rate=audio.sample_rate, bitrate=bitrate)


@pytest.fixture(scope="session")
def transcoder():
    """:func:`transcode` as a fixture, so test modules need not import conftest."""
    return transcode


def _tag(path: Path, **tags: str) -> None:
    import mutagen

    meta = mutagen.File(str(path), easy=True)
    for key, value in tags.items():
        meta[key] = value
    meta.save()


@pytest.fixture(scope="session")
def copies_library(tmp_path_factory: pytest.TempPathFactory) -> CopiesLibrary:
    """12 FLAC originals (2 instruments × 3 grooves × 2 keys, 20 s, tagged artist = instrument, album =
    groove, in one folder per artist) and copies made by real encoders (see :func:`transcode`): a byte
    copy, MP3 at 160k and 48k (the top and near the bottom of MPEG-2 layer III at 22.05 kHz), Opus
    64k, MP3 with 2 s of silence added in front, and MP3 of an original with its 2 s of leading
    silence trimmed; ingested and indexed (exact) in the library folder, which remembers the exact
    backend."""
    from soundalike.library import Library
    from soundalike.settings import load_settings

    music = tmp_path_factory.mktemp("copies-music")
    specs = synth.library_specs(instruments=("pluck", "organ"), grooves=("backbeat", "waltz", "bossa"), keys=("C", "A"), duration=SYNTH_DURATION)
    originals: list[Path] = []
    for i, spec in enumerate(specs):
        folder = music / spec.instrument
        folder.mkdir(exist_ok=True)
        y = synth.render(spec)
        if i == 4:  # this one starts with 2 s of silence; its copy has it trimmed
            y = np.concatenate([np.zeros(2 * 22050, dtype=np.float32), y])
        name = f"{spec.groove} {spec.key} é #{i} 100%.flac" if i == 5 else f"{spec.groove}-{spec.key}.flac"
        path = audio_mod.encode(folder / name, y, sample_rate=22050)
        _tag(path, artist=spec.instrument, album=spec.groove, title=f"{spec.groove} in {spec.key}")
        originals.append(path)
    copies = music / "copies"
    copies.mkdir()
    shutil.copy(originals[0], copies / "byte-copy.flac")
    transcode(originals[1], copies / "one-160k.mp3", bitrate="160k")
    transcode(originals[1], copies / "one-48k.mp3", bitrate="48k")
    transcode(originals[2], copies / "two.opus", bitrate="64k")
    transcode(originals[3], copies / "three-silence-added.mp3", bitrate="128k", pad_s=2.0)
    transcode(originals[4], copies / "four-silence-trimmed.mp3", bitrate="128k", trim_s=2.0)
    groups = [
        {str(originals[0]), str(copies / "byte-copy.flac")},
        {str(originals[1]), str(copies / "one-160k.mp3"), str(copies / "one-48k.mp3")},
        {str(originals[2]), str(copies / "two.opus")},
        {str(originals[3]), str(copies / "three-silence-added.mp3")},
        {str(originals[4]), str(copies / "four-silence-trimmed.mp3")},
    ]
    folder = tmp_path_factory.mktemp("copies-library")
    library = Library.open(load_settings({"library": folder}), create=True)
    ingest([music], library.catalog, runner=ProcessRunner(2))
    index = library.rebuild(backend="exact")
    assert isinstance(library.catalog, SQLiteCatalog)
    return CopiesLibrary(folder=folder, music=music, originals=originals, groups=groups, catalog=library.catalog, index=index)


@dataclass
class DevMusic:
    """The 91 dev-music clips copied into one folder and ingested once for the whole session.

    Tests that need the analysis read ``catalog_file`` (never write it): :meth:`catalog_copy` gives a
    test its own copy to add to.
    """

    music: Path
    catalog_file: Path
    summary: IngestSummary

    def catalog_copy(self, folder: Path) -> SQLiteCatalog:
        """A consistent copy of the catalog in ``folder`` (SQLite's backup, so no write is half-copied)."""
        target = folder / "catalog.sqlite"
        with sqlite3.connect(self.catalog_file) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        return SQLiteCatalog(target)


@pytest.fixture(scope="session")
def devmusic_ingested(tmp_path_factory: pytest.TempPathFactory) -> DevMusic:
    """One ingest of ``../shared/dev-music`` shared by the quality, radio and duplicates tests."""
    if not dev_music.PRESENT:
        pytest.skip(dev_music.ABSENT_REASON)
    music = tmp_path_factory.mktemp("devmusic")
    for clip in sorted(p for p in dev_music.DEV_MUSIC.rglob("*") if p.suffix in (".mp3", ".ogg")):
        (music / clip.parent.name).mkdir(exist_ok=True)
        shutil.copy(clip, music / clip.parent.name / clip.name)
    folder = tmp_path_factory.mktemp("devmusic-library")
    catalog = SQLiteCatalog(folder / "catalog.sqlite")
    summary = ingest([music], catalog, runner=ProcessRunner(2))
    catalog.close()
    return DevMusic(music=music, catalog_file=folder / "catalog.sqlite", summary=summary)
