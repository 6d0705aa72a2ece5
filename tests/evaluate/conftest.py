"""Fixtures for evaluation and tuning: clustered vectors, library copies, FMA-format metadata."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from soundalike.catalog import OK, TrackRecord
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.features import FEATURE_VERSION, segment_layout, track_layout

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The column groups and names of FMA's fma_metadata/tracks.csv (52 columns after the index), in the
# order the file has them; pandas reads it with header=[0, 1], index_col=0.
FMA_COLUMNS: list[tuple[str, str]] = [
    *[("album", c) for c in ("comments", "date_created", "date_released", "engineer", "favorites", "id",
                             "information", "listens", "producer", "tags", "title", "tracks", "type")],
    *[("artist", c) for c in ("active_year_begin", "active_year_end", "associated_labels", "bio", "comments",
                              "date_created", "favorites", "id", "latitude", "location", "longitude", "members",
                              "name", "related_projects", "tags", "website", "wikipedia_page_id")],
    *[("set", c) for c in ("split", "subset")],
    *[("track", c) for c in ("bit_rate", "comments", "composer", "date_created", "date_recorded", "duration",
                             "favorites", "genre_top", "genres", "genres_all", "information", "interest",
                             "language_code", "license", "listens", "lyricist", "number", "publisher", "tags",
                             "title")],
]  # fmt: skip


def write_fma_tracks(path: Path, rows: dict[int, dict[str, str]]) -> Path:
    """Write an FMA-format tracks.csv: three header rows, then one row per track id.

    ``rows`` maps a track id to values by ``group.name`` (``"track.genre_top"``); other cells stay
    empty, except a few that FMA fills with quoted commas and line breaks.
    """
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["", *[g for g, _ in FMA_COLUMNS]])
        writer.writerow(["", *[c for _, c in FMA_COLUMNS]])
        writer.writerow(["track_id", *[""] * len(FMA_COLUMNS)])
        for tid, values in rows.items():
            cells = {
                "album.information": "<p>Recorded live, in one take,\nwith \"friends\".</p>",
                "track.genres": "[21, 811]",
                "artist.name": f"Artist {tid % 7}",
                **values,
            }
            writer.writerow([str(tid), *[cells.get(f"{g}.{c}", "") for g, c in FMA_COLUMNS]])
    return path


@pytest.fixture(scope="session")
def write_fma():
    """The :func:`write_fma_tracks` helper (test modules cannot import conftest)."""
    return write_fma_tracks


def check_png(path: Path) -> None:
    """Assert that ``path`` is a PNG that PIL and matplotlib both read."""
    import matplotlib.image
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300


@pytest.fixture(scope="session")
def assert_png():
    """The :func:`check_png` helper."""
    return check_png


def clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Rows around 30 centres of a 12-d latent space mapped to ``dim`` dimensions, unit length.

    The shape of tests/index/test_backends.py's data: correlated like real features, so that the
    least similar tracks form a region too.
    """
    rank, centres = 12, 30
    mixing = rng.normal(size=(rank, dim)) / np.sqrt(rank)
    centre = rng.normal(size=(centres, rank))
    latent = centre[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, rank))
    x = latent @ mixing + 0.5 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def vectors_3000() -> np.ndarray:
    """3,000 clustered unit vectors of dimension 390: enough for ScaNN's tree path."""
    return clustered(np.random.default_rng(20261122), 3000, 390)


def copy_library(source: SQLiteCatalog, folder: Path) -> Path:
    """A new library folder holding a consistent copy of ``source``'s SQLite catalog."""
    folder.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source.path)
    dst = sqlite3.connect(folder / "catalog.sqlite")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return folder


@pytest.fixture(scope="module")
def library_copy(synth_library, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's synthetic library (40 real tracks) in a folder these tests may change."""
    return copy_library(synth_library.catalog, tmp_path_factory.mktemp("evallib") / "library")


@pytest.fixture(scope="module")
def vector_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library of 3,000 tracks whose raw vectors are clustered (no audio: only the catalog)."""
    folder = tmp_path_factory.mktemp("vectorlib") / "library"
    folder.mkdir()
    tl, sl = track_layout(), segment_layout()
    rng = np.random.default_rng(7)
    raw = clustered(rng, 3000, tl.dim) * 10.0 + rng.normal(size=tl.dim).astype(np.float32)
    catalog = SQLiteCatalog(folder / "catalog.sqlite")
    records = [
        TrackRecord(
            path=f"/collection/{i // 1000:03d}/{i:06d}.mp3",
            content_hash=f"{i:032x}",
            size=1000 + i,
            mtime=1.0,
            status=OK,
            duration=30.0,
            feature_version=FEATURE_VERSION,
            vector=raw[i],
            segments=rng.normal(size=(1, sl.dim)).astype(np.float32),
            segment_starts=np.zeros(1, dtype=np.float32),
        )
        for i in range(len(raw))
    ]
    for start in range(0, len(records), 500):
        catalog.write(records[start : start + 500])
    catalog.close()
    return folder
