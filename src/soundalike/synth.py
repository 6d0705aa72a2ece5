"""Synthesise music with known ground truth, for the demo and the test-suite.

Every track is made of three independent factors:

* an **instrument** (``INSTRUMENTS``) that plays a chord progression and a melody. Its note onsets
  never depend on the groove: the chord changes once per bar and the melody plays one note per beat,
  so the instrument carries the timbre and the key, not the groove;
* a **groove** (``GROOVES``): a tempo, a metre and a drum pattern. The drum kit is the same in every
  groove and each drum part (kick, snare, hats) is mixed at a fixed RMS relative to the instrument
  (all drums together about 6 dB below it), whatever the number of hits, so the drums carry the
  rhythm but hardly change the average spectrum;
* a **key** (``KEYS``): any of the 24 major and minor keys. Notes are folded into fixed registers, so
  changing key moves the pitch classes but not the register.

A track is described by a :class:`TrackSpec` and rendered deterministically from its seed; the seed
only varies the melody, small level and timing details, so two tracks with the same factors sound
alike but are not identical.

Rendering uses band-limited wavetables and per-note numpy slices (no per-sample Python), so a 12 s
track takes 10–30 ms. :func:`write_audio` writes through real encoders (libsndfile for WAV, FLAC,
Ogg Vorbis, Ogg Opus and MP3; FFmpeg's AAC through PyAV for M4A) so that a synthetic library looks
like a real one to the decoder.
"""

from __future__ import annotations

import csv
import functools
import itertools
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "GROOVES",
    "INSTRUMENTS",
    "KEYS",
    "Groove",
    "TrackSpec",
    "add_noise",
    "excerpt",
    "library_specs",
    "render",
    "write_audio",
    "write_library",
]

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
# Level of each drum part relative to the instrument's RMS, in dB. The parts together sit about
# 6 dB below the instrument: both clearly audible, the instrument dominating the average spectrum.
_DRUM_PART_DB = {"kick": -8.0, "snare": -11.0, "hats": -20.0}


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

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
# Scale degrees (0-based) of the one-chord-per-bar progression, I–IV–I–V (i–iv–i–V in minor, with
# a major V from the harmonic minor): the tonic every other bar keeps the key unambiguous even in a
# track only a few bars long.
_PROGRESSION = (0, 3, 0, 4)

# Registers (MIDI note numbers): every note is folded into [low, low + 12).
_BASS_LOW, _CHORD_LOW, _MELODY_LOW = 36, 55, 67


def _parse_key(key: str) -> tuple[int, bool]:
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
        pc, minor = _parse_key(self.key)
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


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------

_TABLE_SIZE = 4096


def _harmonics(instrument: str, layer: str) -> np.ndarray:
    """Harmonic amplitudes (index 0 = fundamental) of an instrument's bright or dull wavetable."""
    k = np.arange(1, 41, dtype=np.float64)
    if instrument == "organ":
        amps = np.zeros(40)
        # Drawbars 8', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1' and a little above: harmonics 1–6, 8, 10.
        for h, a in {1: 1.0, 2: 0.75, 3: 0.55, 4: 0.45, 5: 0.2, 6: 0.3, 8: 0.25, 10: 0.1}.items():
            amps[h - 1] = a
        return amps
    if instrument == "pluck":
        if layer == "bright":
            # A string plucked at 1/7 of its length: a sawtooth-like spectrum with a comb notch.
            return np.abs(np.sin(np.pi * k / 7.0)) / k**0.8
        return np.where(k <= 12, np.abs(np.sin(np.pi * k / 7.0)) / k**1.6, 0.0)
    if instrument == "pad":
        return np.concatenate([[1.0, 0.12, 0.04], np.zeros(37)])
    if instrument == "square":
        return np.where(k % 2 == 1, 1.0 / k, 0.0)
    raise ValueError(f"unknown instrument {instrument!r}")


