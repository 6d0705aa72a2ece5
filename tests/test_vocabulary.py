"""The shared naming helpers: paths shown relative to the library's folders, labels that tell twins apart."""

from __future__ import annotations

import pytest

from soundalike.vocabulary import distinct_labels, relative_path


def test_a_path_is_shown_below_its_music_folder() -> None:
    assert relative_path("/home/ann/Music/flare-game/battle_theme.ogg", ["/home/ann/Music"]) == "flare-game/battle_theme.ogg"


def test_with_several_folders_a_path_is_led_by_its_folders_name() -> None:
    roots = ["/home/ann/Music", "/mnt/usb/Soundtracks"]
    assert relative_path("/mnt/usb/Soundtracks/a/x.ogg", roots) == "Soundtracks/a/x.ogg"
    assert relative_path("/home/ann/Music/x.ogg", roots) == "Music/x.ogg"


@pytest.mark.parametrize("path", ["/etc/passwd", "/home/ann/Music2/x.ogg", "/home/ann/Music"])
def test_a_path_under_no_music_folder_is_shown_by_its_name_alone(path: str) -> None:
    assert relative_path(path, ["/home/ann/Music"]) == path.rsplit("/", 1)[1]


def test_names_without_a_twin_stay_as_they_are() -> None:
    assert distinct_labels(["a.ogg", "Intro"], ["/m/x/a.ogg", "/m/y/1.ogg"]) == ["a.ogg", "Intro"]


def test_two_same_named_files_get_the_folder_that_tells_them_apart() -> None:
    paths = ["/m/flare-game/battle_theme.ogg", "/m/hedgewars-data/battle_theme.ogg", "/m/flare-game/boss.mp3"]
    names = ["battle_theme.ogg", "battle_theme.ogg", "boss.mp3"]
    assert distinct_labels(names, paths) == ["flare-game/battle_theme.ogg", "hedgewars-data/battle_theme.ogg", "boss.mp3"]


def test_as_many_folders_as_it_takes() -> None:
    paths = ["/m/one/disc 1/x.ogg", "/m/two/disc 1/x.ogg"]
    assert distinct_labels(["x.ogg", "x.ogg"], paths) == ["one/disc 1/x.ogg", "two/disc 1/x.ogg"]


def test_same_titles_get_their_folder_or_their_file_when_they_share_one() -> None:
    paths = ["/m/a/1.ogg", "/m/b/2.ogg", "/m/b/3.ogg"]
    assert distinct_labels(["Intro"] * 3, paths) == ["Intro (a)", "Intro (b/2.ogg)", "Intro (b/3.ogg)"]
