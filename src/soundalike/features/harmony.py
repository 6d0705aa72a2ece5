"""Harmony: pitch-class content and key."""

from __future__ import annotations

import numpy as np

from soundalike.features._stats import mean_std, named
from soundalike.features.frames import Frames

# Krumhansl–Kessler key profiles, C major and C minor.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCHES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")


def key_profile(chroma_mean: np.ndarray) -> np.ndarray:
    """Correlation of a mean chroma vector with the 24 major and minor key profiles.

    Returns
    -------
    np.ndarray [shape=(24,)]
        Correlations for C major … B major, then C minor … B minor.
    """
    out = []
    for profile in (_MAJOR, _MINOR):
        for shift in range(12):
            rolled = np.roll(profile, shift)
            if chroma_mean.std() < 1e-9:
                out.append(0.0)
            else:
                out.append(float(np.corrcoef(chroma_mean, rolled)[0, 1]))
    return np.asarray(out)


def harmony(frames: Frames) -> tuple[np.ndarray, list[str]]:
    """Chroma mean and spread, key correlations and how fast the harmony changes.

    Returns
    -------
    values : np.ndarray [shape=(12 + 12 + 24 + 1,)]
    names : list of str
    """
    chroma = frames.chroma.astype(np.float64)
    mean, std = mean_std(chroma)
    keys = key_profile(mean)
    norm = chroma / np.maximum(np.linalg.norm(chroma, axis=0, keepdims=True), 1e-10)
    change = 1.0 - np.sum(norm[:, 1:] * norm[:, :-1], axis=0) if chroma.shape[1] > 1 else np.zeros(1)
    values = np.concatenate([mean, std, keys, [change.mean()]])
    names = (
        [f"chroma_mean_{p}" for p in PITCHES]
        + [f"chroma_std_{p}" for p in PITCHES]
        + [f"key_{p}_major" for p in PITCHES]
        + [f"key_{p}_minor" for p in PITCHES]
        + ["harmonic_change"]
    )
    return values, names


__all__ = ["harmony", "key_profile", "named"]
