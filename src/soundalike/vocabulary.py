"""The names every layer shares: feature families, aspects, index backends, the progress callback.

This module imports nothing, so settings, the CLI's option parsing and the web app's validation can
use the names without loading numpy or the feature code. Each name is defined here once; the modules
that implement them (``features``, ``index``) key their tables by these tuples.
"""

from __future__ import annotations

from collections.abc import Callable

FAMILIES: tuple[str, ...] = ("timbre", "spectral", "rhythm", "harmony", "loudness", "style")
"""Feature families of a track vector, in vector order; ``style`` is the learned one (musicnn)."""

LEARNED_FAMILIES: tuple[str, ...] = ("style",)
"""Families computed by a model rather than by signal processing (``--no-style`` skips them)."""

SEGMENT_FAMILIES: tuple[str, ...] = ("timbre", "spectral", "harmony", "loudness")
"""Families of a segment vector (a 5-s window has too few beats for a rhythm pattern)."""

ASPECTS: tuple[str, ...] = ("all", *FAMILIES)
"""What a query may be restricted to: every family (weighted) or one."""

FAMILY_DESCRIPTIONS: dict[str, str] = {
    "timbre": "MFCC mean, spread, delta spread and coefficient correlations: what the sound is made of",
    "spectral": "mel-band energy profile, spectral contrast, centroid, bandwidth, rolloff, flatness",
    "rhythm": "tempo, pulse clarity, and onset periodicity patterns in the low, middle and high bands",
    "harmony": "chroma mean and spread, correlation with the 24 major/minor key profiles, harmonic change",
    "loudness": "level, spread, loudness range, crest, share of quiet passages",
    "style": "a learned embedding (the musicnn MSD model's penultimate layer, averaged over 3-s patches): genre, instruments, mood",
}

DEFAULT_WEIGHTS: dict[str, float] = {**{f: 1.0 for f in FAMILIES if f not in LEARNED_FAMILIES}, "style": 10 / 3}
"""Default weight of each family in the ``all`` similarity: the five hand-made families equally, and
the learned style embedding 40 % of the whole (10/3 against 5 × 1), chosen on the two development
sets by leave-one-out P@10 and mAP over style shares 0.2-0.6 (see the README's quality section)."""

INDEX_BACKENDS: tuple[str, ...] = ("scann", "annoy", "exact", "faiss")
"""Index backends, the default first."""

TUNABLE_BACKENDS: tuple[str, ...] = ("scann", "annoy")
"""Backends with parameters worth a grid search (exact search has none)."""

Progress = Callable[[str, int, int], None]
"""``progress(stage_or_event, done, total)``: the one progress-callback type (ingest, transfer, evaluate)."""


def display_path(path: str) -> str:
    """A printable form of a file-system path (undecodable bytes shown as U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