@functools.lru_cache(maxsize=256)
def _wavetable(instrument: str, layer: str, max_harmonic: int) -> np.ndarray:
    """One period of the instrument's waveform with harmonics above ``max_harmonic`` removed."""
    amps = _harmonics(instrument, layer)[:max_harmonic]
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=np.complex128)
    # Sine phase for every harmonic: irfft of -j * a / 2 * N gives a * sin(2 pi k n / N).
    spectrum[1 : len(amps) + 1] = -0.5j * amps * _TABLE_SIZE
    table = np.fft.irfft(spectrum, n=_TABLE_SIZE)
    peak = float(np.max(np.abs(table)))
    table = table / peak if peak > 0 else table
    table.flags.writeable = False
    return table


def _envelope(instrument: str, t: np.ndarray, hold_s: float, beat_s: float) -> np.ndarray:
    """Amplitude envelope of one note held for ``hold_s`` seconds, over local time ``t``."""
    if instrument == "organ":
        attack, release = 0.008, 0.04
        env = np.minimum(t / attack, 1.0)
        return env * np.clip(1.0 - (t - hold_s) / release, 0.0, 1.0)
    if instrument == "pluck":
        env = np.minimum(t / 0.002, 1.0) * np.exp(-t / (_PLUCK_DECAY_BEATS * beat_s))
        return env * np.clip(1.0 - (t - hold_s) / 0.08, 0.0, 1.0)
    if instrument == "pad":
        attack = min(0.25, 0.6 * hold_s)
        env = 0.5 - 0.5 * np.cos(np.pi * np.minimum(t / attack, 1.0))
        return env * np.clip(1.0 - (t - hold_s) / 0.3, 0.0, 1.0)
    if instrument == "square":
        env = np.minimum(t / 0.01, 1.0) * (0.75 + 0.25 * np.exp(-t / 0.12))
        return env * np.clip(1.0 - (t - hold_s) / 0.03, 0.0, 1.0)
    raise ValueError(f"unknown instrument {instrument!r}")


# A plucked note dies away within a fraction of a beat: a player damps the strings sooner at a
# faster tempo. Scaling the decay with the beat keeps the share of ringing and silent frames, and so
# the pluck's average timbre, the same in every groove.
_PLUCK_DECAY_BEATS = 0.25
_PLUCK_BRIGHT_BEATS = 0.12
_RELEASE_S = {"organ": 0.04, "pluck": 0.08, "pad": 0.3, "square": 0.03}
_PAD_DETUNE_CENTS = 8.0


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _fold(pc: int, low: int) -> int:
    """The MIDI note of pitch class ``pc`` in the octave ``[low, low + 12)``."""
    return low + (pc - low) % 12


def _add_note(
    out: np.ndarray,
    instrument: str,
    *,
    start: int,
    hold_s: float,
    beat_s: float,
    midi: float,
    gain: float,
    phase: float,
    sample_rate: int,
) -> None:
    """Mix one note into ``out`` in place (private helper of :func:`render`)."""
    length = min(int((hold_s + _RELEASE_S[instrument]) * sample_rate), out.size - start)
    if length <= 0:
        return
    t = np.arange(length) / sample_rate
    freq = _midi_hz(midi)
    # Band-limit per note: keep harmonics below 0.45 * sample_rate, so nothing aliases.
    max_harmonic = max(1, int(0.45 * sample_rate / freq))
    bright = _wavetable(instrument, "bright", max_harmonic)
    if instrument == "pad":
        detune = 2.0 ** (_PAD_DETUNE_CENTS / 1200.0)
        wave = 0.5 * (
            bright[_table_index(freq * detune, t, phase)]
            + bright[_table_index(freq / detune, t, -phase)]
        )
    elif instrument == "pluck":
        dull = _wavetable(instrument, "dull", max_harmonic)
        idx = _table_index(freq, t, phase)
        # Upper harmonics die away much faster than the fundamental, as on a real string.
        wave = dull[idx] + (bright[idx] - dull[idx]) * np.exp(-t / (_PLUCK_BRIGHT_BEATS * beat_s))
    else:
        wave = bright[_table_index(freq, t, phase)]
    out[start : start + length] += gain * _envelope(instrument, t, hold_s, beat_s) * wave


