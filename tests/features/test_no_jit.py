"""The analysis never compiles numba code, so concurrent workers cannot corrupt numba's cache.

Issue 11: two ingest workers importing librosa at the same moment both compiled its numba functions
into the same on-disk cache (``cache=True``, no cross-process lock); later runs loaded the mix and
crashed with a segmentation fault in ``chroma_stft`` → ``localmax``. The analysis uses two filter
banks from librosa, which are now shipped as package data, so workers never import librosa.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soundalike import audio, synth
from soundalike.audio import SAMPLE_RATE
from soundalike.features import frames

SRC = Path(__file__).resolve().parents[2] / "src"

def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(SRC), "GLOG_minloglevel": "2"}


def test_shipped_filter_banks_equal_librosas():
    import librosa

    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=frames.N_FFT, n_mels=frames.N_MELS, fmin=30.0, fmax=SAMPLE_RATE / 2)
    chroma = librosa.filters.chroma(sr=SAMPLE_RATE, n_fft=frames.N_FFT)
    np.testing.assert_allclose(frames._mel_basis(SAMPLE_RATE), mel, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(frames._chroma_basis(SAMPLE_RATE), chroma, rtol=1e-6, atol=1e-9)


def test_analysing_a_file_imports_neither_librosa_nor_numba(tmp_path):
    path = tmp_path / "one.flac"
    audio.encode(path, synth.render(synth.TrackSpec("pluck", "backbeat", "C", duration=4.0, seed=1)), sample_rate=SAMPLE_RATE)
    code = (
        "import sys\n"
        "from soundalike.ingest import AnalysisOptions, _stat, analyse_file\n"
        f"record = analyse_file(_stat({str(path)!r}), AnalysisOptions())\n"
        "assert record.status == 'ok', record.error\n"
        "print(sorted(m for m in ('librosa', 'numba') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path / "numba"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_concurrent_two_worker_ingests_compile_nothing_into_numba_caches(tmp_path):
    music = tmp_path / "music"
    synth.write_library(music, synth.library_specs(grooves=("backbeat", "waltz"), keys=("C",), duration=4.0))
    caches = [tmp_path / f"numba-{i}" for i in range(2)]
    ingests = [
        subprocess.Popen(
            [sys.executable, "-m", "soundalike.cli", "--library", str(tmp_path / f"lib-{i}"), "ingest", str(music), "-j", "2", "-q", "--no-index"],
            env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i, cache in enumerate(caches)
    ]  # fmt: skip
    for proc in ingests:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert "failed 0" in out, out
    # Nothing was compiled, so nothing half-written is left for the next process to load: the crash
    # the issue saw (chroma_stft -> localmax loading a mixed cache) has nothing to load. Running the
    # JIT-compiled librosa functions afterwards (as this test once did) only compiled them afresh
    # into the empty caches, which tests numba, not soundalike, and took 20 s of CI.
    assert [p.name for cache in caches for p in cache.rglob("*.nbi")] == []
    assert [p.name for cache in caches for p in cache.rglob("*.nbc")] == []
