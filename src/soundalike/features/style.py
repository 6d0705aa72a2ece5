"""Style: a learned embedding from the musicnn MSD model, run with onnxruntime.

musicnn (Pons & Serra, 2019; ISC licence) is a convolutional network trained to predict the 50 most
frequent Last.fm tags of the Million Song Dataset from 3-second mel spectrogram patches. Its
penultimate dense layer (200 units) describes genre, mood, instrumentation and era the way listeners
tag them; averaged over patches spread across a track it is the ``style`` vector.

The model file ``models/musicnn_msd.onnx`` is converted from the MSD_musicnn checkpoint in the
``musicnn`` 0.1.0 wheel by ``tools/convert_musicnn.py`` (which also writes the provenance note
``models/musicnn_msd.json`` and the reference fixture the tests compare with); its licence is
``models/LICENSE-musicnn.txt``. It is checked against :data:`MODEL_SHA256` when loaded.

The model reads its own representation, reproduced here from the signal the pipeline already
decoded: resampled to 16 kHz, a centred STFT (Hann window, ``N_FFT`` 512, ``HOP`` 256, zero
padded), power through librosa's 96-band Slaney mel bank (shipped as ``models/musicnn_mel.npz``, so
that no worker imports librosa), rounded to float16 as musicnn's ``batch_data`` does, then
``log10(1 + 10000 x)``, cut into patches of ``PATCH_FRAMES`` frames (3 s).

Two differences from musicnn's own preprocessing come from :func:`soundalike.audio.decode`, not
from here: it downmixes stereo as (L + R) / sqrt(2) where librosa takes the mean (3 dB louder), and
it removes the DC offset. The tests measure both (cosine to the reference embeddings 0.9999 with
the gain undone, 0.96 per patch without); neither changes retrieval on dev-music.

One onnxruntime session per process, made on first use with one intra- and one inter-op thread (the
pool runs one worker per core), and one with :data:`QUERY_THREADS` for queries (:func:`query`);
never pickled: a forked or spawned worker makes its own. A library's analysis gives the model's
freed memory back to the system after every track; queries leave it to an idle moment
(:class:`_IdleTrim`), so that back-to-back queries do not page it in again.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal
import soxr

from soundalike.errors import ModelError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Hz: the rate musicnn was trained at."""
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
"""Frames per patch: 3 s (``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1``)."""
LOG_SCALE = 10000.0
"""The mel power is compressed as ``log10(1 + LOG_SCALE * x)``."""
EMBEDDING_DIM = 200
N_TAGS = 50
N_PATCHES = 10
"""Patches per track by default: 30 s of audio evenly spread over the track.

Inference is almost all of the cost, about 40 ms of one core per patch (resampling and mel add
under 3 ms), so 10 patches cost about 0.43 s per track whatever its length."""

MODEL_FILE = "musicnn_msd.onnx"
MODEL_SHA256 = "cdf95e5c376108430423c863222866db353eb2aa00ec80c14ac411e819b2ae67"
MEL_FILE = "musicnn_mel.npz"
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip
"""The model's 50 tags, in the order of its ``taggram`` output (``musicnn.configuration.MSD_LABELS``)."""

_INPUT, _EMBEDDING, _TAGGRAM = "mel", "embedding", "taggram"
_sessions_lock = threading.Lock()
# Input samples kept on each side of a resampled span, so soxr's filter sees the same neighbours
# as it would in the whole signal (measured: 256 already gives the whole signal's samples ± 2e-7).
_RESAMPLE_MARGIN = 512
_RESAMPLE_QUALITY = "HQ"  # what librosa.load(sr=16000) uses (res_type "soxr_hq"), as musicnn does


def _models() -> Any:
    return files("soundalike.features").joinpath("models")


def model_path() -> Path:
    """Where the shipped model file is (package data)."""
    return Path(str(_models().joinpath(MODEL_FILE)))


