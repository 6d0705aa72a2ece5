"""Spectral shape: where the energy sits and how peaky or noisy it is."""

from __future__ import annotations

import numpy as np

from soundalike.features._stats import mean_std, named, pool_rows
from soundalike.features.frames import N_FFT, N_MELS, Frames

N_CONTRAST_BANDS = 6
MEL_STD_BANDS = 16


def _octave_edges(sample_rate: int) -> np.ndarray:
    """FFT-bin edges of six octave bands from 200 Hz, plus the rest."""
    freqs = 200.0 * 2.0 ** np.arange(N_CONTRAST_BANDS + 1)
    edges = np.minimum((freqs * N_FFT / sample_rate).astype(int), N_FFT // 2)
    return np.concatenate([[0], edges[:-1], [N_FFT // 2 + 1]])


def _cumsum_bins(power: np.ndarray) -> np.ndarray:
    """``np.cumsum(power, axis=0)``: the same float32 sums in the same order, a whole row at a time.

    numpy accumulates down axis 0 one element at a time; adding rows is vectorised and about ten
    times faster, and the sums are bit-identical (the roll-off compares them with a threshold).
    """
    out = np.empty_like(power)
    out[0] = power[0]
    for i in range(1, power.shape[0]):
        np.add(out[i - 1], power[i], out=out[i])
    return out


def contrast(frames: Frames) -> np.ndarray:
    """Spectral contrast per octave band: dB between the band's peaks and valleys.

    Returns
    -------
    np.ndarray [shape=(N_CONTRAST_BANDS + 1, t)]
    """
    edges = _octave_edges(frames.sample_rate)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        # One frame's bins per row, sorted: numpy's SIMD sort of contiguous rows is several times
        # faster than np.partition with two kth values, which takes a slow generic path.
        band = np.sort(np.ascontiguousarray(frames.power[lo:hi].T), axis=1)
        k = max(1, int(round(0.1 * band.shape[1])))
        valley = band[:, :k].mean(axis=1)
        peak = band[:, -k:].mean(axis=1)
        out.append(10.0 * np.log10(np.maximum(peak, 1e-10) / np.maximum(valley, 1e-10)))
    return np.asarray(out, dtype=np.float32)


def spectral(frames: Frames) -> tuple[np.ndarray, list[str]]:
    """Mel-band energy profile and its spread, contrast, centroid, bandwidth, rolloff and flatness.

    Returns
    -------
    values : np.ndarray [shape=(N_MELS + MEL_STD_BANDS + 2 * 7 + 8,)]
    names : list of str
    """
    mel_mean, mel_std = mean_std(frames.log_mel)
    mel_std = pool_rows(mel_std, MEL_STD_BANDS)
    con_mean, con_std = mean_std(contrast(frames))

    power = frames.power
    freqs = np.linspace(0.0, frames.sample_rate / 2, power.shape[0], dtype=np.float32)
    total = np.maximum(power.sum(axis=0), 1e-10)
    centroid = (freqs @ power) / total
    bandwidth = np.sqrt(np.maximum((np.square(freqs) @ power) / total - centroid**2, 0.0))
    cumulative = _cumsum_bins(power)
    rolloff = freqs[np.argmax(cumulative >= 0.85 * cumulative[-1], axis=0)]
    log_power = np.log(np.maximum(power, 1e-10))
    flatness = np.exp(log_power.mean(axis=0)) / np.maximum(power.mean(axis=0), 1e-10)
    # Hz values in log2 so that an octave is the same step everywhere.
    shape = np.stack(
        [
            np.log2(np.maximum(centroid, 20.0)),
            np.log2(np.maximum(bandwidth, 20.0)),
            np.log2(np.maximum(rolloff, 20.0)),
            np.log10(np.maximum(flatness, 1e-6)),
        ]
    )
    shape_mean, shape_std = mean_std(shape)
    values = np.concatenate([mel_mean, mel_std, con_mean, con_std, shape_mean, shape_std])
    names = (
        named("mel_mean_", N_MELS)
        + named("mel_std_", MEL_STD_BANDS)
        + named("contrast_mean_", N_CONTRAST_BANDS + 1)
        + named("contrast_std_", N_CONTRAST_BANDS + 1)
        + [f"{s}_mean" for s in ("centroid", "bandwidth", "rolloff", "flatness")]
        + [f"{s}_std" for s in ("centroid", "bandwidth", "rolloff", "flatness")]
    )
    return values, names
