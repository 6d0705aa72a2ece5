"""Window-set similarity (issue 13): the vectorised scores equal a plain reference, and tracks use them."""

from __future__ import annotations

import numpy as np
import pytest

from soundalike.windows import window_scores


def _reference(query: np.ndarray, tracks: list[np.ndarray]) -> tuple[list[float], list[float], list[float]]:
    """Loops over every window pair: the definition, written out."""
    contain, cover, best = [], [], []
    for windows in tracks:
        if len(windows) == 0:
            contain.append(-1.0), cover.append(-1.0), best.append(-1.0)
            continue
        pairs = [[float(np.dot(q, w)) for w in windows] for q in query]
        contain.append(float(np.mean([max(row) for row in pairs])))
        cover.append(float(np.mean([max(pairs[i][j] for i in range(len(query))) for j in range(len(windows))])))
        best.append(max(max(row) for row in pairs))
    return contain, cover, best


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("block", [1 << 22, 50])  # one group, and groups of a track or two
def test_window_scores_equal_the_pairwise_definition(rng, block) -> None:
    query = _unit(rng, 7, 16)
    lengths = np.array([5, 0, 1, 12, 3])
    tracks = [_unit(rng, n, 16) for n in lengths]
    got = window_scores(query, np.concatenate(tracks), lengths, block=block)
    contain, cover, best = _reference(query, tracks)
    np.testing.assert_allclose(got.contain, contain, atol=1e-5)
    np.testing.assert_allclose(got.cover, cover, atol=1e-5)
    np.testing.assert_allclose(got.best, best, atol=1e-5)
    np.testing.assert_allclose(got.symmetric, 0.5 * (np.array(contain) + np.array(cover)), atol=1e-5)


def test_a_track_contains_its_own_windows_perfectly(rng) -> None:
    track = _unit(rng, 9, 8)
    got = window_scores(track[2:5], np.concatenate([track, _unit(rng, 9, 8)]), np.array([9, 9]))
    assert got.contain[0] == pytest.approx(1.0, abs=1e-6) and got.best[0] == pytest.approx(1.0, abs=1e-6)
    assert got.contain[1] < 0.9 and got.cover[0] < 1.0  # the query covers only part of the track
