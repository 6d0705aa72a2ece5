"""Loudness and dynamics."""

from __future__ import annotations

import numpy as np

from soundalike.features.frames import Frames


def loudness(frames: Frames) -> tuple[np.ndarray, list[str]]:
    """Level, spread, range and crest of frame loudness (dBFS), and the share of quiet frames.

    Returns
    -------
    values : np.ndarray [shape=(8,)]
    names : list of str
    """
    db = frames.rms_db.astype(np.float64)
    loud = db[db > db.max() - 60.0] if db.size else db
    p10, p50, p90, p99 = np.percentile(loud, [10, 50, 90, 99])
    values = np.array(
        [
            loud.mean(),
            loud.std(),
            p10,
            p50,
            p90,
            p90 - p10,  # loudness range
            p99 - p50,  # crest: how far peaks rise above the body
            float(np.mean(db < p50 - 20.0)),  # share of near-silent frames (breaks, fades)
        ]
    )
    names = [
        "loudness_mean",
        "loudness_std",
        "loudness_p10",
        "loudness_p50",
        "loudness_p90",
        "loudness_range",
        "loudness_crest",
        "quiet_share",
    ]
    return values, names
