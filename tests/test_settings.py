"""Settings: defaults < TOML file < environment < command line."""

from __future__ import annotations

import pytest

from soundalike.errors import ConfigError
from soundalike.settings import Settings, load_settings
from soundalike.vocabulary import DEFAULT_WEIGHTS


def test_defaults_apply_without_any_source(tmp_path):
    s = load_settings({"library": tmp_path}, environ={})
    assert (s.index, s.k, s.max_duration) == ("auto", 10, 1800.0)
    assert s.family_weights == {
        "timbre": 1.0, "spectral": 1.0, "rhythm": 1.0, "harmony": 1.0, "loudness": 1.0, "style": DEFAULT_WEIGHTS["style"],
    }  # fmt: skip
    assert load_settings({"library": tmp_path, "style": "false"}, environ={}).family_weights["style"] == 0.0


def test_layers_override_in_order(tmp_path):
    (tmp_path / "soundalike.toml").write_text('index = "annoy"\nworkers = 3\nbatch_size = 7\n[weights]\nrhythm = 2.5\n')
    s = load_settings({"library": tmp_path, "workers": 5}, environ={"SOUNDALIKE_WORKERS": "4", "SOUNDALIKE_BATCH_SIZE": "9"})
    assert (s.index, s.workers, s.batch_size) == ("annoy", 5, 9)
    assert s.family_weights["rhythm"] == 2.5


def test_environment_names_the_library(tmp_path):
    s = load_settings({}, environ={"SOUNDALIKE_LIBRARY": str(tmp_path), "SOUNDALIKE_WEIGHTS": "timbre=2,harmony=0.5"})
    assert s.library == tmp_path
    assert s.family_weights["timbre"] == 2.0 and s.family_weights["harmony"] == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('index = "hnswlib"\n', "unknown backend 'hnswlib'"),
        ("workers = 0\n", "at least 1"),
        ("colour = 1\n", "unknown settings"),
        ("[weights]\nmood = 1\n", "unknown families"),
        ("index = \n", "not valid TOML"),
    ],
)
def test_bad_settings_are_named(tmp_path, text, message):
    (tmp_path / "soundalike.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings({"library": tmp_path}, environ={})


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().k = 3  # type: ignore[misc]
