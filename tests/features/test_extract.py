"""Feature extraction: fixed layout, finite values, and families that measure what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from soundalike import synth
from soundalike.audio import SAMPLE_RATE
from soundalike.features import (
    FAMILIES,
    extract,
    extract_query,
    query_style_patches,
    segment_layout,
    track_layout,
)
from soundalike.features.frames import compute_frames
from soundalike.features.harmony import key_profile
from soundalike.features.rhythm import _mean_autocorrelation, tempo

SR = 22050


def test_layout_names_every_dimension_once_in_family_order():
    layout = track_layout()
    assert layout.families == tuple(FAMILIES)
    assert len(set(layout.names)) == layout.dim
    covered = sorted(i for s in layout.slices.values() for i in range(s.start, s.stop))
    assert covered == list(range(layout.dim))


def test_extract_gives_finite_vectors_of_the_layout_sizes(rng):
    y = synth.render(synth.TrackSpec("organ", "backbeat", "C", duration=20.0, seed=1))
    a = extract(y, sample_rate=SR)
    assert a.vector.shape == (track_layout().dim,) and np.all(np.isfinite(a.vector))
    # 5 s windows every 2.5 s over 20 s: starts 0, 2.5, …, 15.
    assert a.segments.shape == (7, segment_layout().dim)
    np.testing.assert_allclose(a.segment_starts, np.arange(7) * 2.5, atol=0.03)
    assert a.duration == pytest.approx(20.0)


def test_extraction_is_deterministic():
    y = synth.render(synth.TrackSpec("pluck", "waltz", "A", duration=8.0))
    np.testing.assert_array_equal(extract(y, sample_rate=SR).vector, extract(y, sample_rate=SR).vector)


def test_a_track_shorter_than_a_window_has_one_segment():
    y = synth.render(synth.TrackSpec("pad", "bossa", "C", duration=3.0))
    a = extract(y, sample_rate=SR)
    assert a.segments.shape[0] == 1 and a.segment_starts[0] == 0.0


def test_white_noise_has_finite_features(rng):
    a = extract((0.1 * rng.standard_normal(SR * 4)).astype(np.float32), sample_rate=SR)
    assert np.all(np.isfinite(a.vector)) and np.all(np.isfinite(a.segments))


@pytest.mark.parametrize("groove", list(synth.GROOVES))
def test_tempo_is_recovered_up_to_an_octave(groove):
    spec = synth.TrackSpec("square", groove, "C", duration=16.0, seed=3)
    frames = compute_frames(synth.render(spec), sample_rate=SR)
    bpm, clarity = tempo(_mean_autocorrelation(frames.onset, frames.frame_rate), frames.frame_rate)
    ratio = bpm / spec.tempo
    assert min(abs(ratio - r) for r in (0.5, 1.0, 2.0)) <= 0.04 * max(ratio, 1), f"{groove}: {bpm:.1f} vs {spec.tempo}"
    assert 0 < clarity <= 1


@pytest.mark.parametrize("key", ["C", "A", "F#m", "D#"])
def test_key_profile_peaks_at_the_key_or_its_relative(key):
    spec = synth.TrackSpec("organ", "halftime", key, duration=12.0, seed=2)
    frames = compute_frames(synth.render(spec), sample_rate=SR)
    scores = key_profile(frames.chroma.mean(axis=1))
    pitch = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    minor = key.endswith("m")
    tonic = pitch.index(key.rstrip("m"))
    best = int(np.argmax(scores))
    expected = tonic + (12 if minor else 0)
    relative = ((tonic + 3) % 12) if minor else ((tonic + 9) % 12 + 12)
    assert best in {expected, relative}, f"{key}: best profile index {best}"


@pytest.mark.parametrize(("seconds", "patches"), [(2.0, 1), (6.0, 1), (10.0, 1), (16.0, 2), (30.0, 3), (180.0, 5)])
def test_a_query_averages_one_style_patch_per_ten_seconds(seconds, patches):
    assert query_style_patches(seconds) == patches


def test_a_query_is_analysed_like_a_track_with_its_own_windows_and_style_patches():
    from soundalike.features import QUERY_HOP_S, style, track_layout

    y = synth.render(synth.TrackSpec(instrument="pluck", groove="backbeat", key="C", duration=10.0, seed=3))
    query = extract_query(y, sample_rate=SAMPLE_RATE)
    track = extract(y, sample_rate=SAMPLE_RATE, segment_hop_s=QUERY_HOP_S)
    hand = slice(0, track_layout().slices["style"].start)
    np.testing.assert_array_equal(query.vector[hand], track.vector[hand])
    np.testing.assert_array_equal(query.segments, track.segments)
    # Its style is its loudest patch, not the mean of the track's three.
    one = style.style_patches(y, sample_rate=SAMPLE_RATE, n_patches=1, loudest=True).mean(axis=0)
    three = style.style_patches(y, sample_rate=SAMPLE_RATE, n_patches=3).mean(axis=0)
    got = query.vector[track_layout().slices["style"]]
    np.testing.assert_allclose(got, one, rtol=0, atol=1e-4)
    assert np.abs(got - three).max() > 1e-3
