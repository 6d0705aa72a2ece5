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


def _style_blocks(lib: Path) -> dict[str, np.ndarray]:
    """Each track's stored style block, by path (read from the catalog file itself)."""
    catalog = SQLiteCatalog(lib / "catalog.sqlite", create=False)
    try:
        tracks = catalog.tracks()
        vectors = catalog.vectors([t.id for t in tracks])
        return {t.path: v[track_layout().slices["style"]] for t, v in zip(tracks, vectors, strict=True)}
    finally:
        catalog.close()


def _ids(lib: Path) -> dict[str, int]:
    with sqlite3.connect(lib / "catalog.sqlite") as db:
        return {bytes(p).decode(): i for p, i in db.execute("SELECT path, id FROM tracks")}


def test_ingest_style_analyses_again_the_tracks_analysed_without_it(music, tmp_path) -> None:
    lib = tmp_path / "lib"
    assert run("-L", str(lib), "ingest", str(music), "-q", "--no-style")[0] == 0
    assert not any(np.any(v) for v in _style_blocks(lib).values())
    assert json.loads(run("-L", str(lib), "stats", "--json")[1])["without_style"] == 6
    ids = _ids(lib)
    code, out = run("-L", str(lib), "ingest", "--style")  # no PATHS: the library's own tracks
    assert code == 0, out
    assert "6 tracks were analysed without the learned style aspect (--no-style): they are analysed again" in out
    assert "found 6 files: analysed 6, unchanged 0, reused 0, failed 0" in out
    blocks = _style_blocks(lib)
    assert len(blocks) == 6 and all(np.any(v) for v in blocks.values())
    assert _ids(lib) == ids  # the same tracks, analysed again in place
    assert json.loads((lib / "choices.json").read_text())["style"] is True
    stats = json.loads(run("-L", str(lib), "stats", "--json")[1])
    assert stats["tracks"] == 6 and stats["without_style"] == 0


def test_a_second_ingest_style_analyses_nothing(music, tmp_path) -> None:
    lib = tmp_path / "lib"
    assert run("-L", str(lib), "ingest", str(music), "-q", "--no-style")[0] == 0
    assert run("-L", str(lib), "ingest", "--style", "-q")[0] == 0
    before = _style_blocks(lib)
    code, out = run("-L", str(lib), "ingest", "--style")
    assert code == 0, out
    assert "analysed again" not in out and "nothing to analyse again" in out
    assert "up to date" in out  # the index built by the first --style stands
    code, out = run("-L", str(lib), "ingest", str(music), "--style")
    assert code == 0, out
    assert "found 6 files: analysed 0, unchanged 6" in out
    after = _style_blocks(lib)
    assert all(np.array_equal(before[p], after[p]) for p in before)


def test_an_interrupted_ingest_style_is_finished_by_the_next(music, tmp_path) -> None:
    from soundalike.ingest import SerialRunner, ingest
    from soundalike.library import Library
    from soundalike.settings import load_settings

    lib = tmp_path / "lib"
    assert run("-L", str(lib), "ingest", str(music), "-q", "--no-style")[0] == 0
    library = Library.open(load_settings({"library": str(lib)}))
    again = library.unstyled_paths()
    assert len(again) == 6

    class Interrupted(SerialRunner):
        def run(self, candidates, options):  # type: ignore[no-untyped-def]
            yield from list(super().run(candidates[:2], options))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest([], library.catalog, runner=Interrupted(), again=again, batch_size=1)
    assert sum(bool(np.any(v)) for v in _style_blocks(lib).values()) == 2
    code, out = run("-L", str(lib), "ingest", "--style")
    assert code == 0, out
    assert "4 tracks were analysed without the learned style aspect" in out
    assert "analysed 4, unchanged 0" in out
    blocks = _style_blocks(lib)
    assert len(blocks) == 6 and all(np.any(v) for v in blocks.values())


def test_ingest_style_keeps_the_analysis_of_a_track_whose_file_is_gone(music, tmp_path) -> None:
    lib, folder = tmp_path / "lib", tmp_path / "music"
    shutil.copytree(music, folder)
    assert run("-L", str(lib), "ingest", str(folder), "-q", "--no-style")[0] == 0
    gone = sorted(folder.iterdir())[0]
    gone.unlink()
    code, out = run("-L", str(lib), "ingest", "--style")
    assert code == 0, out
    assert "analysed 5" in out and "failed 1" in out and "not analysed again" in out
    blocks = _style_blocks(lib)
    assert len(blocks) == 6 and not np.any(blocks[str(gone)])


def test_a_copy_of_a_track_analysed_without_style_is_not_reused_with_it(music, tmp_path) -> None:
    lib, first, second = tmp_path / "lib", tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    track = sorted(music.iterdir())[0]
    shutil.copy(track, first / track.name)
    shutil.copy(track, second / track.name)
    assert run("-L", str(lib), "ingest", str(first), "-q", "--no-style")[0] == 0
    code, out = run("-L", str(lib), "ingest", str(second), "--style")
    assert code == 0, out
    assert np.any(_style_blocks(lib)[str(second / track.name)])
