"""The shared time-frequency representation every feature family reads.

One STFT per track: the power spectrogram, its mel and MFCC projections, chroma, per-band onset
strength and frame loudness are computed here once, so that no family repeats the expensive work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

N_FFT = 2048
HOP = 512
N_MELS = 64
N_MFCC = 20
TOP_DB = 60.0  # floor: detail more than 60 dB below the peak is mostly noise floor and encoder artefacts
# Mel-band ranges (indices into the N_MELS bands) whose onsets describe the rhythm of the low
# (kick, bass), middle (snare, chords) and high (hats, cymbals) parts of a mix.
ONSET_BANDS = ((0, 10), (10, 36), (36, N_MELS))
_BLOCK_FRAMES = 256  # frames per block of the STFT (2 MB of windowed samples)


@dataclass(frozen=True)
class Frames:
    """Frame-level views of one signal, all at ``HOP`` samples per frame.

    Attributes
    ----------
    sample_rate : int
    power : np.ndarray [shape=(1 + N_FFT // 2, t)]
        Power spectrogram.
    log_mel : np.ndarray [shape=(N_MELS, t)]
        Mel power in dB, floored ``TOP_DB`` below the track's peak.
    mfcc : np.ndarray [shape=(N_MFCC, t)]
    chroma : np.ndarray [shape=(12, t)]
        Pitch-class energy, each frame scaled to a maximum of 1.
    onset : np.ndarray [shape=(t,)]
        Onset strength (positive spectral flux of ``log_mel``), mean over bands.
    band_onsets : np.ndarray [shape=(len(ONSET_BANDS), t)]
    rms_db : np.ndarray [shape=(t,)]
        Frame loudness in dBFS.
    """

    sample_rate: int
    power: np.ndarray
    log_mel: np.ndarray
    mfcc: np.ndarray
    chroma: np.ndarray
    onset: np.ndarray
    band_onsets: np.ndarray
    rms_db: np.ndarray

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / HOP

    @property
    def n_frames(self) -> int:
        return int(self.log_mel.shape[1])


@lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)


FILTERBANKS = "filterbanks.npz"
"""Package data: librosa's mel and chroma banks at 22,050 Hz (``tools/make_filterbanks.py``)."""


@lru_cache(maxsize=1)
def _shipped_banks() -> dict[str, np.ndarray]:
    """The shipped filter banks, or nothing when they do not match these settings."""
    from importlib.resources import files

    with files("soundalike.features").joinpath(FILTERBANKS).open("rb") as f, np.load(f) as z:
        banks = {k: z[k] for k in z.files}
    if int(banks["n_fft"]) != N_FFT or int(banks["n_mels"]) != N_MELS:
        return {}
    return banks


def _shipped(name: str, sample_rate: int) -> np.ndarray | None:
    # Shipped so that the analysis never imports librosa: its import compiles numba code (26 s on a
    # fresh install, in every worker at once, into an on-disk cache that concurrent compiles corrupt).
    banks = _shipped_banks()
    if banks and int(banks["sample_rate"]) == sample_rate:
        return banks[name]
    return None


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int) -> np.ndarray:
    shipped = _shipped("mel", sample_rate)
    if shipped is not None:
        return shipped
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=N_MELS, fmin=30.0, fmax=sample_rate / 2)


@lru_cache(maxsize=4)
def _chroma_basis(sample_rate: int) -> np.ndarray:
    shipped = _shipped("chroma", sample_rate)
    if shipped is not None:
        return shipped
    import librosa

    return librosa.filters.chroma(sr=sample_rate, n_fft=N_FFT)


def power_spectrogram(y: np.ndarray) -> np.ndarray:
    """Power spectrogram of ``y`` with a Hann window, frames centred (zero padded).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]

    Returns
    -------
    np.ndarray [shape=(1 + N_FFT // 2, t), dtype=float32], t = 1 + n // HOP
    """
    padded = np.pad(y.astype(np.float32, copy=False), N_FFT // 2)
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    framed = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    window = _window(N_FFT)
    power = np.empty((1 + N_FFT // 2, n_frames), dtype=np.float32)
    # Blocks of frames small enough to stay in cache: windowing, FFT, squaring and the transpose
    # into (bins, frames) then cost half of what they do on the whole track at once.
    windowed = np.empty((min(_BLOCK_FRAMES, n_frames), N_FFT), dtype=np.float32)
    block = np.empty((min(_BLOCK_FRAMES, n_frames), 1 + N_FFT // 2), dtype=np.float32)
    for start in range(0, n_frames, _BLOCK_FRAMES):
        stop = min(n_frames, start + _BLOCK_FRAMES)
        w, b = windowed[: stop - start], block[: stop - start]
        np.multiply(framed[start:stop], window, out=w)
        spec = scipy.fft.rfft(w, axis=1, workers=1)
        np.multiply(spec.real, spec.real, out=b)
        b += np.square(spec.imag)
        power[:, start:stop] = b.T
    return power


def compute_frames(y: np.ndarray, *, sample_rate: int) -> Frames:
    """Compute every frame-level representation of ``y`` from one STFT.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal.
    sample_rate : int

    Returns
    -------
    Frames
    """
    power = power_spectrogram(y)
    mel = _mel_basis(sample_rate) @ power
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - TOP_DB).astype(np.float32)
    mfcc = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=0)[:N_MFCC].astype(np.float32)
    chroma = _chroma_basis(sample_rate) @ power
    chroma /= np.maximum(chroma.max(axis=0, keepdims=True), 1e-10)
    flux = np.maximum(0.0, np.diff(log_mel, axis=1, prepend=log_mel[:, :1]))
    band_onsets = np.stack([flux[lo:hi].mean(axis=0) for lo, hi in ONSET_BANDS])
    onset = flux.mean(axis=0)
    # Parseval: frame energy from the spectrum, so loudness needs no second pass over the samples.
    # The one-sided spectrum holds half the energy; dividing by the window's energy undoes the taper.
    energy = 2.0 * power.sum(axis=0) / (N_FFT * float(np.square(_window(N_FFT)).sum()))
    rms_db = 10.0 * np.log10(np.maximum(energy, 1e-10))
    return Frames(
        sample_rate=sample_rate,
        power=power,
        log_mel=log_mel,
        mfcc=mfcc,
        chroma=chroma.astype(np.float32),
        onset=onset.astype(np.float32),
        band_onsets=band_onsets.astype(np.float32),
        rms_db=rms_db.astype(np.float32),
    )
