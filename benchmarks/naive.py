"""The straightforward implementations that the optimised analysis replaced, for before/after figures.

:func:`naive_implementation` swaps them in for the duration of a ``with`` block, so that one run
measures both and checks that they give the same vectors. They compute exactly what the current
code computes, only slower:

* decoding hands every codec frame (1,152 samples of an MP3) to the resampler on its own, instead
  of gathering frames into blocks;
* the STFT windows, transforms and squares the whole track in one go and then transposes it,
  instead of working through cache-sized blocks;
* spectral contrast finds each band's peaks and valleys with a two-sided ``np.partition`` down the
  frequency axis, instead of sorting each frame's bins;
* the spectral roll-off takes ``np.cumsum`` down the frequency axis, instead of adding rows.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.fft

from soundalike import audio
from soundalike.features import frames as frames_module

spectral_module = importlib.import_module("soundalike.features.spectral")  # the package re-exports a function of this name


def decode_stream(
    container: Any, stream: Any, label: str, sample_rate: int, max_duration: float, truncate_to: float | None = None
) -> tuple[np.ndarray, bool]:
    """Decode and resample frame by frame (no error bookkeeping: the benchmark files are sound)."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    for packet in container.demux(stream):
        for frame in packet.decode():
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32, copy=False), False


def power_spectrogram(y: np.ndarray) -> np.ndarray:
    """The whole-track STFT, then one transpose."""
    n_fft, hop = frames_module.N_FFT, frames_module.HOP
    padded = np.pad(y.astype(np.float32, copy=False), n_fft // 2)
    n_frames = 1 + (len(padded) - n_fft) // hop
    framed = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    spec = scipy.fft.rfft(framed * frames_module._window(n_fft), axis=1, workers=1)
    power = spec.real**2 + spec.imag**2
    return np.ascontiguousarray(power.T, dtype=np.float32)


def contrast(frames: Any) -> np.ndarray:
    """Spectral contrast with a two-sided partition down the frequency axis."""
    edges = spectral_module._octave_edges(frames.sample_rate)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = frames.power[lo:hi]
        k = max(1, int(round(0.1 * band.shape[0])))
        part = np.partition(band, (k - 1, band.shape[0] - k), axis=0)
        valley = part[:k].mean(axis=0)
        peak = part[-k:].mean(axis=0)
        out.append(10.0 * np.log10(np.maximum(peak, 1e-10) / np.maximum(valley, 1e-10)))
    return np.asarray(out, dtype=np.float32)


def cumsum_bins(power: np.ndarray) -> np.ndarray:
    return np.cumsum(power, axis=0)


@contextmanager
def naive_implementation() -> Iterator[None]:
    """Run the block with the straightforward implementations in place of the optimised ones."""
    swaps = [
        (audio, "_decode_stream", decode_stream),
        (frames_module, "power_spectrogram", power_spectrogram),
        (spectral_module, "contrast", contrast),
        (spectral_module, "_cumsum_bins", cumsum_bins),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    try:
        for module, name, replacement in swaps:
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