def _table_index(freq: float, t: np.ndarray, phase: float) -> np.ndarray:
    """Wavetable indices of a constant-frequency oscillator over time ``t``."""
    # The table size is a power of two, so masking the integer phase wraps it (negative too).
    return ((freq * _TABLE_SIZE) * t + phase * _TABLE_SIZE).astype(np.intp) & (_TABLE_SIZE - 1)


def _render_instrument(
    spec: TrackSpec, groove: Groove, n: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """The instrument part: one chord (with bass) per bar and one melody note per beat."""
    tonic, minor = _parse_key(spec.key)
    scale = _MINOR if minor else _MAJOR
    chord_scale = _HARMONIC_MINOR if minor else _MAJOR
    melody_pcs = np.array([(tonic + s) % 12 for s in scale])
    out = np.zeros(n, dtype=np.float64)
    duration = n / sample_rate

    note = functools.partial(
        _add_note, out, spec.instrument, beat_s=groove.beat_s, sample_rate=sample_rate
    )
    for bar in range(math.ceil(duration / groove.bar_s)):
        degree = _PROGRESSION[bar % len(_PROGRESSION)]
        chord = [(tonic + chord_scale[(degree + 2 * i) % 7]) % 12 for i in range(3)]
        start = round(bar * groove.bar_s * sample_rate)
        hold = groove.bar_s * 0.98
        note(
            start=start,
            hold_s=hold,
            midi=_fold(chord[0], _BASS_LOW),
            gain=0.45 * rng.uniform(0.9, 1.1),
            phase=rng.random(),
        )
        for pc in chord:
            note(
                start=start,
                hold_s=hold,
                midi=_fold(pc, _CHORD_LOW),
                gain=0.22 * rng.uniform(0.9, 1.1),
                phase=rng.random(),
            )

        # Melody: one note per beat, the chord's root on the downbeat and then notes drawn from the
        # scale with chord tones (and the tonic above all) more likely, so the key stays clear
        # while every seed gets its own tune.
        weights = np.where(np.isin(melody_pcs, chord), 3.0, 1.0)
        weights[0] += 2.0
        notes = rng.choice(melody_pcs, size=groove.beats_per_bar, p=weights / weights.sum())
        notes[0] = chord[0]
        for beat, pc in enumerate(notes):
            start = round((bar * groove.beats_per_bar + beat) * groove.beat_s * sample_rate)
            if start >= n:
                break
            note(
                start=start,
                hold_s=groove.beat_s * 0.9,
                midi=_fold(int(pc), _MELODY_LOW),
                gain=0.4 * rng.uniform(0.85, 1.15),
                phase=rng.random(),
            )
    return out


# --------------------------------------------------------------------------------------------
# Drums
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _drum_samples(sample_rate: int) -> dict[str, np.ndarray]:
    """One-shot drum sounds at ``sample_rate``; the same kit (and noise) for every track."""
    from scipy import signal

    noise_rng = np.random.default_rng(12345)
    nyquist = sample_rate / 2.0

    def time(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sample_rate)) / sample_rate

    def highpassed_noise(t: np.ndarray, cutoff: float) -> np.ndarray:
        sos = signal.butter(
            4, min(cutoff, 0.8 * nyquist), btype="highpass", fs=sample_rate, output="sos"
        )
        return signal.sosfilt(sos, noise_rng.standard_normal(t.size))

    t = time(0.4)
    # Kick: a sine swept down from ~160 Hz to 45 Hz, with a 2 ms click for the beater.
    freq = 45.0 + 115.0 * np.exp(-t / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / 0.13)
    kick[: int(0.002 * sample_rate)] += 0.3 * noise_rng.standard_normal(int(0.002 * sample_rate))

    t = time(0.25)
    tone = (np.sin(2 * np.pi * 185.0 * t) + 0.5 * np.sin(2 * np.pi * 330.0 * t)) * np.exp(-t / 0.05)
    sos = signal.butter(
        2, [1000.0, min(8000.0, 0.8 * nyquist)], btype="bandpass", fs=sample_rate, output="sos"
    )
    rattle = signal.sosfilt(sos, noise_rng.standard_normal(t.size)) * np.exp(-t / 0.06)
    snare = 0.6 * tone + rattle / np.max(np.abs(rattle))

    t = time(0.08)
    hat = highpassed_noise(t, 7000.0) * np.exp(-t / 0.015)
    t = time(0.35)
    open_hat = highpassed_noise(t, 6000.0) * np.exp(-t / 0.12)

    samples = {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat}
    for sound in samples.values():
        sound /= np.max(np.abs(sound))
        sound.flags.writeable = False
    return samples


