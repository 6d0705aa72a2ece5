"""The three factors of a synthetic track (instrument, groove, key) and the :class:`TrackSpec`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# Factors
# --------------------------------------------------------------------------------------------

INSTRUMENTS: tuple[str, ...] = ("organ", "pluck", "pad", "square")
"""Instrument names.

``organ``
    Sustained drawbar organ: odd and even harmonics, no decay.
``pluck``
    Plucked string: bright attack whose upper harmonics die away first, fast exponential decay
    (a quarter of a beat, so that it sounds equally sparse at every tempo).
``pad``
    Soft pad: few harmonics, slow attack and release, two voices detuned for a chorus.
``square``
    Square-wave lead: strong odd harmonics, short attack, steady sustain.
"""

_DRUMS = ("kick", "snare", "hat", "open_hat")


@dataclass(frozen=True)
class Groove:
    """A tempo, a metre and a one-bar drum pattern.

    Attributes
    ----------
    name : str
        Identifier, e.g. ``"backbeat"``.
    bpm : float
        Tempo in beats per minute.
    beats_per_bar : int
        Beats in one bar (4 for 4/4, 3 for 3/4).
    steps_per_beat : int
        Grid resolution of ``pattern`` (4 for sixteenth notes in 4/4).
    pattern : tuple of (str, str)
        ``(drum, steps)`` pairs, one per drum used; ``drum`` is one of ``kick``, ``snare``,
        ``hat``, ``open_hat`` and ``steps`` has ``beats_per_bar * steps_per_beat`` characters:
        ``X`` accented hit, ``x`` normal hit, ``.`` rest.
    """

    name: str
    bpm: float
    beats_per_bar: int
    steps_per_beat: int
    pattern: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        steps = self.beats_per_bar * self.steps_per_beat
        for drum, row in self.pattern:
            if drum not in _DRUMS:
                raise ValueError(
                    f"groove {self.name!r}: unknown drum {drum!r}; expected one of {_DRUMS}"
                )
            if len(row) != steps or set(row) - set("Xx."):
                raise ValueError(
                    f"groove {self.name!r}: {drum} pattern {row!r} must have {steps} characters "
                    "from 'X', 'x' and '.'"
                )

    @property
    def beat_s(self) -> float:
        """Duration of one beat in seconds."""
        return 60.0 / self.bpm

    @property
    def bar_s(self) -> float:
        """Duration of one bar in seconds."""
        return self.beats_per_bar * self.beat_s


def _groove(name: str, bpm: float, metre: tuple[int, int], **rows: str) -> Groove:
    """Build a :class:`Groove`; ``metre`` is ``(beats_per_bar, steps_per_beat)``."""
    return Groove(name, bpm, metre[0], metre[1], tuple(rows.items()))


GROOVES: dict[str, Groove] = {
    g.name: g
    for g in (
        _groove(
            "four_on_floor", 128.0, (4, 4),
            kick="X...X...X...X...",
            snare="....x.......x...",
            hat="x.x.x.x.x.x.x.x.",
            open_hat="..X...X...X...X.",
        ),
        _groove(
            "backbeat", 96.0, (4, 4),
            kick="X.......X.x.....",
            snare="....X.......X...",
            hat="X.x.X.x.X.x.X.x.",
        ),
        _groove(
            "halftime", 70.0, (4, 4),
            kick="X.........x.....",
            snare="........X.......",
            hat="Xxxxxxxxxxxxxxxx",
        ),
        _groove(
            "waltz", 150.0, (3, 2),
            kick="X.....",
            snare="....x.",
            hat="xxXxXx",
        ),
        _groove(
            "bossa", 112.0, (4, 4),
            kick="X..xX..xX..xX..x",
            snare="x..x..x...x.x...",
            hat="X.x.X.x.X.x.X.x.",
        ),
    )
}  # fmt: skip
"""Grooves by name, each with its own tempo and drum pattern:

=============  =====  =====  ==============================================================
name           BPM    metre  pattern
=============  =====  =====  ==============================================================
four_on_floor  128    4/4    kick on every beat, clap on 2 and 4, open hat on the off-beats
backbeat        96    4/4    kick on 1 and 3 (and the "and" of 3), snare on 2 and 4, 8th hats
halftime        70    4/4    kick on 1, snare on 3, 16th hats
waltz          150    3/4    kick on 1, snare on 3, 8th hats accented on 2 and 3
bossa          112    4/4    surdo-like kick, son-clave rim clicks on the snare, 8th hats
=============  =====  =====  ==============================================================

Hats play between about 3 and 6.5 hits per second in every groove, so that the drums' average
spectrum, which timbre features see, barely depends on the groove.
"""

_PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}

KEYS: tuple[str, ...] = _PITCH_NAMES + tuple(p + "m" for p in _PITCH_NAMES)
"""The 24 canonical key names: ``"C"`` … ``"B"`` (major) and ``"Cm"`` … ``"Bm"`` (minor).

Flat spellings (``"Bb"``, ``"Ebm"``) are accepted by :class:`TrackSpec` and stored as the sharp
equivalent."""


def parse_key(key: str) -> tuple[int, bool]:
    """Return ``(tonic pitch class, is_minor)`` for a key name such as ``"F#m"``."""
    match = re.fullmatch(r"([A-G][#b]?)(m?)", key.strip()) if isinstance(key, str) else None
    if match is None:
        raise ValueError(f"unknown key {key!r}; expected e.g. 'C', 'F#', 'Bb' or 'Am'")
    name = _FLATS.get(match.group(1), match.group(1))
    if name not in _PITCH_NAMES:  # e.g. "Fb", "Cb": not worth supporting
        raise ValueError(f"unknown key {key!r}; use one of {', '.join(KEYS)}")
    return _PITCH_NAMES.index(name), bool(match.group(2))


@dataclass(frozen=True)
class TrackSpec:
    """Everything needed to render one synthetic track.

    Attributes
    ----------
    instrument : str
        One of :data:`INSTRUMENTS`.
    groove : str
        A key of :data:`GROOVES`.
    key : str
        One of :data:`KEYS` (flat spellings are normalised to sharps).
    duration : float
        Length in seconds.
    seed : int
        Seed of the small per-track variation (melody, levels, micro-timing).

    Raises
    ------
    ValueError
        If a factor is unknown or the duration is not positive.
    """

    instrument: str
    groove: str
    key: str
    duration: float = 12.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.instrument not in INSTRUMENTS:
            raise ValueError(
                f"unknown instrument {self.instrument!r}; expected one of {', '.join(INSTRUMENTS)}"
            )
        if self.groove not in GROOVES:
            raise ValueError(
                f"unknown groove {self.groove!r}; expected one of {', '.join(GROOVES)}"
            )
        pc, minor = parse_key(self.key)
        object.__setattr__(self, "key", _PITCH_NAMES[pc] + ("m" if minor else ""))
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(
                f"duration must be a positive number of seconds, got {self.duration!r}"
            )

    @property
    def name(self) -> str:
        """File-safe identifier, e.g. ``"pluck-backbeat-C-s0"`` (``#`` is spelt ``sharp``)."""
        key = self.key.replace("#", "sharp")
        return f"{self.instrument}-{self.groove}-{key}-s{self.seed}"

    @property
    def tempo(self) -> float:
        """Tempo of the groove in beats per minute."""
        return GROOVES[self.groove].bpm
