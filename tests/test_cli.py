"""The command line, run in-process with click's CliRunner on real files and a real library."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest
from click.testing import CliRunner

from soundalike import audio, synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.cli import main


@pytest.fixture(scope="module")
def cli_library(synth_library, tmp_path_factory):
    """A small library (12 tracks plus two bad files) ingested through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    music = root / "music"
    music.mkdir()
    for p, _ in synth_library.tracks[::3][:12]:
        shutil.copy(p, music / p.name)
    (music / "empty.mp3").write_bytes(b"")
    (music / "notes.ogg").write_text("not audio\n" * 30)
    library = root / "library"
    result = CliRunner().invoke(main, ["--library", str(library), "ingest", str(music), "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    return library, music, result.output


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_ingest_prints_a_summary_with_each_failure(cli_library):
    _, _, output = cli_library
    assert "found 14 files: analysed 12, unchanged 0, reused 0, failed 2" in output
    assert "empty.mp3: empty (0 bytes)" in output
    assert "notes.ogg" in output
    assert "index: scann, 12 tracks" in output


def test_failures_lists_reasons(cli_library):
    library, _, _ = cli_library
    code, out = run("--library", str(library), "failures")
    assert code == 0
    assert "[empty]" in out and "[not-audio]" in out and "2 failed" in out


def test_stats_shows_tracks_failures_and_index(cli_library):
    library, _, _ = cli_library
    code, out = run("stats", "--library", str(library), "--json")
    info = json.loads(out)
    assert (info["tracks"], info["failures"]) == (12, 2)
    assert info["index"]["backend"] == "scann" and info["index"]["up_to_date"]
    assert info["hours"] == pytest.approx(12 * 20 / 3600, abs=1e-3)


def test_query_json_has_the_documented_shape(cli_library, tmp_path):
    library, music, _ = cli_library
    clip = audio.encode(
        tmp_path / "clip.ogg", synth.render(synth.TrackSpec("pad", "bossa", "D", duration=8.0, seed=7)), sample_rate=22050
    )
    code, out = run("--library", str(library), "query", str(clip), "-k", "4", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert set(data) == {"query", "results", "least_similar"}
    assert len(data["results"]) == 4 and len(data["least_similar"]) == 4
    assert data["query"]["type"] == "file"
    assert all(isinstance(r["why"], str) and r["why"] for r in data["results"] + data["least_similar"])
    assert data["results"][0]["why_parts"]["key"][0] == "D major"  # the clip's key, from its analysis


def test_similar_prints_why_under_each_row_in_words(cli_library, synth_library):
    library, music, _ = cli_library
    target = sorted(p for p in music.iterdir() if p.name not in {"empty.mp3", "notes.ogg"})[0]
    code, out = run("--library", str(library), "similar", str(target), "-k", "11")
    assert code == 0, out
    lines = out.split("least similar")[0].splitlines()
    query = synth_library.spec_of(str(synth_library.music / target.name))
    rows = [(i, line) for i, line in enumerate(lines) if re.match(r"\s+\d+\s+\d\.\d{3}\s", line)]
    assert len(rows) == 11
    checked = 0
    for i, row in rows:
        name = row.split("] ", 1)[1].strip()
        why = lines[i + 1].strip()
        assert why.startswith("why: ") and len(why) > len("why: "), why
        spec = synth_library.spec_of(str(synth_library.music / name))
        if spec.groove == query.groove:  # the same groove is the same tempo (or an octave of it, named)
            assert any(w in why for w in ("same tempo", "double tempo", "half tempo")), (name, why)
            checked += 1
        if spec.key != query.key:
            assert "different key" in why or "same key" not in why, (name, why)
    assert checked >= 1


def test_similar_by_path_prints_a_table(cli_library):
    library, music, _ = cli_library
    target = sorted(p for p in music.iterdir() if p.name not in {"empty.mp3", "notes.ogg"})[0]
    code, out = run("--library", str(library), "similar", str(target), "-k", "3", "--aspect", "rhythm")
    assert code == 0, out
    assert "most similar" in out and "least similar" in out and "aspect: rhythm" in out
    assert target.name not in out.split("most similar")[1]


def test_segments_csv_has_the_documented_columns(cli_library, tmp_path, synth_library):
    library, music, _ = cli_library
    source = next(p for p in music.iterdir() if p.stat().st_size > 1000)
    spec = synth_library.spec_of(str(synth_library.music / source.name))
    clip = audio.encode(tmp_path / "c.mp3", audio.excerpt(synth.render(spec), sample_rate=22050, start_s=4, duration_s=10), sample_rate=22050)
    out_csv = tmp_path / "matches.csv"
    code, out = run("--library", str(library), "query", str(clip), "--segments-csv", str(out_csv))
    assert code == 0, out
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["query_start_s", "query_end_s", "track_id", "path", "track_start_s", "track_end_s", "similarity"]
    assert rows[0]["path"].endswith(source.name)


def test_expected_errors_are_one_line_without_traceback(cli_library, tmp_path):
    library, _, _ = cli_library
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 10)
    for args, needle in [
        (["query", str(tmp_path / "missing.mp3")], "missing.mp3: file not found"),
        (["query", str(bad)], "bad.mp3"),
        (["similar", "99999"], "no track '99999'"),
    ]:
        code, out = run("--library", str(library), *args)
        assert code == 1
        assert out.startswith("error: ") and needle in out
        assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_querying_a_library_that_does_not_exist_says_so(tmp_path):
    code, out = run("--library", str(tmp_path / "none"), "similar", "1")
    assert code == 1 and "no catalog here" in out


def test_bad_options_are_usage_errors(cli_library):
    library, _, _ = cli_library
    code, out = run("--library", str(library), "similar", "1", "-k", "0")
    assert code == 2 and "-k" in out
    code, out = run("--library", str(library), "similar", "1", "--aspect", "mood")
    assert code == 2 and "mood" in out


def test_index_backend_can_be_switched_and_the_choice_is_kept(cli_library):
    library, _, _ = cli_library
    code, out = run("--library", str(library), "index", "--backend", "annoy")
    assert code == 0 and "index: annoy, 12 tracks" in out
    code, out = run("--library", str(library), "stats", "--json")
    assert json.loads(out)["index"]["backend"] == "annoy"
    good = SQLiteCatalog(library / "catalog.sqlite").tracks()[0]
    code, out = run("--library", str(library), "similar", str(good.id), "-k", "2")
    assert code == 0, out  # the chosen backend is kept: nothing to rebuild (issue 12)
    assert "rebuilt" not in out
    code, out = run("--library", str(library), "index", "--backend", "scann")
    assert code == 0 and "index: scann, 12 tracks" in out


def test_check_passes_on_a_sound_catalog(cli_library):
    library, _, _ = cli_library
    code, out = run("--library", str(library), "check")
    assert code == 0 and out.startswith("ok: 12 tracks, 2 failures")


def test_ingest_of_a_path_that_does_not_exist_is_a_usage_error_and_stores_nothing(tmp_path):
    library = tmp_path / "library"
    code, output = run("--library", str(library), "ingest", str(tmp_path / "does" / "not" / "exist"), "-q")
    assert code == 1
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines == [f"error: no such file or folder: {tmp_path / 'does' / 'not' / 'exist'}"]
    catalog = library / "catalog.sqlite"
    if catalog.exists():  # opened but empty is fine; a stored failure is not
        cat = SQLiteCatalog(catalog, create=False)
        try:
            assert cat.file_states() == {}
        finally:
            cat.close()


def test_ingest_of_a_folder_without_audio_says_so_in_one_line(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "readme.txt").write_text("no music here\n")
    code, output = run("--library", str(tmp_path / "library"), "ingest", str(folder))
    assert code == 1
    assert [line for line in output.splitlines() if line.strip()] == [f"error: no audio files under {folder}"]
