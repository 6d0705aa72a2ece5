"""Server-side pictures of audio: what the analysis sees, as a PNG.

Three stacked panels computed with the same frame representation the features use
(:func:`soundalike.features.frames.compute_frames`): the mel spectrogram (timbre and spectral shape),
the chromagram (harmony) and frame loudness with onset strength (loudness and rhythm). Rendered with
matplotlib's object API on the Agg canvas, which needs no display and no global pyplot state.
"""

from __future__ import annotations

import io
import threading

import numpy as np

from soundalike.features.frames import HOP, compute_frames

MAX_COLUMNS = 1200
"""Frames are averaged down to at most this many picture columns."""
CHUNK_S = 60.0
"""Long audio is analysed in chunks of this many seconds, so memory stays small."""
PITCHES = ("C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B")

_render_lock = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe


def _pool(x: np.ndarray, columns: int) -> np.ndarray:
    """Average the last axis of ``x`` into at most ``columns`` groups."""
    n = x.shape[-1]
    if n <= columns:
        return x
    edges = np.linspace(0, n, columns + 1).astype(int)
    return np.add.reduceat(x, edges[:-1], axis=-1) / np.diff(edges)


def _frame_views(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mel (dB), chroma, loudness (dBFS) and onset strength of ``samples``, chunk by chunk."""
    step = max(HOP, int(CHUNK_S * sample_rate) // HOP * HOP)
    mel, chroma, rms, onset = [], [], [], []
    for start in range(0, len(samples), step):
        frames = compute_frames(samples[start : start + step], sample_rate=sample_rate)
        mel.append(frames.log_mel)
        chroma.append(frames.chroma)
        rms.append(frames.rms_db)
        onset.append(frames.onset)
    return (
        np.concatenate(mel, axis=1),
        np.concatenate(chroma, axis=1),
        np.concatenate(rms),
        np.concatenate(onset),
    )


def feature_picture(samples: np.ndarray, sample_rate: int, *, width_px: int = 960) -> bytes:
    """A PNG of the mel spectrogram, chromagram and loudness/onset curves of ``samples``.

    Parameters
    ----------
    samples : np.ndarray [shape=(n,), dtype=float32]
        Mono audio.
    sample_rate : int
        In Hz.
    width_px : int
        Width of the picture in pixels.

    Returns
    -------
    bytes
        The PNG file.
    """
    from matplotlib.figure import Figure

    mel, chroma, rms, onset = _frame_views(samples, sample_rate)
    duration = len(samples) / sample_rate
    mel = _pool(mel, MAX_COLUMNS)
    chroma = _pool(chroma, MAX_COLUMNS)
    rms = _pool(rms[None, :], MAX_COLUMNS)[0]
    onset = _pool(onset[None, :], MAX_COLUMNS)[0]
    t = np.linspace(0.0, duration, len(rms))

    dpi = 100
    with _render_lock:
        fig = Figure(figsize=(width_px / dpi, 4.2), dpi=dpi, facecolor="white")
        axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.5, 1.1], "hspace": 0.12})
        ax_mel, ax_chroma, ax_loud = axes
        ax_mel.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, mel.shape[0]))
        ax_mel.set_ylabel("mel band", fontsize=8)
        ax_mel.set_title("mel spectrogram · chroma · loudness and onsets", fontsize=9, loc="left", color="#333")
        ax_chroma.imshow(chroma, origin="lower", aspect="auto", cmap="Blues", extent=(0, duration, -0.5, 11.5))
        ax_chroma.set_yticks([0, 4, 7, 11], [PITCHES[i] for i in (0, 4, 7, 11)], fontsize=7)
        ax_chroma.set_ylabel("pitch", fontsize=8)
        ax_loud.plot(t, rms, color="#0f766e", linewidth=1.0)
        ax_loud.set_ylabel("dBFS", fontsize=8)
        ax_loud.set_xlim(0, duration)
        finite = rms[np.isfinite(rms)]
        if finite.size:
            ax_loud.set_ylim(max(float(finite.min()), -80.0) - 3, float(finite.max()) + 3)
        ax_onset = ax_loud.twinx()
        ax_onset.fill_between(t, 0, onset, color="#f59e0b", alpha=0.35, linewidth=0)
        ax_onset.set_yticks([])
        ax_onset.set_ylim(0, float(onset.max()) * 1.1 + 1e-9)
        ax_loud.set_xlabel("seconds", fontsize=8)
        for ax in (ax_mel, ax_chroma, ax_loud):
            ax.tick_params(labelsize=7)
        fig.subplots_adjust(left=0.07, right=0.99, top=0.93, bottom=0.11)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=dpi)
    return out.getvalue()
