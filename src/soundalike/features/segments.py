"""Segment vectors: short windows of a track described on their own, for clip matching.

A 10-second excerpt is a *part* of a track, so it is compared with the track's parts. The catalog
stores windows of ``WINDOW_S`` every ``HOP_S``; a query is cut every ``QUERY_HOP_S`` so that one of its
windows lines up with a catalog window to within a quarter of a second.
"""

from __future__ import annotations

import numpy as np

from soundalike.features._stats import named, pool_rows
from soundalike.features.frames import N_MFCC, Frames

WINDOW_S = 5.0
HOP_S = 2.5
QUERY_HOP_S = 0.5
N_MEL_POOLED = 32


def segment_names() -> dict[str, list[str]]:
    """Dimension names of a segment vector, by family, in vector order."""
    return {
        "timbre": named("mfcc_mean_", N_MFCC) + named("mfcc_std_", N_MFCC),
        "spectral": named("mel_mean_", N_MEL_POOLED),
        "harmony": named("chroma_mean_", 12),
        "loudness": ["onset_mean", "onset_std", "loudness_mean", "loudness_std"],
    }


def _window_stats(x: np.ndarray, starts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``x [shape=(d, t)]`` over windows ``[s, s + width)``, via cumulative sums."""
    x = x.astype(np.float64)
    zero = np.zeros((x.shape[0], 1))
    c1 = np.concatenate([zero, np.cumsum(x, axis=1)], axis=1)
    c2 = np.concatenate([zero, np.cumsum(x * x, axis=1)], axis=1)
    ends = starts + width
    mean = (c1[:, ends] - c1[:, starts]) / width
    var = (c2[:, ends] - c2[:, starts]) / width - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def segment_vectors(
    frames: Frames, *, window_s: float = WINDOW_S, hop_s: float = HOP_S
) -> tuple[np.ndarray, np.ndarray]:
    """Describe every ``window_s`` window of a track, one every ``hop_s`` seconds.

    A track shorter than one window gives one segment covering all of it.

    Parameters
    ----------
    frames : Frames
    window_s, hop_s : float
        Window length and step in seconds.

    Returns
    -------
    vectors : np.ndarray [shape=(n_segments, n_dims), dtype=float32]
    starts : np.ndarray [shape=(n_segments,), dtype=float32]
        Start of each window in seconds; each ends ``min(window_s, duration)`` later.
    """
    fr = frames.frame_rate
    t = frames.n_frames
    width = min(t, max(1, int(round(window_s * fr))))
    # Window starts on an exact grid of seconds (rounding a step in frames would drift).
    n_windows = 1 + int(np.floor((t - width) / (hop_s * fr) + 1e-6))
    starts = np.minimum(np.round(np.arange(max(1, n_windows)) * hop_s * fr).astype(int), t - width)
    mfcc_mean, mfcc_std = _window_stats(frames.mfcc, starts, width)
    mel_mean, _ = _window_stats(pool_rows(frames.log_mel, N_MEL_POOLED), starts, width)
    chroma_mean, _ = _window_stats(frames.chroma, starts, width)
    dyn = np.stack([np.log1p(frames.onset), frames.rms_db])
    dyn_mean, dyn_std = _window_stats(dyn, starts, width)
    loud = np.stack([dyn_mean[0], dyn_std[0], dyn_mean[1], dyn_std[1]])
    vectors = np.concatenate([mfcc_mean, mfcc_std, mel_mean, chroma_mean, loud]).T
    return vectors.astype(np.float32), (starts / fr).astype(np.float32)
