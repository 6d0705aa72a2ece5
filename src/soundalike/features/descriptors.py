"""Tempo and key of a track, read from the track vector the analysis already stores.

The rhythm family keeps the tempo it estimated (``tempo_log2``: the autocorrelation peak of onset
strength with a prior around 120 BPM, see :func:`soundalike.features.rhythm.tempo`) and how clear
the pulse is (``pulse_clarity``); the harmony family keeps the correlation of the mean chroma with
the 24 Krumhansl–Kessler key profiles (``key_C_major`` … ``key_B_minor``, see
:func:`soundalike.features.harmony.key_profile`). Both are computed at analysis time for every track,
so the descriptors need nothing new in the catalog: every library analysed with this feature version
has them, without a re-analysis. A vector of another layout, or one whose pulse or key is unclear,
gives ``None`` for that descriptor, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from soundalike.features import Layout, track_layout
from soundalike.features.harmony import PITCHES

MIN_PULSE_CLARITY = 0.3
"""Pulse clarity (the normalised autocorrelation at the tempo's lag, 0–1) below which no tempo is
stated: a drone or a rubato piece has a number but no beat worth naming. Synthetic grooves measure
0.5–0.95 through MP3."""
MIN_KEY_STRENGTH = 0.5
"""Correlation with the best key profile below which no key is stated (atonal, percussive or very
chromatic material). Synthetic tracks in any key measure 0.75–0.96."""
MODES = ("major", "minor")
TONICS: dict[str, tuple[str, ...]] = {
    "major": ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
    "minor": ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"),
}
"""Tonic names per mode, spelt as key signatures usually are (Db major but C# minor)."""


@dataclass(frozen=True)
class Descriptors:
    """What can be said about one track in words: its tempo and its key.

    Attributes
    ----------
    tempo_bpm : float or None
        Beats per minute, None when the pulse is not clear (below :data:`MIN_PULSE_CLARITY`).
    pulse_clarity : float or None
        0–1; None when the vector does not carry it.
    key_tonic : int or None
        Pitch class of the tonic, 0 = C … 11 = B; None when no key is clear.
    key_minor : bool or None
    key_strength : float or None
        Correlation with the best key profile, -1 to 1.
    """

    tempo_bpm: float | None = None
    pulse_clarity: float | None = None
    key_tonic: int | None = None
    key_minor: bool | None = None
    key_strength: float | None = None

    @property
    def key_name(self) -> str | None:
        """E.g. ``"A minor"``, ``"F# minor"``, ``"Eb major"`` (see :data:`TONICS`), or None."""
        if self.key_tonic is None or self.key_minor is None:
            return None
        mode = MODES[int(self.key_minor)]
        return f"{TONICS[mode][self.key_tonic]} {mode}"


NONE = Descriptors()
"""Nothing known (a vector of another layout, or none at all)."""


def describe(vector: np.ndarray, *, layout: Layout | None = None) -> Descriptors:
    """Tempo and key from a raw (not normalised) track vector.

    Parameters
    ----------
    vector : np.ndarray [shape=(layout.dim,)]
        A track vector as :func:`soundalike.features.extract` returns it and the catalog stores it.
    layout : Layout, optional
        Defaults to :func:`soundalike.features.track_layout`.

    Returns
    -------
    Descriptors
        :data:`NONE` when ``vector`` does not have the layout's length.
    """
    layout = layout or track_layout()
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    if v.shape[0] != layout.dim:
        return NONE
    tempo_at, clarity_at, keys_at = _positions(layout.names)
    tempo: float | None = None
    clarity: float | None = None
    if tempo_at is not None and clarity_at is not None:
        clarity = float(v[clarity_at])
        if clarity >= MIN_PULSE_CLARITY and np.isfinite(v[tempo_at]):
            tempo = float(120.0 * 2.0 ** v[tempo_at])
    if keys_at is None:
        return Descriptors(tempo_bpm=tempo, pulse_clarity=clarity)
    keys = v[keys_at]
    best = int(np.argmax(keys))
    strength = float(keys[best])
    if not strength >= MIN_KEY_STRENGTH:
        return Descriptors(tempo_bpm=tempo, pulse_clarity=clarity, key_strength=strength)
    return Descriptors(
        tempo_bpm=tempo,
        pulse_clarity=clarity,
        key_tonic=best % 12,
        key_minor=best >= 12,
        key_strength=strength,
    )


@lru_cache(maxsize=4)
def _positions(names: tuple[str, ...]) -> tuple[int | None, int | None, np.ndarray | None]:
    """Where a layout keeps ``tempo_log2``, ``pulse_clarity`` and the 24 key correlations (major, then minor)."""
    at = {name: i for i, name in enumerate(names)}
    key_names = [f"key_{p}_{mode}" for mode in MODES for p in PITCHES]
    keys = np.array([at[n] for n in key_names]) if all(n in at for n in key_names) else None
    return at.get("tempo_log2"), at.get("pulse_clarity"), keys


__all__ = ["MIN_KEY_STRENGTH", "MIN_PULSE_CLARITY", "MODES", "NONE", "TONICS", "Descriptors", "describe"]
