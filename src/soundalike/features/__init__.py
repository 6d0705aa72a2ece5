"""Audio features: one fixed-length vector per track and one per segment.

Each family is a pure function of the shared :class:`~soundalike.features.frames.Frames`:

========  ==========================================================
timbre    MFCC mean, spread, delta spread and correlations
spectral  mel-band profile, contrast, centroid, bandwidth, rolloff, flatness
rhythm    tempo, pulse clarity and per-band onset periodicity patterns
harmony   chroma statistics and key correlations
loudness  level, range and crest of frame loudness
========  ==========================================================

Raw vectors are stored in the catalog; :mod:`soundalike.features.normalise` standardises them over
the library and weights the families so that none dominates by its number of dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from soundalike.features.frames import Frames, compute_frames
from soundalike.features.harmony import harmony
from soundalike.features.loudness import loudness
from soundalike.features.rhythm import rhythm
from soundalike.features.segments import (
    HOP_S,
    QUERY_HOP_S,
    WINDOW_S,
    segment_names,
    segment_vectors,
)
from soundalike.features.spectral import spectral
from soundalike.features.timbre import timbre
from soundalike.vocabulary import ASPECTS, FAMILIES, LEARNED_FAMILIES, SEGMENT_FAMILIES

FEATURE_VERSION = 2
"""Bumped whenever a change makes stored vectors incomparable with new ones."""

EXTRACTORS: dict[str, Callable[[Frames], tuple[np.ndarray, list[str]]]] = {
    "timbre": timbre,
    "spectral": spectral,
    "rhythm": rhythm,
    "harmony": harmony,
    "loudness": loudness,
}
assert (*EXTRACTORS, *LEARNED_FAMILIES) == FAMILIES, "soundalike.vocabulary.FAMILIES names the families in vector order"


@dataclass(frozen=True)
class Layout:
    """Which dimensions of a vector belong to which family.

    Attributes
    ----------
    families : tuple of str
    slices : dict of str to slice
    names : tuple of str
        One name per dimension.
    """

    families: tuple[str, ...]
    slices: dict[str, slice]
    names: tuple[str, ...]

    @property
    def dim(self) -> int:
        return len(self.names)

    @classmethod
    def from_names(cls, by_family: dict[str, list[str]]) -> Layout:
        slices: dict[str, slice] = {}
        names: list[str] = []
        for family, family_names in by_family.items():
            slices[family] = slice(len(names), len(names) + len(family_names))
            names.extend(family_names)
        return cls(families=tuple(by_family), slices=slices, names=tuple(names))


@dataclass(frozen=True)
class Analysis:
    """Everything extracted from one track.

    Attributes
    ----------
    vector : np.ndarray [shape=(track_layout().dim,), dtype=float32]
    segments : np.ndarray [shape=(n_segments, segment_layout().dim), dtype=float32]
    segment_starts : np.ndarray [shape=(n_segments,), dtype=float32]
        Seconds from the start of the track.
    duration : float
        Seconds.
    """

    vector: np.ndarray
    segments: np.ndarray
    segment_starts: np.ndarray
    duration: float


def extract(
    y: np.ndarray,
    *,
    sample_rate: int,
    segment_hop_s: float = HOP_S,
    style: bool = True,
    style_patches: int | None = None,
) -> Analysis:
    """Analyse one mono signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float signal, as :func:`soundalike.audio.decode` returns it.
    sample_rate : int
    segment_hop_s : float
        Step between segment windows (catalog tracks use ``HOP_S``, queries ``QUERY_HOP_S``).
    style : bool
        Compute the learned ``style`` family (:mod:`soundalike.features.style`); without it that
        block is zeros, and a library analysed so gives it no weight.
    style_patches : int, optional
        Most 3-s patches the style averages (default :data:`STYLE_PATCHES`).

    Returns
    -------
    Analysis
    """
    frames = compute_frames(y, sample_rate=sample_rate)
    parts = [fn(frames)[0] for fn in EXTRACTORS.values()]
    patches = STYLE_PATCHES if style_patches is None else style_patches
    parts.append(_style(y, sample_rate, patches) if style else np.zeros(_style_dim(), dtype=np.float32))
    vector = np.concatenate(parts).astype(np.float32)
    segments, starts = segment_vectors(frames, window_s=WINDOW_S, hop_s=segment_hop_s)
    return Analysis(
        vector=np.nan_to_num(vector),
        segments=np.nan_to_num(segments),
        segment_starts=starts,
        duration=len(y) / sample_rate,
    )


@lru_cache(maxsize=1)
def track_layout() -> Layout:
    """The layout of a track vector (found by analysing a few seconds of deterministic noise)."""
    from soundalike.audio import SAMPLE_RATE

    probe = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 3).astype(np.float32) * 0.1
    frames = compute_frames(probe, sample_rate=SAMPLE_RATE)
    names = {f: fn(frames)[1] for f, fn in EXTRACTORS.items()}
    names["style"] = [f"style_{i:03d}" for i in range(_style_dim())]
    return Layout.from_names(names)


STYLE_PATCHES = 5
"""3-s patches the style embedding averages, evenly spread over the track: as good as 10 on both
development sets (P@10 0.567 and 0.443 against 0.569 and 0.433) at half the cost (262× against 199×
real time for the whole analysis of a 3-minute track on one core)."""


QUERY_SECONDS_PER_PATCH = 10.0
"""A query's style averages one 3-s patch per this many seconds of its audio (1 to
``STYLE_PATCHES``); with fewer than ``STYLE_PATCHES`` it takes its loudest whole patches
(:func:`~soundalike.features.style.loudest_patch_starts`), so a 10-s clip is described by its loudest
3 s, not by a silent start. Each patch costs a query 20-30 ms of two cores, most of a 10-s clip's
analysis. On the noisy 10-s excerpts of both development sets (``evaluate``, 2026-12-03; excerpt
top-1 1.000 on dev-music and 0.990 on dev-corpus in every arrangement), the P@10 of the
recommendations other than the source, dev-music / dev-corpus: the loudest patch 0.549 / 0.319; two
patches, the first and last 3 s (one per 5 s, the rule before) 0.541 / 0.320; the first patch
0.545 / 0.311; the middle one 0.543 / 0.304."""


def query_style_patches(duration_s: float) -> int:
    """How many 3-s patches the style of a query of ``duration_s`` seconds averages."""
    return max(1, min(STYLE_PATCHES, round(duration_s / QUERY_SECONDS_PER_PATCH)))


def extract_query(y: np.ndarray, *, sample_rate: int, style: bool = True) -> Analysis:
    """Analyse a query someone is waiting for: as :func:`extract`, with segment windows every
    ``QUERY_HOP_S``, the style from :func:`query_style_patches` patches, and the model run as a
    query (:func:`soundalike.features.style.query`: more threads, freed memory kept between queries)
    on a thread of its own while this one computes the hand-made families and the windows.

    Running the two side by side took a 10-s clip's analysis from 52 to 43 ms p50 (20 interleaved
    rounds, 2 cores, otherwise idle, 2026-12-03), and the whole clip query at a million tracks 4-12
    ms less in two A/B runs; the vector is the same (to 1e-5: onnxruntime's threads may add in
    another order). On 2 December, with 3 patches and BLAS on its default pool of a thread per core,
    parallel arrangements had been slower (``benchmarks/results/style.md``).
    """
    if not style:
        return extract(y, sample_rate=sample_rate, segment_hop_s=QUERY_HOP_S, style=False)
    patches = query_style_patches(len(y) / sample_rate)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="soundalike-query-style") as pool:
        learned = pool.submit(_query_style, y, sample_rate, patches)
        hand = extract(y, sample_rate=sample_rate, segment_hop_s=QUERY_HOP_S, style=False)
        vector = hand.vector.copy()
        vector[track_layout().slices["style"]] = np.nan_to_num(learned.result())
    return replace(hand, vector=vector)


def _query_style(y: np.ndarray, sample_rate: int, n_patches: int) -> np.ndarray:
    from soundalike.features import style as style_model

    with style_model.query():  # fewer patches than a track's: the loudest, not the first
        return _style(y, sample_rate, n_patches, loudest=n_patches < STYLE_PATCHES)


def _style(y: np.ndarray, sample_rate: int, n_patches: int, *, loudest: bool = False) -> np.ndarray:
    from soundalike.features import style  # onnxruntime loads on first use, in each worker

    return style.style_embedding(y, sample_rate=sample_rate, n_patches=n_patches, loudest=loudest).astype(np.float32)


def _style_dim() -> int:
    from soundalike.features.style import EMBEDDING_DIM

    return EMBEDDING_DIM


@lru_cache(maxsize=1)
def segment_layout() -> Layout:
    """The layout of a segment vector."""
    return Layout.from_names(segment_names())


__all__ = [
    "ASPECTS",
    "FAMILIES",
    "FEATURE_VERSION",
    "HOP_S",
    "QUERY_HOP_S",
    "SEGMENT_FAMILIES",
    "WINDOW_S",
    "Analysis",
    "Layout",
    "extract",
    "extract_query",
    "query_style_patches",
    "segment_layout",
    "track_layout",
]