def load_model(path: str | os.PathLike[str] | None = None, *, sha256: str = MODEL_SHA256, threads: int = 1) -> Any:
    """Open an onnxruntime session on the musicnn model, after checking the file's sha256.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The model file; defaults to the one shipped with the package.
    sha256 : str
        The hex digest the file must have.
    threads : int
        Intra-op threads (one inter-op thread); with more than one they sleep rather than spin
        between runs, so that a busy server's other work keeps its cores.

    Returns
    -------
    onnxruntime.InferenceSession
        CPU only.

    Raises
    ------
    ModelError
        If the file cannot be read, its sha256 is not ``sha256`` (the message names both), or
        onnxruntime cannot load it.
    """
    import onnxruntime as ort  # heavy import kept out of ``import soundalike``

    where = Path(path) if path is not None else model_path()
    try:
        data = where.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the style model {where}: {exc.strerror or exc}") from exc
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise ModelError(
            f"the style model {where} is not the one this version ships: "
            f"expected sha256 {sha256}, found {found} (reinstall soundalike, or run tools/convert_musicnn.py)"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    # No memory arena: it keeps the largest activations of any run for the process's lifetime, and
    # grows with the runs at once (8 parallel 30-minute uploads peaked at 1.68 GB with it on the
    # query session, 1.26-1.41 GB without; earlier, in batches of 5 patches, 1.72-1.90 GB against 1.31-1.46).
    options.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load the style model {where}: {exc}") from exc


QUERY_THREADS = 2
"""Intra-op threads of the model for one query (:func:`query`): a 10-s clip's 3 patches took
156 ms on 2 threads against 306 ms on one (fastest of 8, 2 cores, load average 8)."""


@dataclass(frozen=True)
class _Mode:
    threads: int = 1
    keep_buffers: bool = False


_LIBRARY_MODE = _Mode()  # frozen: one shared default is safe
_mode: ContextVar[_Mode] = ContextVar("soundalike_style_mode", default=_LIBRARY_MODE)
_sessions: dict[tuple[int, int], Any] = {}


@contextmanager
def threads(n: int, *, keep_buffers: bool = False) -> Iterator[None]:
    """Run the model on up to ``n`` threads inside the block (this thread only; at most the cores).

    Analysis for a library runs one worker per core, each on one thread (the default); a query that
    someone waits for may use more (see :func:`query`).

    With ``keep_buffers``, the activations' freed memory is not given back to the system after each
    analysis but once the model has been idle for :data:`IDLE_TRIM_S` (see :class:`_IdleTrim`):
    back-to-back queries then reuse it.
    """
    token = _mode.set(_Mode(threads=max(1, min(int(n), os.cpu_count() or 1)), keep_buffers=keep_buffers))
    try:
        yield
    finally:
        _mode.reset(token)


def query() -> Any:
    """The model's settings for a query someone is waiting for: :data:`QUERY_THREADS` threads, and
    freed memory kept while queries keep coming (:func:`threads`)."""
    return threads(QUERY_THREADS, keep_buffers=True)


def session() -> Any:
    """This process's inference session on the shipped model for the current :func:`threads`,
    made on first use."""
    # Keyed by process id: a forked worker must not share its parent's session and thread state.
    mode = _mode.get()
    key = (os.getpid(), mode.threads)
    found = _sessions.get(key)
    if found is None:
        with _sessions_lock:
            found = _sessions.get(key)
            if found is None:
                if any(pid != key[0] for pid, _ in _sessions):
                    _sessions.clear()
                found = _sessions[key] = load_model(threads=mode.threads)
                log.debug("loaded the style model %s (%d threads)", MODEL_FILE, mode.threads)
    return found


@lru_cache(maxsize=1)
def _mel_bank() -> np.ndarray:
    with _models().joinpath(MEL_FILE).open("rb") as f, np.load(f) as z:
        return np.ascontiguousarray(z["mel"].T, dtype=np.float32)  # (1 + N_FFT // 2, N_MELS)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return scipy.signal.get_window("hann", N_FFT, fftbins=True).astype(np.float32)


def n_frames(n_samples: int) -> int:
    """Frames of the model's mel spectrogram of ``n_samples`` samples at ``SAMPLE_RATE`` (centred)."""
    return 1 + n_samples // HOP


def musicnn_mel(y: np.ndarray) -> np.ndarray:
    """musicnn's input representation of a 16-kHz signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal at ``SAMPLE_RATE``.

    Returns
    -------
    np.ndarray [shape=(1 + n // HOP, N_MELS), dtype=float32]
        ``log10(1 + 10000 x)`` of the mel power ``x`` (rounded to float16 first, as musicnn does),
        frames centred on ``t * HOP`` (zero padded at the ends), bands low to high.
    """
    y = np.asarray(y, dtype=np.float32)
    return _mel_of_span(np.pad(y, N_FFT // 2), n_frames(len(y)))


def resample(y: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """``y`` at the model's ``SAMPLE_RATE``, resampled as musicnn's ``librosa.load`` does (soxr, HQ).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sample_rate : int
        Rate of ``y`` in Hz.

    Returns
    -------
    np.ndarray [shape=(ceil(n * SAMPLE_RATE / sample_rate),), dtype=float32]
    """
    return _resample_span(np.asarray(y, np.float32), sample_rate, 0, _resampled_length(len(y), sample_rate))


def _ratio(sample_rate: int) -> tuple[int, int]:
    g = math.gcd(SAMPLE_RATE, sample_rate)
    return SAMPLE_RATE // g, sample_rate // g


def _resampled_length(n: int, sample_rate: int) -> int:
    up, down = _ratio(sample_rate)
    return -(-n * up // down)


def _resample_span(y: np.ndarray, sample_rate: int, lo: int, hi: int) -> np.ndarray:
    """Samples ``lo:hi`` of ``y`` resampled to ``SAMPLE_RATE``, zeros outside the signal."""
    up, down = _ratio(sample_rate)
    out = np.zeros(hi - lo, np.float32)
    total = _resampled_length(len(y), sample_rate)
    if up == down:
        start, stop = max(lo, 0), min(hi, len(y))
        out[start - lo : stop - lo] = y[start:stop]
        return out
    # Whole blocks of ``down`` input samples map to whole blocks of ``up`` output samples, so a
    # slice that starts on a block boundary resamples onto the same grid as the whole signal.
    margin = -(-_RESAMPLE_MARGIN // down)
    first = max(0, max(lo, 0) // up - margin)
    last = min(-(-len(y) // down), -(-min(hi, total) // up) + margin)
    part = soxr.resample(y[first * down : last * down], sample_rate, SAMPLE_RATE, quality=_RESAMPLE_QUALITY)
    offset = first * up
    start, stop = max(lo, offset, 0), min(hi, offset + len(part), total)
    if stop > start:
        out[start - lo : stop - lo] = part[start - offset : stop - offset]
    return out


def patch_starts(frames: int, n_patches: int = N_PATCHES) -> np.ndarray:
    """First frames of the patches a track is described by: evenly spread, not overlapping.

    Parameters
    ----------
    frames : int
        Frames in the track's mel spectrogram (:func:`n_frames`).
    n_patches : int > 0
        Most patches to take; a track with room for fewer whole patches gets that many (one at
        least: a track shorter than a patch is repeated to fill it, as musicnn was trained).

    Returns
    -------
    np.ndarray [shape=(min(n_patches, max(1, frames // PATCH_FRAMES)),), dtype=int64]
        Ascending; the first is 0 and the last ends at the track's last frame.
    """
    if n_patches < 1:
        raise ValueError(f"n_patches must be at least 1, got {n_patches}")
    count = min(n_patches, max(1, frames // PATCH_FRAMES))
    last = max(0, frames - PATCH_FRAMES)
    return np.round(np.linspace(0, last, count)).astype(np.int64)


def loudest_patch_starts(y: np.ndarray, *, sample_rate: int, n_patches: int) -> np.ndarray:
    """First frames of the ``n_patches`` loudest of a signal's whole patches, in time order.

    For a query that takes fewer patches than fit in it (a short clip, :func:`~soundalike.features.query_style_patches`):
    a clip that starts or ends in silence or a fade is then not described by its quietest 3 s.
    The candidates are :func:`patch_starts` with room for every whole patch; loudness is the mean
    square of the samples under each. ``y``, ``sample_rate`` and ``n_patches`` are as in
    :func:`style_patches`; the result is as :func:`patch_starts`'s (ascending frames).
    """
    frames = n_frames(_resampled_length(len(y), sample_rate))
    candidates = patch_starts(frames, max(n_patches, frames // PATCH_FRAMES))
    if len(candidates) <= n_patches:
        return candidates
    per_frame = HOP * sample_rate / SAMPLE_RATE  # samples of y per frame
    y = np.asarray(y, dtype=np.float32)
    energy = np.asarray(
        [np.mean(np.square(y[int(s * per_frame) : int((s + PATCH_FRAMES) * per_frame)], dtype=np.float64)) for s in candidates]
    )
    return candidates[np.sort(np.argsort(-energy, kind="stable")[:n_patches])]


def mel_patches(y: np.ndarray, *, sample_rate: int, starts: np.ndarray) -> np.ndarray:
    """The model's input patches at the given frames, computed from the pipeline's signal.

    Only the audio under the patches is resampled and transformed, so the cost depends on the
    number of patches, not on the track's length.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal at ``sample_rate`` (as :func:`soundalike.audio.decode` returns it).
    sample_rate : int
        Rate of ``y`` in Hz.
    starts : np.ndarray [shape=(p,)]
        First frame of each patch, in frames of the 16-kHz mel spectrogram (:func:`patch_starts`).

    Returns
    -------
    np.ndarray [shape=(p, PATCH_FRAMES, N_MELS), dtype=float32]
        The same values as ``musicnn_mel(resample(y))[s : s + PATCH_FRAMES]``; a track shorter
        than a patch is repeated to fill it.
    """
    y = np.asarray(y, dtype=np.float32)
    total = n_frames(_resampled_length(len(y), sample_rate))
    patches = np.empty((len(starts), PATCH_FRAMES, N_MELS), np.float32)
    for i, start in enumerate(np.asarray(starts, dtype=np.int64)):
        count = min(PATCH_FRAMES, total - int(start))
        if count <= 0:
            raise ValueError(f"patch start {start} is past the track's last frame ({total - 1})")
        # Frames start..start+count-1 are centred on samples start*HOP...; each spans ±N_FFT/2.
        lo = int(start) * HOP
        span = _resample_span(y, sample_rate, lo - N_FFT // 2, lo + (count - 1) * HOP + N_FFT // 2)
        mel = _mel_of_span(span, count)
        patches[i] = np.resize(mel, (PATCH_FRAMES, N_MELS)) if count < PATCH_FRAMES else mel
    return patches


def _mel_of_span(span: np.ndarray, count: int) -> np.ndarray:
    """``musicnn_mel`` frames of an already padded span (frame k centred on span[N_FFT/2 + k*HOP])."""
    frames = np.lib.stride_tricks.sliding_window_view(span, N_FFT)[::HOP][:count]
    spectrum = scipy.fft.rfft(frames * _window(), axis=1, workers=1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = (power.astype(np.float32) @ _mel_bank()).astype(np.float16)
    return np.log10(1.0 + LOG_SCALE * mel.astype(np.float32))


def run_model(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs for a batch of input patches.

    Parameters
    ----------
    patches : np.ndarray [shape=(p, PATCH_FRAMES, N_MELS)]
        As :func:`mel_patches` returns them.

    Returns
    -------
    embeddings : np.ndarray [shape=(p, EMBEDDING_DIM), dtype=float32]
        The penultimate layer (after its batch normalisation), one row per patch.
    taggram : np.ndarray [shape=(p, N_TAGS), dtype=float32]
        Probability of each of :data:`MSD_TAGS`, one row per patch.
    """
    patches = np.ascontiguousarray(patches, dtype=np.float32)
    if patches.ndim != 3 or patches.shape[1:] != (PATCH_FRAMES, N_MELS):
        raise ValueError(f"expected patches of shape (p, {PATCH_FRAMES}, {N_MELS}), got {patches.shape}")
    # One patch per run: a batch of 5 holds about 220 MB of activations at once, one patch about
    # 90 MB, and without its memory arena onnxruntime allocates each run's activations afresh, so a
    # batch's are also slower to allocate and touch: one at a time took 0.85x the time of a batch of
    # 3 and 0.63x that of a batch of 5 (fastest of 8, interleaved, one core, load average 7).
    model = session()
    keep = _mode.get().keep_buffers
    with _idle_trim.running() if keep else contextlib.nullcontext():
        outputs = [model.run([_EMBEDDING, _TAGGRAM], {_INPUT: patches[i : i + 1]}) for i in range(len(patches))]
    if not keep:
        _give_back_freed_memory()
    if not outputs:
        return np.zeros((0, EMBEDDING_DIM), np.float32), np.zeros((0, N_TAGS), np.float32)
    return np.concatenate([e for e, _ in outputs]), np.concatenate([t for _, t in outputs])


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to ask
        return None


def _give_back_freed_memory() -> None:
    """Return the activations' freed pages to the system (glibc keeps about 100 MB of them per
    thread's arena otherwise, which a threaded server multiplies)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


IDLE_TRIM_S = 1.0
"""Seconds without a query running the model after which its freed memory goes back to the system."""


class _IdleTrim:
    """Gives the freed memory of queries back once none has run the model for :data:`IDLE_TRIM_S`.

    A query that trimmed at once would pay for it in the next one: a 10-s clip's 3 patches took
    81 ms on 2 threads with the freed pages kept and 108 ms with them trimmed after every query
    (median of 12, interleaved with the clip's decode and hand-made features). A burst of queries
    keeps its pages (8 parallel 30-minute uploads peaked at 1.26-1.41 GB against 1.02-1.10 GB
    trimming at once); an idle server gives them back.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._since: float | None = None  # when the last run ended, while a trim is owed
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._since = time.monotonic()
                if self._thread is None or self._pid != os.getpid():  # none yet, or the parent's
                    self._pid = os.getpid()
                    self._thread = threading.Thread(target=self._loop, name="soundalike-idle-trim", daemon=True)
                    self._thread.start()
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._since is None or self._running:
                        self._cond.wait()
                        continue
                    wait = self._since + IDLE_TRIM_S - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                self._since = None
            _give_back_freed_memory()


_idle_trim = _IdleTrim()


def style_patches(y: np.ndarray, *, sample_rate: int, n_patches: int = N_PATCHES, loudest: bool = False) -> np.ndarray:
    """Style embedding of each patch of a track.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal at ``sample_rate``.
    sample_rate : int
        Rate of ``y`` in Hz.
    n_patches : int > 0
        Most 3-s patches to take, evenly spread over the track (:func:`patch_starts`).
    loudest : bool
        Take the loudest whole patches instead (:func:`loudest_patch_starts`; for short queries).

    Returns
    -------
    np.ndarray [shape=(p, EMBEDDING_DIM), dtype=float32]
        One row per patch, in time order; ``p = min(n_patches, max(1, frames // PATCH_FRAMES))``.
    """
    if loudest:
        starts = loudest_patch_starts(y, sample_rate=sample_rate, n_patches=n_patches)
    else:
        starts = patch_starts(n_frames(_resampled_length(len(y), sample_rate)), n_patches)
    embeddings, _ = run_model(mel_patches(y, sample_rate=sample_rate, starts=starts))
    return embeddings


def style_embedding(y: np.ndarray, *, sample_rate: int, n_patches: int = N_PATCHES, loudest: bool = False) -> np.ndarray:
    """Style of a track: the mean of its patches' musicnn embeddings.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal at ``sample_rate``.
    sample_rate : int
        Rate of ``y`` in Hz.
    n_patches : int > 0
        Most 3-s patches to average, evenly spread over the track (or the loudest, with ``loudest``).
    loudest : bool
        See :func:`style_patches`.

    Returns
    -------
    np.ndarray [shape=(EMBEDDING_DIM,), dtype=float32]
        Compare two with the cosine.
    """
    return style_patches(y, sample_rate=sample_rate, n_patches=n_patches, loudest=loudest).mean(axis=0)
