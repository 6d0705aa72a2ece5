"""Rhythm: tempo and the pattern of onsets (the groove), per frequency band.

The autocorrelation of onset strength, sampled on a logarithmic grid of periods, says which
periodicities a track has (beats, bars, subdivisions); computing it separately for the low, middle
and high bands tells a four-on-the-floor kick from a backbeat snare or eighth-note hats, which a
tempo number alone cannot.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from soundalike.features._stats import named
from soundalike.features.frames import ONSET_BANDS, Frames

WINDOW_S = 8.0  # analysis window for the local autocorrelation (about a few bars)
MIN_BPM, MAX_BPM = 30.0, 480.0
N_PERIODS = 40
N_BAND_PERIODS = 20
BAND_NAMES = ("low", "mid", "high")


def _mean_autocorrelation(x: np.ndarray, frame_rate: float) -> np.ndarray:
    """Autocorrelation of ``x`` averaged over ``WINDOW_S`` windows, normalised to 1 at lag 0."""
    win = int(round(WINDOW_S * frame_rate))
    x = x - x.mean()
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    hop = win // 2
    starts = range(0, len(x) - win + 1, hop)
    segments = np.stack([x[s : s + win] for s in starts])
    segments = segments - segments.mean(axis=1, keepdims=True)
    spec = scipy.fft.rfft(segments * np.hanning(win), n=2 * win, axis=1)
    ac = scipy.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :win]
    energy = ac[:, :1]
    ac = np.where(energy > 1e-12, ac / np.maximum(energy, 1e-12), 0.0)
    return ac.mean(axis=0)


def _at_periods(ac: np.ndarray, frame_rate: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample an autocorrelation at ``n`` log-spaced tempi between MIN_BPM and MAX_BPM."""
    bpm = np.geomspace(MAX_BPM, MIN_BPM, n)
    lags = 60.0 * frame_rate / bpm
    return np.interp(lags, np.arange(len(ac)), ac), bpm


def tempo(ac: np.ndarray, frame_rate: float) -> tuple[float, float]:
    """Tempo in BPM and pulse clarity (autocorrelation peak, 0–1) with a prior around 120 BPM."""
    lags = np.arange(1, len(ac))
    bpm = 60.0 * frame_rate / lags
    ok = (bpm >= 50) & (bpm <= 240)
    prior = np.exp(-0.5 * (np.log2(bpm / 120.0) / 1.0) ** 2)
    score = np.where(ok, np.maximum(ac[1:], 0.0) * prior, -1.0)
    best = int(np.argmax(score))
    return float(bpm[best]), float(max(ac[1:][best], 0.0))


def rhythm(frames: Frames) -> tuple[np.ndarray, list[str]]:
    """Tempo, pulse clarity, onset density and per-band periodicity patterns.

    Returns
    -------
    values : np.ndarray [shape=(4 + N_PERIODS + len(ONSET_BANDS) * N_BAND_PERIODS,)]
    names : list of str
    """
    fr = frames.frame_rate
    ac = _mean_autocorrelation(frames.onset, fr)
    pattern, _ = _at_periods(ac, fr, N_PERIODS)
    bpm, clarity = tempo(ac, fr)
    bands = [_at_periods(_mean_autocorrelation(b, fr), fr, N_BAND_PERIODS)[0] for b in frames.band_onsets]
    onset = frames.onset
    values = np.concatenate(
        [
            [np.log2(bpm / 120.0), clarity, np.log1p(onset.mean()), np.log1p(onset.std())],
            pattern,
            *bands,
        ]
    )
    names = (
        ["tempo_log2", "pulse_clarity", "onset_mean", "onset_std"]
        + named("periodicity_", N_PERIODS)
        + [f"periodicity_{b}_{i:02d}" for b in BAND_NAMES[: len(ONSET_BANDS)] for i in range(N_BAND_PERIODS)]
    )
    return values, names