def _render_drums(
    groove: Groove, n: int, sample_rate: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Drum parts keyed ``kick``, ``snare``, ``hats`` (closed and open together), unscaled."""
    samples = _drum_samples(sample_rate)
    parts = {name: np.zeros(n, dtype=np.float64) for name in _DRUM_PART_DB}
    step_s = groove.beat_s / groove.steps_per_beat
    for drum, row in groove.pattern:
        part = parts["hats" if drum in ("hat", "open_hat") else drum]
        sound = samples[drum]
        n_steps = math.ceil(n / sample_rate / step_s)
        for step in range(n_steps):
            symbol = row[step % len(row)]
            if symbol == ".":
                continue
            # Micro-timing of a few milliseconds, as a drummer would play.
            start = round((step * step_s + rng.normal(0.0, 0.002)) * sample_rate)
            start = min(max(start, 0), n - 1)
            velocity = (1.0 if symbol == "X" else 0.6) * rng.uniform(0.9, 1.1)
            length = min(sound.size, n - start)
            part[start : start + length] += velocity * sound[:length]
    return parts


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

_PEAK_DBFS = -1.0


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


def render(spec: TrackSpec, *, sample_rate: int = 22050) -> np.ndarray:
    """Render a synthetic track.

    Parameters
    ----------
    spec : TrackSpec
        Instrument, groove, key, duration and seed.
    sample_rate : int >= 8000
        Output rate in Hz.

    Returns
    -------
    y : np.ndarray [shape=(round(spec.duration * sample_rate),), dtype=float32]
        Mono signal peak-normalised to -1 dBFS. The same ``spec`` always gives the same samples.

    Raises
    ------
    ValueError
        If ``sample_rate`` is not an integer of at least 8000 Hz.
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an integer of at least 8000 Hz, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    n = round(spec.duration * sample_rate)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    groove = GROOVES[spec.groove]
    rng = np.random.default_rng(spec.seed)

    y = _render_instrument(spec, groove, n, sample_rate, rng)
    instrument_rms = _rms(y)
    for name, part in _render_drums(groove, n, sample_rate, rng).items():
        part_rms = _rms(part)
        if part_rms > 0:
            level_db = _DRUM_PART_DB[name] + rng.uniform(-1.0, 1.0)
            y += part * (instrument_rms * 10.0 ** (level_db / 20.0) / part_rms)

    # Short fades so that the track does not start or stop with a click.
    fade_in, fade_out = min(n, int(0.005 * sample_rate)), min(n, int(0.03 * sample_rate))
    y[:fade_in] *= np.linspace(0.0, 1.0, fade_in, endpoint=False)
    y[n - fade_out :] *= np.linspace(1.0, 0.0, fade_out)

    peak = float(np.max(np.abs(y)))
    if peak > 0:
        y *= 10.0 ** (_PEAK_DBFS / 20.0) / peak
    log.debug("rendered %s: %d samples at %d Hz", spec.name, n, sample_rate)
    return y.astype(np.float32)


def add_noise(y: np.ndarray, *, snr_db: float, rng: np.random.Generator | int | None) -> np.ndarray:
    """Add white gaussian noise at a given signal-to-noise ratio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Signal.
    snr_db : float
        Ratio of the signal's RMS to the noise's RMS, in dB.
    rng : np.random.Generator or int or None
        Source of the noise (an int is used as a seed).

    Returns
    -------
    noisy : np.ndarray [shape=(n,), dtype=float32]
        ``y`` plus noise; not clipped, so it may exceed [-1, 1] at low SNR.
    """
    y = np.asarray(y, dtype=np.float32)
    generator = np.random.default_rng(rng)
    noise_rms = _rms(y) / 10.0 ** (snr_db / 20.0)
    noise = generator.standard_normal(y.shape) * noise_rms
    return (y + noise).astype(np.float32)


def excerpt(y: np.ndarray, *, sample_rate: int, start_s: float, duration_s: float) -> np.ndarray:
    """Cut a segment out of a signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Signal.
    sample_rate : int
        Rate of ``y`` in Hz.
    start_s, duration_s : float
        Start and length of the segment in seconds.

    Returns
    -------
    segment : np.ndarray [shape=(round(duration_s * sample_rate),)]
        A copy of the samples from ``round(start_s * sample_rate)`` on.

    Raises
    ------
    ValueError
        If the segment is empty or does not lie inside ``y``.
    """
    start = round(start_s * sample_rate)
    length = round(duration_s * sample_rate)
    if start < 0 or length <= 0 or start + length > len(y):
        raise ValueError(
            f"excerpt [{start_s:g} s, {start_s + duration_s:g} s) does not fit in a signal of "
            f"{len(y) / sample_rate:g} s"
        )
    return np.array(y[start : start + length], copy=True)


# --------------------------------------------------------------------------------------------
# Writing through real encoders
# --------------------------------------------------------------------------------------------

_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
# libvorbis nominal bitrates (44.1 kHz stereo) at quality -1 … 10, to turn a bitrate into a quality.
_VORBIS_KBPS = (45, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)
_FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "m4a")


