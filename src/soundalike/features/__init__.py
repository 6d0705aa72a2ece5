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
from dataclasses import dataclass
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
from soundalike.vocabulary import ASPECTS, FAMILIES, SEGMENT_FAMILIES

FEATURE_VERSION = 1
"""Bumped whenever a change makes stored vectors incomparable with new ones."""

EXTRACTORS: dict[str, Callable[[Frames], tuple[np.ndarray, list[str]]]] = {
    "timbre": timbre,
    "spectral": spectral,
    "rhythm": rhythm,
    "harmony": harmony,
    "loudness": loudness,
}
assert tuple(EXTRACTORS) == FAMILIES, "soundalike.vocabulary.FAMILIES names the families in vector order"


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
    y: np.ndarray, *, sample_rate: int, segment_hop_s: float = HOP_S
) -> Analysis:
    """Analyse one mono signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float signal, as :func:`soundalike.audio.decode` returns it.
    sample_rate : int
    segment_hop_s : float
        Step between segment windows (catalog tracks use ``HOP_S``, queries ``QUERY_HOP_S``).

    Returns
    -------
    Analysis
    """
    frames = compute_frames(y, sample_rate=sample_rate)
    parts = [EXTRACTORS[f](frames)[0] for f in FAMILIES]
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
    return Layout.from_names({f: fn(frames)[1] for f, fn in EXTRACTORS.items()})


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
    "segment_layout",
    "track_layout",
]
