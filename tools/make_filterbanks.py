"""Write src/soundalike/features/filterbanks.npz: librosa's mel and chroma filter banks at 22,050 Hz.

The analysis uses only these two matrices from librosa. Shipping them means a worker never imports
librosa, whose import compiles numba functions (26 s on a fresh install, and a cache that two
processes compiling at once can corrupt). Run it again after changing ``N_FFT``, ``N_MELS`` or the
sample rate:

    PYTHONPATH=src .venv/bin/python tools/make_filterbanks.py
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np

from soundalike.audio import SAMPLE_RATE
from soundalike.features.frames import FILTERBANKS, N_FFT, N_MELS


def main() -> None:
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=30.0, fmax=SAMPLE_RATE / 2)
    chroma = librosa.filters.chroma(sr=SAMPLE_RATE, n_fft=N_FFT)
    out = Path(__file__).resolve().parents[1] / "src" / "soundalike" / "features" / FILTERBANKS
    np.savez_compressed(
        out,
        mel=mel,
        chroma=chroma,
        sample_rate=np.int64(SAMPLE_RATE),
        n_fft=np.int64(N_FFT),
        n_mels=np.int64(N_MELS),
        librosa_version=np.str_(librosa.__version__),
    )
    print(f"wrote {out} ({out.stat().st_size} bytes) from librosa {librosa.__version__}")


if __name__ == "__main__":
    main()
