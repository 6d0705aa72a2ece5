"""A synthetic music library on disk: the factorial design, the files and their ground truth."""

from __future__ import annotations

import csv
import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from soundalike import audio
from soundalike.synth.rendering import render
from soundalike.synth.specs import GROOVES, INSTRUMENTS, TrackSpec

log = logging.getLogger(__name__)


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
        File extensions to use (without the dot), see :func:`soundalike.audio.encode`.

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
    if not formats or set(formats) - set(audio.ENCODE_FORMATS):
        raise ValueError(f"formats must be a non-empty subset of {audio.ENCODE_FORMATS}, got {formats!r}")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError("track names must be unique; give replicated tracks different seeds")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    order = np.random.default_rng(len(specs)).permutation(len(specs))
    written: list[tuple[Path, TrackSpec]] = []
    for i, spec in enumerate(specs):
        ext = formats[int(order[i]) % len(formats)]
        path = audio.encode(
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