def _parse_bitrate(bitrate: str | int) -> int:
    """``"128k"`` or ``128000`` → bits per second."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*", str(bitrate))
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"bad bitrate {bitrate!r}; expected e.g. '128k' or 128000")
    return int(float(match.group(1)) * (1000 if match.group(2) else 1))


def _supported_rate(sample_rate: int, rates: Sequence[int]) -> int:
    """The smallest rate in ``rates`` at or above ``sample_rate`` (else the highest)."""
    return next((r for r in rates if r >= sample_rate), rates[-1])


def _resample(y: np.ndarray, source: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if source == target:
        return y
    g = math.gcd(source, target)
    return resample_poly(y, target // g, source // g).astype(np.float32)


def write_audio(
    path: str | os.PathLike[str],
    y: np.ndarray,
    *,
    sample_rate: int,
    bitrate: str | int | None = None,
) -> Path:
    """Write a mono signal through a real encoder chosen by the file extension.

    ===========  ==========================  =========================================
    extension    encoder                     notes
    ===========  ==========================  =========================================
    ``.wav``     libsndfile, PCM 16-bit      lossless; ``bitrate`` ignored
    ``.flac``    libsndfile, FLAC 16-bit     lossless; ``bitrate`` ignored
    ``.ogg``     libsndfile, Vorbis          ``bitrate`` → nominal VBR quality
    ``.opus``    libsndfile, Ogg Opus        resampled to 8/12/16/24/48 kHz
    ``.mp3``     libsndfile (LAME)           ``bitrate`` → constant bitrate
    ``.m4a``     PyAV (FFmpeg AAC)           ``bitrate`` → AAC target bitrate
    ===========  ==========================  =========================================

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its parent directory must exist. Overwritten if present.
    y : np.ndarray [shape=(n,)]
        Mono signal in [-1, 1] (clipped when written as 16-bit PCM).
    sample_rate : int
        Rate of ``y`` in Hz. Rates a codec cannot store are resampled to the next one it can.
    bitrate : str or int, optional
        Target bitrate of lossy formats, e.g. ``"96k"``; the encoder default when ``None``.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        If the extension is not one of the above, or ``y`` is not one-dimensional.
    """
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if ext not in _FORMATS:
        raise ValueError(
            f"cannot write {path.name!r}: unsupported extension {path.suffix!r}; "
            f"expected one of {', '.join('.' + f for f in _FORMATS)}"
        )
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono signal of shape (n,), got shape {y.shape}")
    bps = None if bitrate is None else _parse_bitrate(bitrate)

    if ext == "m4a":
        rate = _supported_rate(sample_rate, _AAC_RATES)
        _write_aac(path, _resample(y, sample_rate, rate), sample_rate=rate, bps=bps)
        return path

    import soundfile as sf

    options: dict[str, object] = {}
    rate = sample_rate
    if ext == "wav":
        options = {"format": "WAV", "subtype": "PCM_16"}
    elif ext == "flac":
        options = {"format": "FLAC", "subtype": "PCM_16"}
    elif ext == "ogg":
        options = {"format": "OGG", "subtype": "VORBIS"}
        if bps is not None:
            quality = np.interp(
                bps / 1000.0, _VORBIS_KBPS, np.linspace(-0.1, 1.0, len(_VORBIS_KBPS))
            )
            # libsndfile's Vorbis quality is 1 - compression_level, clipped to [0, 1].
            options["compression_level"] = float(np.clip(1.0 - quality, 0.0, 1.0))
    elif ext == "opus":
        rate = _supported_rate(sample_rate, _OPUS_RATES)
        options = {"format": "OGG", "subtype": "OPUS"}
        if bps is not None:
            # libsndfile: bitrate = (1 - level) * 250 kbps + 6 kbps per channel.
            options["compression_level"] = float(np.clip(1.0 - (bps - 6000) / 250000, 0.0, 1.0))
    elif ext == "mp3":
        rate = _supported_rate(sample_rate, _MP3_RATES)
        options = {"format": "MP3", "subtype": "MPEG_LAYER_III"}
        if bps is not None:
            # libsndfile maps compression_level linearly onto the MPEG version's bitrate range.
            low, high = (32, 320) if rate >= 32000 else (8, 160) if rate >= 16000 else (8, 64)
            kbps = min(max(bps / 1000.0, low), high)
            options["compression_level"] = (high - kbps) / (high - low)
            options["bitrate_mode"] = "CONSTANT"
    elif bps is not None:
        log.debug("%s is lossless; ignoring bitrate %r", path.name, bitrate)

    data = _resample(y, sample_rate, rate)
    if ext in ("wav", "flac"):
        data = np.clip(data, -1.0, 1.0)
    sf.write(path, data, rate, **options)
    log.debug("wrote %s (%s, %d Hz, %d samples)", path, ext, rate, data.size)
    return path


def _write_aac(path: Path, y: np.ndarray, *, sample_rate: int, bps: int | None) -> None:
    """Encode ``y`` as AAC in an MPEG-4 audio (.m4a) container with PyAV."""
    import av

    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        if bps is not None:
            stream.bit_rate = bps
        stream.codec_context.open()
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, y.size, frame_size):
            chunk = np.ascontiguousarray(y[start : start + frame_size])[np.newaxis, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# --------------------------------------------------------------------------------------------
# Libraries
# --------------------------------------------------------------------------------------------


def library_specs(
    *,
    instruments: Iterable[str] | None = None,
    grooves: Iterable[str] | None = None,
    keys: Iterable[str] = ("C", "A"),
    duration: float = 12.0,
    seed: int = 0,
    replicates: int = 1,
) -> list[TrackSpec]:
    """The full factorial design instrument × groove × key (× replicate).

    Parameters
    ----------
    instruments : iterable of str, optional
        Defaults to every one of :data:`INSTRUMENTS`.
    grooves : iterable of str, optional
        Defaults to every one of :data:`GROOVES`.
    keys : iterable of str
        Key names, see :data:`KEYS`.
    duration : float
        Length of every track in seconds.
    seed : int
        Library seed. Track ``i`` (in the order returned) gets seed ``seed * N + i`` where ``N`` is
        the number of tracks, so every track has its own melody and no two libraries of the same
        design share a track seed.
    replicates : int >= 1
        Tracks per combination of factors (differing only by seed).

    Returns
    -------
    specs : list of TrackSpec [length = instruments × grooves × keys × replicates]
        Ordered by instrument, then groove, then key, then replicate.

    Raises
    ------
    ValueError
        If a factor is unknown or ``replicates`` is below 1.
    """
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, got {replicates}")
    design = list(
        itertools.product(
            INSTRUMENTS if instruments is None else tuple(instruments),
            tuple(GROOVES) if grooves is None else tuple(grooves),
            tuple(keys),
            range(replicates),
        )
    )
    total = len(design)
    return [
        TrackSpec(instrument, groove, key, duration=duration, seed=seed * total + i)
        for i, (instrument, groove, key, _) in enumerate(design)
    ]


def write_library(
    directory: str | os.PathLike[str],
    specs: Sequence[TrackSpec],
    *,
    sample_rate: int = 22050,
    formats: Sequence[str] = ("mp3", "ogg", "flac", "wav"),
) -> list[tuple[Path, TrackSpec]]:
    """Render tracks and write them as a small music library with its ground truth.

    The layout is flat: ``directory/<spec.name>.<ext>`` plus ``directory/labels.csv`` with the
    columns ``path,instrument,groove,tempo,key`` (``path`` relative to ``directory``), one row per
    track. Formats are spread evenly over the tracks in a fixed pseudo-random order, so the format
    does not line up with any factor.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing; existing files of the same names are overwritten.
    specs : sequence of TrackSpec
        Tracks to write; names must be unique.
    sample_rate : int
        Rate to render at in Hz.
    formats : sequence of str
        File extensions to use (without the dot), see :func:`write_audio`.

    Returns
    -------
    written : list of (pathlib.Path, TrackSpec)
        The file of each spec, in the order of ``specs``.

    Raises
    ------
    ValueError
        If ``formats`` is empty or names an unsupported format, or two specs share a name.
    """
    formats = [f.lower().lstrip(".") for f in formats]
    if not formats or set(formats) - set(_FORMATS):
        raise ValueError(f"formats must be a non-empty subset of {_FORMATS}, got {formats!r}")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError("track names must be unique; give replicated tracks different seeds")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    order = np.random.default_rng(len(specs)).permutation(len(specs))
    written: list[tuple[Path, TrackSpec]] = []
    for i, spec in enumerate(specs):
        ext = formats[int(order[i]) % len(formats)]
        path = write_audio(
            directory / f"{spec.name}.{ext}",
            render(spec, sample_rate=sample_rate),
            sample_rate=sample_rate,
        )
        written.append((path, spec))

    with open(directory / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "instrument", "groove", "tempo", "key"])
        for path, spec in written:
            writer.writerow(
                [
                    path.relative_to(directory).as_posix(),
                    spec.instrument,
                    spec.groove,
                    f"{spec.tempo:g}",
                    spec.key,
                ]
            )
    log.info("wrote %d tracks and labels.csv to %s", len(written), directory)
    return written
