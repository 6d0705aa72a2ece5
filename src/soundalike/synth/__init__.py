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
track takes 10–30 ms. :func:`write_library` writes the tracks through real encoders
(:func:`soundalike.audio.encode`) so that a synthetic library looks like a real one to the decoder.

:mod:`~soundalike.synth.specs` holds the factors and :class:`TrackSpec`,
:mod:`~soundalike.synth.rendering` turns a spec into samples, and :mod:`~soundalike.synth.library`
writes a whole library with its ``labels.csv``.
"""

from __future__ import annotations

from soundalike.synth.library import library_specs, write_library
from soundalike.synth.rendering import render
from soundalike.synth.specs import GROOVES, INSTRUMENTS, KEYS, Groove, TrackSpec

__all__ = [
    "GROOVES",
    "INSTRUMENTS",
    "KEYS",
    "Groove",
    "TrackSpec",
    "library_specs",
    "render",
    "write_library",
]
