"""The learned style aspect end to end (issue 13): stored, searched, upgraded to, and switched off."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundalike import audio
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.cli import main
from soundalike.features import FEATURE_VERSION, STYLE_PATCHES, style, track_layout


@pytest.fixture(scope="module")
def music(synth_library, tmp_path_factory) -> Path:
    """Six of the session's synthesised tracks in a folder of their own."""
    folder = tmp_path_factory.mktemp("style-music")
    for path, _ in synth_library.tracks[:: 7][:6]:
        shutil.copy(path, folder / path.name)
    return folder


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_catalog_keeps_each_tracks_style_embedding(music, tmp_path) -> None:
    lib = tmp_path / "lib"
    assert run("-L", str(lib), "ingest", str(music), "-q", "-j", "1")[0] == 0
    catalog = SQLiteCatalog(lib / "catalog.sqlite")
    track = catalog.tracks()[0]
    stored = catalog.vectors([track.id])[0][track_layout().slices["style"]]
    decoded = audio.decode(track.path)
    again = style.style_embedding(decoded.samples, sample_rate=decoded.sample_rate, n_patches=STYLE_PATCHES)
    assert stored.shape == (style.EMBEDDING_DIM,) and np.any(stored != 0)
    np.testing.assert_allclose(stored, again, rtol=1e-4, atol=1e-5)


def test_style_is_an_aspect_of_every_answer_and_can_be_asked_for_alone(music, tmp_path) -> None:
    lib = tmp_path / "lib"
    assert run("-L", str(lib), "ingest", str(music), "-q")[0] == 0
    code, out = run("-L", str(lib), "similar", "1", "-k", "3", "--json")
    assert code == 0, out
    body = json.loads(out[out.index("{"):])
    assert all(0.0 <= r["aspects"]["style"] <= 1.0 for r in body["results"])
    code, out = run("-L", str(lib), "similar", "1", "-k", "3", "--aspect", "style", "--json")
    assert code == 0, out
    by_style = json.loads(out[out.index("{"):])["results"]
    sims = [r["similarity"] for r in by_style]
    assert sims == sorted(sims, reverse=True)
    assert [r["similarity"] for r in by_style] == pytest.approx([r["aspects"]["style"] for r in by_style], abs=1e-6)


def test_an_older_library_is_analysed_again_and_ingest_says_so(music, tmp_path) -> None:
    lib = tmp_path / "lib"
    assert run("-L", str(lib), "ingest", str(music), "-q")[0] == 0
    with sqlite3.connect(lib / "catalog.sqlite") as db:  # as a library of the previous feature version
        db.execute("UPDATE tracks SET feature_version = ? WHERE status = 'ok'", (FEATURE_VERSION - 1,))
    code, out = run("-L", str(lib), "stats", "--json")
    assert json.loads(out)["stale"] == 6
    code, out = run("-L", str(lib), "ingest", str(music))
    assert code == 0, out
    assert "6 tracks were analysed by an older feature version: they are analysed again" in out
    assert "analysed 6, unchanged 0" in out
    assert json.loads(run("-L", str(lib), "stats", "--json")[1])["stale"] == 0


def test_no_style_skips_the_model_and_the_library_remembers_it(music, tmp_path) -> None:
    lib = tmp_path / "lib"
    code, out = run("-L", str(lib), "ingest", str(music), "-q", "--no-style")
    assert code == 0, out
    catalog = SQLiteCatalog(lib / "catalog.sqlite")
    vectors = catalog.vectors([t.id for t in catalog.tracks()])
    assert not np.any(vectors[:, track_layout().slices["style"]])  # the model never ran
    code, out = run("-L", str(lib), "similar", "1", "-k", "2", "--json")
    assert code == 0, out
    body = json.loads(out[out.index("{"):])
    assert "style" not in body["results"][0]["aspects"]  # no weight, no aspect
    assert json.loads((lib / "choices.json").read_text())["style"] is False
