"""Normalisation: standardise, weight families equally whatever their size, unit vectors."""

from __future__ import annotations

import logging
from importlib.resources import files

import numpy as np
import pytest

from soundalike.features import FEATURE_VERSION, Layout, normalise, segment_layout, track_layout
from soundalike.features.normalise import (
    PRIOR_TRACKS,
    REFERENCE_FILE,
    Normaliser,
    Reference,
    dimension_keys,
    read_reference,
)

LAYOUT = Layout.from_names({"small": ["a", "b"], "big": [f"x{i}" for i in range(100)], "mid": ["m1", "m2", "m3"]})


@pytest.fixture
def data(rng):
    return rng.standard_normal((200, LAYOUT.dim)) * rng.uniform(0.1, 50, LAYOUT.dim) + rng.uniform(-100, 100, LAYOUT.dim)


def test_rows_have_unit_length_and_each_family_its_weighted_share(data):
    norm = Normaliser.fit([data], LAYOUT, {"big": 2.0})
    x = norm.transform(data)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    shares = {f: np.linalg.norm(x[:, s], axis=1) ** 2 for f, s in LAYOUT.slices.items()}
    np.testing.assert_allclose(shares["big"], 0.5, atol=1e-5)
    np.testing.assert_allclose(shares["small"], 0.25, atol=1e-5)


def test_dot_product_is_the_weighted_mean_of_family_cosines(data):
    norm = Normaliser.fit([data], LAYOUT, {"small": 1.0, "big": 3.0, "mid": 0.0})
    x = norm.transform(data)
    cos = norm.aspect_similarities(x[0], x[1:])
    assert set(cos) == {"small", "big"}
    expected = (1.0 * cos["small"] + 3.0 * cos["big"]) / 4.0
    np.testing.assert_allclose(x[1:] @ x[0], expected, atol=1e-5)


def test_aspect_vectors_zero_other_families(data):
    norm = Normaliser.fit([data], LAYOUT, {})
    q = norm.transform(data[0], "mid")
    assert np.count_nonzero(q[LAYOUT.slices["big"]]) == 0
    assert np.linalg.norm(q[LAYOUT.slices["mid"]]) == pytest.approx(1.0, abs=1e-6)


def test_streamed_fit_equals_fit_on_everything(data):
    whole = Normaliser.fit([data], LAYOUT, {})
    chunked = Normaliser.fit([data[:50], data[50:130], data[130:]], LAYOUT, {})
    np.testing.assert_allclose(whole.mean, chunked.mean)
    np.testing.assert_allclose(whole.std, chunked.std, rtol=1e-9)


def test_unknown_aspect_or_family_is_refused(data):
    norm = Normaliser.fit([data], LAYOUT, {})
    with pytest.raises(ValueError, match="unknown aspect 'mood'"):
        norm.transform(data[0], "mood")
    with pytest.raises(ValueError, match="unknown families"):
        Normaliser.fit([data], LAYOUT, {"mood": 1.0})


def test_arrays_round_trip(data):
    norm = Normaliser.fit([data], LAYOUT, {"mid": 2.0})
    back = Normaliser.from_arrays(norm.to_arrays(), LAYOUT)
    np.testing.assert_array_equal(back.transform(data), norm.transform(data))


def reference_for(layout: Layout, mean: np.ndarray, var: np.ndarray, *, pseudo_count: float = 20.0) -> Reference:
    return Reference(keys=tuple(dimension_keys(layout)), mean=mean, var=var, pseudo_count=pseudo_count)


def test_prior_weight_vanishes_for_a_large_library(rng):
    data = rng.standard_normal((10_000, LAYOUT.dim)) * 3.0 + 1.0
    prior = reference_for(LAYOUT, np.full(LAYOUT.dim, 7.0), np.full(LAYOUT.dim, 25.0))
    own = Normaliser.fit([data], LAYOUT, {})
    pooled = Normaliser.fit([data], LAYOUT, {}, prior=prior)
    # 20 pseudo-tracks against 10,000: the mean moves by 0.2 % of the gap (6 / 3 = 2 std), the std by ~0.5 %
    np.testing.assert_allclose((pooled.mean - own.mean) / own.std, 0.0, atol=0.01)
    np.testing.assert_allclose(pooled.std / own.std, 1.0, atol=0.01)


