"""``soundalike radio`` and ``soundalike duplicates`` (issue 14), in-process with CliRunner on a real library."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from click.testing import CliRunner

from soundalike.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def run_stdout(*args: str) -> tuple[int, str]:
    """Exit code and standard output alone (progress goes to standard error)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout


def _id(lib, path) -> str:
    return str(lib.catalog.get_by_path(str(path)).id)


def test_radio_json_has_n_tracks_and_never_a_seed(copies_library):
    lib = copies_library
    seeds = [_id(lib, lib.originals[6]), str(lib.originals[9])]  # an id and a path
    code, out = run("--library", str(lib.folder), "radio", *seeds, "-n", "7", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["type"] == "radio" and len(data["tracks"]) == 7
    assert [s["track_id"] for s in data["seeds"]] == [int(_id(lib, lib.originals[6])), int(_id(lib, lib.originals[9]))]
    assert not {t["track_id"] for t in data["tracks"]} & {s["track_id"] for s in data["seeds"]}
    assert data["options"]["drift"] == 0.5


def test_radio_prints_a_table_and_writes_m3u8_and_xspf(copies_library, tmp_path):
    lib = copies_library
    m3u, xspf = tmp_path / "r.m3u8", tmp_path / "r.xspf"
    code, out = run("--library", str(lib.folder), "radio", _id(lib, lib.originals[0]), "-n", "5", "--spread", "artist", "1", "--m3u", str(m3u), "--xspf", str(xspf))
    assert code == 0, out
    assert "radio from [" in out and out.count("\n  ") >= 6
    assert m3u.read_text(encoding="utf-8").count("#EXTINF:") == 5
    assert len(ET.parse(xspf).getroot()[1]) == 5


def test_radio_weights_and_aspect_are_accepted(copies_library):
    lib = copies_library
    code, out = run("--library", str(lib.folder), "radio", _id(lib, lib.originals[0]), "-n", "3", "--weight", "rhythm=2", "--weight", "timbre=1", "--json")
    assert code == 0, out
    assert json.loads(out)["options"]["weights"] == {"rhythm": 2.0, "timbre": 1.0}


def test_radio_path_goes_from_one_track_to_the_other(copies_library):
    lib = copies_library
    a, b = _id(lib, lib.originals[0]), _id(lib, lib.originals[11])
    code, out = run("--library", str(lib.folder), "radio", "--path", a, b, "-n", "5", "--json")
    assert code == 0, out
    ids = [t["track_id"] for t in json.loads(out)["tracks"]]
    assert len(ids) == 5 and ids[0] == int(a) and ids[-1] == int(b)


def test_radio_from_file_takes_an_audio_file_outside_the_library(copies_library):
    lib = copies_library
    code, out = run("--library", str(lib.folder), "radio", "--from-file", str(lib.originals[3]), "-n", "4", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["seeds"][0]["type"] == "file" and len(data["tracks"]) == 4


def test_radio_without_seeds_or_with_an_unknown_one_is_an_error(copies_library):
    lib = copies_library
    code, out = run("--library", str(lib.folder), "radio")
    assert code == 2 and "at least one SEED" in out
    code, out = run("--library", str(lib.folder), "radio", "999999")
    assert code == 1 and out.startswith("error: no track '999999'")
    code, out = run("--library", str(lib.folder), "radio", "1", "--weight", "melody=2")
    assert code == 2 and "--weight" in out


def test_duplicates_table_names_each_group_and_its_evidence(copies_library):
    lib = copies_library
    code, out = run("--library", str(lib.folder), "duplicates", "-q")
    assert code == 0, out
    assert out.startswith("5 groups of duplicates among 18 tracks")
    assert "byte-identical" in out and "windows match at offset" in out


def test_duplicates_json_matches_the_ground_truth(copies_library):
    lib = copies_library
    code, out = run_stdout("--library", str(lib.folder), "duplicates", "--json")
    assert code == 0, out
    groups = [{t["path"] for t in g["tracks"]} for g in json.loads(out)["groups"]]
    assert sorted(map(sorted, groups)) == sorted(map(sorted, lib.groups))


def test_radio_m3u8_inside_the_music_folder_is_relative_without_root(copies_library):
    import os

    lib = copies_library
    playlist = lib.music / "playlists" / "cli.m3u8"
    playlist.parent.mkdir(exist_ok=True)
    code, out = run("--library", str(lib.folder), "radio", _id(lib, lib.originals[2]), "-n", "6", "--m3u", str(playlist))
    assert code == 0, out
    locations = [x for x in playlist.read_text(encoding="utf-8").splitlines() if x and not x.startswith("#")]
    assert len(locations) == 6 and all(loc.startswith("../") for loc in locations)
    assert all(os.path.isfile(playlist.parent / loc) for loc in locations)
