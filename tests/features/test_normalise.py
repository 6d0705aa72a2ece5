"""Normalisation: standardise, weight families equally whatever their size, unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from soundalike.features import Layout
from soundalike.features.normalise import Normaliser

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