def test_a_three_track_library_is_standardised_mostly_by_the_reference(rng):
    data = rng.standard_normal((3, LAYOUT.dim))
    prior = reference_for(LAYOUT, np.full(LAYOUT.dim, 10.0), np.full(LAYOUT.dim, 4.0))
    norm = Normaliser.fit([data], LAYOUT, {}, prior=prior)
    np.testing.assert_allclose(norm.mean, (3 * data.mean(axis=0) + 20 * 10.0) / 23)
    assert np.all(np.abs(norm.mean - 10.0) < 0.2 * np.abs(data.mean(axis=0) - 10.0))


def test_pooled_variance_counts_the_distance_between_the_means():
    layout = Layout.from_names({"one": ["a"]})
    prior = reference_for(layout, np.array([2.0]), np.array([0.0]), pseudo_count=2.0)
    norm = Normaliser.fit([np.zeros((2, 1))], layout, {}, prior=prior)
    # two points at 0 and two at 2: mean 1, variance 1, though each part alone has variance 0
    np.testing.assert_allclose(norm.mean, [1.0])
    np.testing.assert_allclose(norm.std, [1.0])


def test_dimensions_missing_from_the_reference_get_no_prior(data):
    small = LAYOUT.slices["small"]
    partial = Reference(
        keys=tuple(dimension_keys(LAYOUT)[small]), mean=np.full(2, 500.0), var=np.full(2, 9.0), pseudo_count=20.0
    )
    own = Normaliser.fit([data[:3]], LAYOUT, {})
    pooled = Normaliser.fit([data[:3]], LAYOUT, {}, prior=partial)
    np.testing.assert_array_equal(pooled.mean[small.stop :], own.mean[small.stop :])
    np.testing.assert_array_equal(pooled.std[small.stop :], own.std[small.stop :])
    assert np.all(pooled.mean[small] > 400.0)


def test_an_empty_library_takes_the_reference_statistics():
    prior = reference_for(LAYOUT, np.full(LAYOUT.dim, 3.0), np.full(LAYOUT.dim, 4.0))
    norm = Normaliser.fit([np.zeros((0, LAYOUT.dim))], LAYOUT, {}, prior=prior)
    np.testing.assert_allclose(norm.mean, 3.0)
    np.testing.assert_allclose(norm.std, 2.0)


@pytest.mark.parametrize("kind", ["track", "segment"])
def test_shipped_reference_matches_the_feature_version_and_layout(kind):
    ref = read_reference(kind)  # raises if made for another FEATURE_VERSION: run tools/make_reference_stats.py
    layout = track_layout() if kind == "track" else segment_layout()
    assert ref.keys == tuple(dimension_keys(layout))
    assert np.isfinite(ref.mean).all() and np.isfinite(ref.var).all() and (ref.var >= 0).all()
    assert ref.pseudo_count >= PRIOR_TRACKS


def test_reference_of_another_feature_version_is_refused(tmp_path):
    path = tmp_path / "old.npz"
    with np.load(files("soundalike.features").joinpath(REFERENCE_FILE).open("rb")) as z:
        np.savez(path, **{**{k: z[k] for k in z.files}, "feature_version": np.int64(FEATURE_VERSION + 1)})
    with pytest.raises(ValueError, match=f"expected {FEATURE_VERSION}, found {FEATURE_VERSION + 1}"):
        read_reference("track", path=path)


def test_missing_reference_falls_back_to_no_prior_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(normalise, "REFERENCE_FILE", "no-such-file.npz")
    normalise.reference.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="soundalike.features.normalise"):
            assert normalise.reference("track") is None
    finally:
        normalise.reference.cache_clear()
    assert "no reference statistics for track vectors" in caplog.text
