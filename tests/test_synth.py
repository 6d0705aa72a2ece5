"""Tests of the synthetic music generator: shapes, determinism, library files, and the ground truth.

The ground-truth tests measure each factor with librosa (not with soundalike's own features), so
that they check the generator, not the analysis: the groove sets the tempo, the key sets the pitch
classes, the instrument sets the timbre whatever the groove, and the groove sets the rhythm
whatever the instrument.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import librosa
import numpy as np
import pytest

from soundalike import synth
from soundalike.synth import GROOVES, INSTRUMENTS, TrackSpec

SR = 22050


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-9)


# --- render -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "sample_rate"), [(12.0, 22050), (3.3, 16000), (1.00001, 44100)]
)
def test_render_has_exact_length_and_minus_1_dbfs_peak(duration: float, sample_rate: int) -> None:
    y = synth.render(
        TrackSpec("organ", "backbeat", "C", duration=duration), sample_rate=sample_rate
    )

    assert y.dtype == np.float32
    assert y.shape == (round(duration * sample_rate),)
    assert 20 * np.log10(np.max(np.abs(y))) == pytest.approx(-1.0, abs=0.05)


def test_render_is_identical_for_the_same_spec() -> None:
    spec = TrackSpec("pluck", "bossa", "F#m", duration=4.0, seed=7)

    np.testing.assert_array_equal(synth.render(spec), synth.render(spec))


def test_render_varies_between_seeds_with_the_same_factors() -> None:
    a = synth.render(TrackSpec("pluck", "bossa", "F#m", duration=4.0, seed=1))
    b = synth.render(TrackSpec("pluck", "bossa", "F#m", duration=4.0, seed=2))

    assert np.max(np.abs(a - b)) > 0.05


def test_render_of_a_12_s_track_takes_under_0_2_s() -> None:
    spec = TrackSpec("pad", "waltz", "A", duration=12.0)  # pad is the slowest instrument
    synth.render(spec)  # warm the wavetable and drum caches
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        synth.render(spec)
        timings.append(time.perf_counter() - start)

    assert min(timings) < 0.2


# --- ground truth -----------------------------------------------------------------------------


@pytest.mark.parametrize("instrument", INSTRUMENTS)
@pytest.mark.parametrize("groove", list(GROOVES))
def test_measured_tempo_matches_the_groove(instrument: str, groove: str) -> None:
    spec = TrackSpec(instrument, groove, "C", duration=12.0, seed=3)
    y = synth.render(spec, sample_rate=SR)

    measured = float(librosa.feature.tempo(y=y, sr=SR)[0])

    # Beat trackers may lock onto half or double the tempo; 4 % covers their tempo grid.
    ratios = [measured / (spec.tempo * octave) for octave in (0.5, 1.0, 2.0)]
    assert min(abs(r - 1.0) for r in ratios) < 0.04, f"measured {measured:.1f}, true {spec.tempo}"


@pytest.mark.parametrize("instrument", INSTRUMENTS)
@pytest.mark.parametrize("key", ["C", "A", "F#m", "Eb"])
def test_strongest_pitch_class_is_the_tonic_or_fifth(instrument: str, key: str) -> None:
    spec = TrackSpec(instrument, "backbeat", key, duration=8.0, seed=5)
    y = synth.render(spec, sample_rate=SR)

    strongest = int(np.argmax(librosa.feature.chroma_stft(y=y, sr=SR).mean(axis=1)))

    tonic = librosa.note_to_midi(spec.key.rstrip("m") + "4") % 12
    assert strongest in (tonic, (tonic + 7) % 12), f"{spec.key}: strongest pitch class {strongest}"


@pytest.fixture(scope="module")
def one_track_per_instrument_and_groove() -> list[tuple[TrackSpec, np.ndarray]]:
    specs = [
        TrackSpec(instrument, groove, "C", duration=12.0, seed=i)
        for i, (instrument, groove) in enumerate(
            (instrument, groove) for instrument in INSTRUMENTS for groove in GROOVES
        )
    ]
    return [(spec, synth.render(spec, sample_rate=SR)) for spec in specs]


def test_instrument_is_recognised_from_mfccs_across_grooves(
    one_track_per_instrument_and_groove: list[tuple[TrackSpec, np.ndarray]],
) -> None:
    tracks = one_track_per_instrument_and_groove
    mfccs = [librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20) for _, y in tracks]
    x = _standardise(np.array([np.concatenate([m.mean(axis=1), m.std(axis=1)]) for m in mfccs]))
    instruments = np.array([spec.instrument for spec, _ in tracks])
    grooves = np.array([spec.groove for spec, _ in tracks])

    wrong = []
    for i, (spec, _) in enumerate(tracks):
        # Centroid of each instrument over the OTHER grooves: timbre must carry across grooves.
        others = grooves != spec.groove
        centroids = {name: x[others & (instruments == name)].mean(axis=0) for name in INSTRUMENTS}
        nearest = min(centroids, key=lambda name: float(np.sum((x[i] - centroids[name]) ** 2)))
        if nearest != spec.instrument:
            wrong.append((spec.name, nearest))

    assert wrong == []


def test_groove_is_recognised_from_the_tempogram_across_instruments(
    one_track_per_instrument_and_groove: list[tuple[TrackSpec, np.ndarray]],
) -> None:
    tracks = one_track_per_instrument_and_groove
    profiles = []
    for _, y in tracks:
        onset = librosa.onset.onset_strength(y=y, sr=SR)
        profiles.append(librosa.feature.tempogram(onset_envelope=onset, sr=SR).mean(axis=1)[1:])
    x = _standardise(np.array(profiles))
    distance = np.square(x[:, None, :] - x[None, :, :]).sum(axis=-1)
    np.fill_diagonal(distance, np.inf)

    nearest = distance.argmin(axis=1)

    # Each track's nearest neighbour has another instrument (one track per pair), same groove.
    wrong = [
        (tracks[i][0].name, tracks[j][0].name)
        for i, j in enumerate(nearest)
        if tracks[i][0].groove != tracks[j][0].groove
    ]
    assert wrong == []


# --- specs ------------------------------------------------------------------------------------


def test_track_spec_name_and_tempo() -> None:
    spec = TrackSpec("pluck", "backbeat", "C")

    assert spec.name == "pluck-backbeat-C-s0"
    assert spec.tempo == GROOVES["backbeat"].bpm == 96.0


def test_track_spec_stores_flat_keys_as_sharps_and_names_them_file_safely() -> None:
    spec = TrackSpec("pad", "waltz", "Bbm", seed=3)

    assert spec.key == "A#m"
    assert spec.name == "pad-waltz-Asharpm-s3"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instrument": "kazoo"}, "kazoo"),
        ({"groove": "polka"}, "polka"),
        ({"key": "H"}, "'H'"),
        ({"duration": 0.0}, "duration"),
    ],
)
def test_track_spec_rejects_unknown_factors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"instrument": "organ", "groove": "backbeat", "key": "C", **kwargs}

    with pytest.raises(ValueError, match=message):
        TrackSpec(**args)  # type: ignore[arg-type]


def test_keys_cover_the_24_major_and_minor_keys() -> None:
    assert len(synth.KEYS) == len(set(synth.KEYS)) == 24
    assert {TrackSpec("organ", "backbeat", k).key for k in synth.KEYS} == set(synth.KEYS)


def test_library_specs_is_the_full_factorial_with_unique_names() -> None:
    specs = synth.library_specs(keys=("C", "Am", "F#"), duration=5.0, seed=2)

    combos = {(s.instrument, s.groove, s.key) for s in specs}
    assert len(specs) == len(combos) == len(INSTRUMENTS) * len(GROOVES) * 3
    assert len({s.name for s in specs}) == len(specs)
    assert {s.duration for s in specs} == {5.0}


def test_library_specs_replicates_differ_only_by_seed() -> None:
    specs = synth.library_specs(instruments=["organ"], grooves=["waltz"], keys=["C"], replicates=3)

    assert [(s.instrument, s.groove, s.key) for s in specs] == [("organ", "waltz", "C")] * 3
    assert len({s.seed for s in specs}) == 3


# --- libraries --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    directory = tmp_path_factory.mktemp("library")
    specs = synth.library_specs(
        instruments=["organ", "pluck"],
        grooves=["backbeat", "waltz"],
        keys=["C", "Am"],
        duration=2.0,
    )
    return directory, synth.write_library(directory, specs, sample_rate=SR)


def test_write_library_writes_labels_csv_with_one_row_per_track(
    small_library: tuple[Path, list[tuple[Path, TrackSpec]]],
) -> None:
    directory, written = small_library

    with open(directory / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)

    assert reader.fieldnames == ["path", "instrument", "groove", "tempo", "key"]
    assert len(rows) == len(written) == 8
    for row, (path, spec) in zip(rows, written, strict=True):
        assert directory / row["path"] == path
        assert (row["instrument"], row["groove"], row["key"]) == (
            spec.instrument,
            spec.groove,
            spec.key,
        )
        assert float(row["tempo"]) == spec.tempo


def test_write_library_files_exist_and_mix_formats(
    small_library: tuple[Path, list[tuple[Path, TrackSpec]]],
) -> None:
    _, written = small_library

    assert all(path.is_file() and path.stat().st_size > 0 for path, _ in written)
    assert {path.suffix for path, _ in written} == {".mp3", ".ogg", ".flac", ".wav"}
