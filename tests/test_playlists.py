"""M3U8 and XSPF exports (issue 14): they parse, and every entry resolves to the track's file."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest

from soundalike.playlists import XSPF_NS, write_m3u8, write_xspf
from soundalike.radio import radio, seed_from_track


@pytest.fixture(scope="module")
def tracks(copies_library):
    lib = copies_library
    seed = seed_from_track(lib.index, lib.catalog.get_by_path(str(lib.originals[0])))
    return radio(lib.index, lib.catalog.get, [seed], n=12).tracks


def _m3u_entries(path: Path) -> tuple[list[str], list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    infos = [line for line in lines[1:] if line.startswith("#EXTINF:")]
    locations = [line for line in lines[1:] if line and not line.startswith("#")]
    return infos, locations


def test_m3u8_inside_the_library_has_relative_paths_that_resolve(copies_library, tracks):
    playlist = copies_library.music / "playlists" / "radio.m3u8"
    playlist.parent.mkdir(exist_ok=True)
    write_m3u8(tracks, playlist, root=copies_library.music)
    infos, locations = _m3u_entries(playlist)
    assert len(infos) == len(locations) == len(tracks)
    assert all(not os.path.isabs(loc) for loc in locations)
    resolved = [os.path.realpath(playlist.parent / loc) for loc in locations]
    assert resolved == [os.path.realpath(t.path) for t in tracks]
    assert all(os.path.isfile(p) for p in resolved)


def test_m3u8_extinf_has_duration_and_artist_title(copies_library, tracks):
    playlist = copies_library.music / "radio-info.m3u8"
    write_m3u8(tracks, playlist, root=copies_library.music)
    infos, _ = _m3u_entries(playlist)
    for info, t in zip(infos, tracks, strict=True):
        seconds, _, who = info.removeprefix("#EXTINF:").partition(",")
        assert int(seconds) == round(t.duration)
        # tagged tracks read "artist – title"; the untagged copies their file name
        assert who == (f"{t.artist} – {t.title}" if t.artist and t.title else Path(t.path).stem)


def test_m3u8_outside_the_library_has_absolute_paths(tmp_path, copies_library, tracks):
    playlist = tmp_path / "elsewhere" / "radio.m3u8"
    playlist.parent.mkdir()
    write_m3u8(tracks, playlist, root=copies_library.music)
    _, locations = _m3u_entries(playlist)
    assert locations == [os.path.abspath(t.path) for t in tracks]


def test_xspf_parses_and_every_location_is_a_file_uri_of_the_track(tmp_path, copies_library, tracks):
    odd = copies_library.catalog.get_by_path(str(copies_library.originals[5]))  # spaces, é, # and %
    chosen = [*tracks, odd] if odd.id not in {t.id for t in tracks} else list(tracks)
    out = write_xspf(chosen, tmp_path / "radio.xspf")
    root = ET.parse(out).getroot()
    assert root.tag == f"{{{XSPF_NS}}}playlist" and root.get("version") == "1"
    items = root.findall(f"{{{XSPF_NS}}}trackList/{{{XSPF_NS}}}track")
    assert len(items) == len(chosen)
    for item, t in zip(items, chosen, strict=True):
        uri = item.findtext(f"{{{XSPF_NS}}}location")
        parts = urlsplit(uri)
        assert parts.scheme == "file" and " " not in uri and "#" not in uri.removeprefix("file://")
        local = url2pathname(parts.path)
        assert os.path.samefile(local, t.path)
        assert item.findtext(f"{{{XSPF_NS}}}creator") == t.artist
        assert int(item.findtext(f"{{{XSPF_NS}}}duration")) == round(t.duration * 1000)
