"""Timbre: what the sound is made of, from MFCC statistics and their deltas."""

from __future__ import annotations

import numpy as np

from soundalike.features._stats import mean_std, named
from soundalike.features.frames import N_MFCC, Frames

N_COV = 12  # MFCCs 1..12 whose correlations describe the shape of the timbre distribution


def timbre(frames: Frames) -> tuple[np.ndarray, list[str]]:
    """MFCC distribution: mean, spread, change, and correlations between coefficients.

    A track is treated as a cloud of timbre frames (as Musly does): its mean and standard deviation,
    the standard deviation of the frame-to-frame delta (how fast the timbre moves) and the
    correlation of coefficients 1..12 (the shape of the cloud).

    Parameters
    ----------
    frames : Frames

    Returns
    -------
    values : np.ndarray [shape=(3 * N_MFCC + N_COV * (N_COV - 1) / 2,)]
    names : list of str
    """
    mfcc = frames.mfcc.astype(np.float64)
    mean, std = mean_std(mfcc)
    delta = np.diff(mfcc, axis=1) if mfcc.shape[1] > 1 else np.zeros_like(mfcc)
    delta_std = delta.std(axis=1)
    corr = np.asarray(np.corrcoef(mfcc[1 : N_COV + 1])) if mfcc.shape[1] > 2 else np.eye(N_COV)
    corr = np.nan_to_num(corr.reshape(N_COV, N_COV))
    upper = corr[np.triu_indices(N_COV, k=1)]
    values = np.concatenate([mean, std, delta_std, upper])
    names = (
        named("mfcc_mean_", N_MFCC)
        + named("mfcc_std_", N_MFCC)
        + named("mfcc_delta_std_", N_MFCC)
        + [f"mfcc_corr_{i + 1:02d}_{j + 1:02d}" for i, j in zip(*np.triu_indices(N_COV, k=1), strict=True)]
    )
    return values, names
