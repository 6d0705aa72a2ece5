"""Why a result sounds alike, in plain words: "same tempo (~124 BPM) · similar instruments · different key".

The line is built from what a recommendation already carries — the per-aspect similarities (see
:mod:`soundalike.recommend`) — and from the tempo and key of both tracks
(:mod:`soundalike.features.descriptors`).

How the words are chosen
------------------------
* **Tempo** (when both tracks have a clear pulse): *same tempo* when the two estimates are within
  :data:`TEMPO_TOLERANCE` (4 %) of each other; *double tempo* / *half tempo* when one is within 4 %
  of twice the other (the same pulse counted at another metrical level); *close tempo* within
  :data:`CLOSE_TOLERANCE` (8 %: the stored estimate comes from a whole number of onset frames, about
  2.5 % apart at 120 BPM and 5 % at 170, so two such tracks may sit one step apart); otherwise
  *different tempo*. The numbers go in brackets, the query's first: "different tempo (128 → 96 BPM)".
* **Key** (when both tracks have a clear key): *same key*; *relative key* (a major key and the minor
  key with the same notes, e.g. C major and A minor); otherwise *different key*. When both keys are
  known, the harmony aspect is not worded as well (it would say the same thing again).
* **Aspects**: a similarity of at least :data:`SIMILAR` ``[aspect]`` is an agreement
  ("similar instruments"), at most :data:`DIFFERENT` ``[aspect]`` a difference ("different groove").
  Similarities are ``(1 + cosine) / 2`` over library-standardised features, so 0.5 means unrelated;
  the thresholds mark about the top and bottom tenth of all pairs of the development clips and
  separate the synthetic pairs that share the factor an aspect hears from those that do not (see
  :data:`SIMILAR`).
* **Order**: agreements first, tempo and key before aspects (they are measured facts), aspects by how
  far they clear their threshold (times :data:`SALIENCE`); then the most notable difference (tempo or key before aspects,
  aspects by how far below their threshold). At most :data:`MAX_AGREEMENTS` agreements and
  :data:`MAX_PHRASES` phrases in all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soundalike.features.descriptors import Descriptors

TEMPO_TOLERANCE = 0.04
"""Largest relative difference of two tempi (or of one and twice the other) still called the same."""
CLOSE_TOLERANCE = 0.08
"""Largest relative difference of two tempi called close."""

SIMILAR: dict[str, float] = {
    "timbre": 0.62,
    "spectral": 0.75,
    "rhythm": 0.70,
    "harmony": 0.72,
    "loudness": 0.95,
    "style": 0.85,
}
"""Aspect similarity from which the aspect is worded as an agreement. About the top tenth of all
pairs of the 91 development clips (``/work/shared/dev-music``; loudness, spread far wider, its top
quarter), and below the 5th percentile of pairs sharing the factor in the synthetic library
(instrument for timbre, spectral and style; groove for rhythm; key for harmony)."""

DIFFERENT: dict[str, float] = {
    "timbre": 0.38,
    "spectral": 0.25,
    "rhythm": 0.40,
    "harmony": 0.30,
    "loudness": 0.15,
    "style": 0.55,
}
"""Aspect similarity up to which the aspect is worded as a difference: about the bottom tenth of all
pairs of the development clips, and above the 95th percentile of synthetic pairs sharing the factor."""

SALIENCE: dict[str, float] = {
    "timbre": 1.0,
    "style": 1.0,
    "rhythm": 1.0,
    "harmony": 1.0,
    "spectral": 0.8,
    "loudness": 0.5,
}
"""Weight of an aspect's margin when phrases are ranked: what the ear names first (instruments,
style, groove, harmony) before tonal balance and loudness, which say less on their own."""

WORDS: dict[str, tuple[str, str]] = {
    "timbre": ("similar instruments", "different instruments"),
    "spectral": ("similar tonal balance", "different tonal balance"),
    "rhythm": ("similar groove", "different groove"),
    "harmony": ("similar harmony", "different harmony"),
    "loudness": ("similar loudness and dynamics", "different loudness and dynamics"),
    "style": ("similar style", "different style"),
}
"""(agreement, difference) phrase per aspect."""

MAX_AGREEMENTS = 3
MAX_PHRASES = 4
SEPARATOR = " · "
NOTHING = "no single aspect stands out"
"""The line when no aspect is clearly alike or clearly different."""

_FACT = 2.0  # rank of a tempo or key phrase: above any aspect's (which lies in [0, 1])


@dataclass(frozen=True)
class Why:
    """The plain-language reasons for one result, and the parts they were built from.

    Attributes
    ----------
    text : str
        The line, phrases joined by " · ".
    phrases : tuple of str
    tempo_bpm : tuple of (float or None, float or None)
        Query's and result's tempo.
    tempo : str or None
        ``"same"``, ``"double"``, ``"half"`` (the result's against the query's), ``"close"`` or
        ``"different"``;
        None when either tempo is unknown.
    key : tuple of (str or None, str or None)
        Query's and result's key, e.g. ``"A minor"``.
    key_relation : str or None
        ``"same"``, ``"relative"`` or ``"different"``; None when either key is unknown.
    aspects : dict of str to str
        ``"similar"``, ``"different"`` or ``"neutral"`` per aspect.
    """

    text: str
    phrases: tuple[str, ...]
    tempo_bpm: tuple[float | None, float | None] = (None, None)
    tempo: str | None = None
    key: tuple[str | None, str | None] = (None, None)
    key_relation: str | None = None
    aspects: dict[str, str] = field(default_factory=dict)

    def parts(self) -> dict[str, Any]:
        """The structured parts, as the JSON API gives them."""
        return {
            "phrases": list(self.phrases),
            "tempo_bpm": [None if t is None else round(t, 1) for t in self.tempo_bpm],
            "tempo": self.tempo,
            "key": list(self.key),
            "key_relation": self.key_relation,
            "aspects": dict(self.aspects),
        }


def tempo_relation(query_bpm: float, result_bpm: float, *, tolerance: float = TEMPO_TOLERANCE) -> str:
    """``"same"``, ``"double"``, ``"half"``, ``"close"`` or ``"different"``: the result's tempo against the query's.

    Parameters
    ----------
    query_bpm, result_bpm : float
        Positive tempi in BPM.
    tolerance : float
        Relative difference still counted as equal (to the tempo, or to twice or half of it).
    """
    ratio = result_bpm / query_bpm
    for name, factor in (("same", 1.0), ("double", 2.0), ("half", 0.5)):
        if abs(ratio / factor - 1.0) <= tolerance:
            return name
    return "close" if abs(ratio - 1.0) <= CLOSE_TOLERANCE else "different"


def key_relation(query: Descriptors, result: Descriptors) -> str | None:
    """``"same"``, ``"relative"`` or ``"different"``; None when either key is unknown."""
    if query.key_tonic is None or result.key_tonic is None:
        return None
    if query.key_tonic == result.key_tonic and query.key_minor == result.key_minor:
        return "same"
    if query.key_minor != result.key_minor:
        major, minor = (query, result) if result.key_minor else (result, query)
        if (major.key_tonic - 3) % 12 == minor.key_tonic:  # type: ignore[operator]
            return "relative"
    return "different"


def _bpm(x: float) -> str:
    return f"{round(x)}"


def explain(aspects: Mapping[str, float], query: Descriptors, result: Descriptors) -> Why:
    """The plain-language line for one result.

    Parameters
    ----------
    aspects : mapping of str to float
        Per-aspect similarity in [0, 1], as in :attr:`soundalike.recommend.Recommendation.aspects`.
    query, result : Descriptors
        Tempo and key of the query and of the result (empty ones leave tempo or key out).

    Returns
    -------
    Why
    """
    agree: list[tuple[float, str]] = []
    differ: list[tuple[float, str]] = []
    tempo: str | None = None
    if query.tempo_bpm is not None and result.tempo_bpm is not None:
        q, r = query.tempo_bpm, result.tempo_bpm
        tempo = tempo_relation(q, r)
        if tempo == "same":
            agree.append((_FACT + 1.0 - abs(math.log(r / q)), f"same tempo (~{_bpm((q + r) / 2)} BPM)"))
        elif tempo == "close":
            agree.append((0.5, f"close tempo ({_bpm(q)} → {_bpm(r)} BPM)"))
        else:
            differ.append((_FACT, f"{tempo} tempo ({_bpm(q)} → {_bpm(r)} BPM)"))
    relation = key_relation(query, result)
    if relation == "same":
        agree.append((_FACT, f"same key ({result.key_name})"))
    elif relation == "relative":
        agree.append((_FACT - 0.5, f"relative key ({query.key_name} → {result.key_name})"))
    elif relation == "different":
        differ.append((_FACT - 0.5, f"different key ({query.key_name} → {result.key_name})"))
    verdicts: dict[str, str] = {}
    for name, value in aspects.items():
        if name not in WORDS or not math.isfinite(value):
            continue
        hi, lo = SIMILAR[name], DIFFERENT[name]
        verdicts[name] = "similar" if value >= hi else "different" if value <= lo else "neutral"
        if name == "harmony" and relation is not None:
            continue
        if value >= hi:
            agree.append((SALIENCE[name] * (value - hi) / (1.0 - hi), WORDS[name][0]))
        elif value <= lo:
            differ.append((SALIENCE[name] * (lo - value) / lo, WORDS[name][1]))
    agree.sort(key=lambda p: -p[0])
    differ.sort(key=lambda p: -p[0])
    phrases = [p for _, p in agree[:MAX_AGREEMENTS]]
    phrases += [p for _, p in differ[: MAX_PHRASES - len(phrases)]]
    return Why(
        text=SEPARATOR.join(phrases) if phrases else NOTHING,
        phrases=tuple(phrases),
        tempo_bpm=(query.tempo_bpm, result.tempo_bpm),
        tempo=tempo,
        key=(query.key_name, result.key_name),
        key_relation=relation,
        aspects=verdicts,
    )


__all__ = ["CLOSE_TOLERANCE", "DIFFERENT", "SALIENCE", "SIMILAR", "TEMPO_TOLERANCE", "WORDS", "Why", "explain", "key_relation", "tempo_relation"]
