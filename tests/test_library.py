"""The library layer: one folder = catalog + published index + its parameters, the way in for both shells."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from soundalike.cli import main
from soundalike.index import bundle
from soundalike.library import Library
from soundalike.settings import load_settings


@pytest.fixture
def lib(synth_library, tmp_path: Path) -> Path:
    """A copy of the session's synthetic library (40 analysed tracks) with no index yet."""
    folder = tmp_path / "library"
    folder.mkdir()
    with sqlite3.connect(synth_library.catalog.path) as src, sqlite3.connect(folder / "catalog.sqlite") as dst:
        src.backup(dst)  # consistent while the session's catalog is open
    return folder


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_backend_chosen_on_the_command_line_is_kept_by_the_commands_that_follow(lib: Path) -> None:
    code, out = run("-L", str(lib), "index", "--backend", "annoy")
    assert code == 0 and "index: annoy, 40 tracks" in out, out
    for command in (["similar", "1", "-k", "3"], ["similar", "2", "--json"], ["stats"]):
        code, out = run("-L", str(lib), *command)
        assert code == 0, out
        assert "rebuilt" not in out and "scann" not in out, out
    assert bundle.read_manifest(lib).backend == "annoy"  # type: ignore[union-attr]
    assert Library.open(load_settings({"library": lib})).backend == "annoy"


def test_no_rebuild_message_without_a_rebuild_and_the_reason_when_there_is_one(lib: Path) -> None:
    code, out = run("-L", str(lib), "similar", "1", "-k", "2")
    assert code == 0 and "rebuilt (scann, 40 tracks) because there is no index yet" in out, out
    code, out = run("-L", str(lib), "similar", "1", "-k", "2")
    assert code == 0 and "rebuilt" not in out, out
    catalog = Library.open(load_settings({"library": lib})).catalog
    assert catalog.remove([catalog.tracks()[0].path]) == 1
    code, out = run("-L", str(lib), "similar", "3", "-k", "2")
    assert code == 0 and "rebuilt (scann, 39 tracks) because the catalog changed" in out, out


def test_stats_says_why_the_next_use_rebuilds(lib: Path) -> None:
    assert run("-L", str(lib), "index", "--backend", "exact")[0] == 0
    (lib / "soundalike.toml").write_text('index = "annoy"\n')
    code, out = run("-L", str(lib), "stats")
    assert code == 0 and "rebuilt on next use, because the backend changed (exact → annoy)" in out, out


def test_a_settings_file_backend_wins_over_the_remembered_choice_and_the_cli_says_so(lib: Path) -> None:
    (lib / "soundalike.toml").write_text('index = "exact"\n')
    code, out = run("-L", str(lib), "index", "--backend", "annoy")
    assert code == 0 and "the settings say index = exact" in out, out
    code, out = run("-L", str(lib), "similar", "1", "-k", "2")
    assert code == 0 and "because the backend changed (annoy → exact)" in out, out


def test_serve_alone_builds_with_the_tuned_parameters_and_the_cli_keeps_its_index(lib: Path) -> None:
    from soundalike.web import create_app

    tuned = {"n_trees": 7, "search_k": 700}
    Library.open(load_settings({"library": lib})).save_tuned("annoy", tuned)
    assert json.loads((lib / "tuned.json").read_text()) == {"annoy": tuned}
    (lib / "choices.json").write_text(json.dumps({"backend": "annoy"}))
    app = create_app({"SOUNDALIKE_LIBRARY": lib})  # as `soundalike serve` started on its own
    health = app.test_client().get("/api/health").get_json()
    assert health["index"]["backend"] == "annoy"
    manifest = bundle.read_manifest(lib)
    assert manifest is not None and {k: manifest.params[k] for k in tuned} == tuned
    code, out = run("-L", str(lib), "similar", "1", "-k", "2")
    assert code == 0 and "rebuilt" not in out, out


def test_stats_is_a_frozen_record_with_the_index_at_a_glance(lib: Path) -> None:
    library = Library.open(load_settings({"library": lib}))
    assert library.stats().index is None
    loaded = library.index()
    assert loaded.rebuilt and loaded.rebuilt_because == "there is no index yet"
    s = library.stats()
    assert (s.tracks, s.index.tracks, s.index.backend, s.index.up_to_date) == (40, 40, "scann", True)  # type: ignore[union-attr]
    assert s.index.bytes > 0  # type: ignore[union-attr]
    with pytest.raises(AttributeError):
        s.tracks = 3  # type: ignore[misc]
    again = library.index()
    assert not again.rebuilt and again.index.directory == loaded.index.directory


def test_auto_is_the_default_choice_decided_by_the_library_s_size_and_can_be_chosen_again(
    lib: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = Library.open(load_settings({"library": lib}))
    assert (library.backend, library.index_backend) == ("auto", "scann")
    assert run("-L", str(lib), "index", "--backend", "annoy")[0] == 0
    code, out = run("-L", str(lib), "index", "--backend", "auto")
    assert code == 0 and "index: scann, 40 tracks" in out, out
    again = Library.open(load_settings({"library": lib}))
    assert again.backend == "auto" and again.stale_reason() is None
    monkeypatch.setattr(bundle, "TRACK_FAISS_FROM", 40)  # this library is now "large": auto means faiss
    assert again.index_backend == "faiss"
    assert again.stale_reason() == "the backend changed (scann → faiss)"
