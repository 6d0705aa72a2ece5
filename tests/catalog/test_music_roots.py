"""The music folders a catalog remembers, which the web shows track paths relative to."""

from __future__ import annotations

from pathlib import Path

from soundalike.catalog import FAILED, TrackRecord, add_music_roots, music_roots
from soundalike.catalog.sqlite import SQLiteCatalog


def _failed(path: Path) -> TrackRecord:
    return TrackRecord(path=str(path), content_hash="", size=1, mtime=0.0, status=FAILED, error="x", error_reason="x")


def test_ingested_folders_are_remembered_without_the_ones_inside_another(tmp_path: Path) -> None:
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
    music, other = tmp_path / "Music", tmp_path / "usb"
    (music / "new").mkdir(parents=True)
    other.mkdir()
    (other / "one.ogg").write_bytes(b"x")
    add_music_roots(catalog, [music / "new"])
    add_music_roots(catalog, [music, other / "one.ogg"])  # a file given stands for its folder
    revision = catalog.revision()
    assert music_roots(catalog) == [str(music), str(other)]
    assert catalog.revision() == revision, "remembering folders is not a change of the tracks"


def test_a_catalog_from_before_uses_the_deepest_folder_holding_every_track(tmp_path: Path) -> None:
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
    catalog.write([_failed(tmp_path / "Music/a/x.ogg"), _failed(tmp_path / "Music/b/c/y.ogg")])
    assert music_roots(catalog) == [str(tmp_path / "Music")]


def test_no_fallback_folder_when_tracks_share_only_the_file_systems_root(tmp_path: Path) -> None:
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
    catalog.write([_failed(Path("/srv/x.ogg")), _failed(Path("/home/y.ogg"))])
    assert music_roots(catalog) == []
