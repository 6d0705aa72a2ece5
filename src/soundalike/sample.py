"""Stratified samples of a large labelled collection, for evaluation on a manageable subset.

The population is every track of the Free Music Archive metadata file (``tracks.csv``) that has a
label in the chosen column and whose audio file exists under the audio folder (the FMA layout,
``audio_dir/000/000123.mp3``). The sample gives each label its share of ``n`` by the largest-remainder
rule: label ``l`` with ``N_l`` of the ``N`` tracks gets ``floor(n N_l / N)`` tracks, and the tracks
left over go to the labels with the largest fractional parts. Every label's count is therefore
within one track of its exact proportional share, and the counts add up to ``n``. Within a label,
tracks are drawn uniformly without replacement by a generator seeded with ``seed``, so the same
seed and files give the same sample.

The list file written has one absolute path per line after ``#`` comment lines; ``soundalike ingest
--from-list FILE`` ingests exactly those files.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundalike.labels import LabelError, fma_audio_path, read_fma_tracks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """A stratified sample.

    Attributes
    ----------
    track_ids : list of int
        Sampled FMA track ids, ascending.
    paths : list of Path
        Their audio files, in the same order.
    labels : dict of int to str
        Label of every sampled track.
    population : dict of str to int
        Tracks per label in the population (labelled and with audio).
    quota : dict of str to float
        Exact proportional share of each label, ``n * N_l / N``.
    missing_audio : int
        Labelled tracks skipped because their audio file does not exist.
    """

    track_ids: list[int]
    paths: list[Path]
    labels: dict[int, str]
    population: dict[str, int]
    quota: dict[str, float]
    missing_audio: int

    @property
    def counts(self) -> dict[str, int]:
        """Sampled tracks per label."""
        found = Counter(self.labels.values())
        return {label: found.get(label, 0) for label in self.population}


def allocate(population: Mapping[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over labels in proportion to ``population`` by the largest-remainder rule.

    Parameters
    ----------
    population : mapping of str to int
        Tracks available per label.
    n : int
        Sample size, ``0 <= n <= sum(population)``.

    Returns
    -------
    dict of str to int
        Tracks to draw per label; each within 1 of ``n * N_l / N`` and at most ``N_l``; they sum
        to ``n``. Ties in the remainders go to the larger label, then the label name.
    """
    total = sum(population.values())
    if not 0 <= n <= total:
        raise ValueError(f"cannot draw {n} of {total} tracks")
    if total == 0:
        return {}
    quota = {label: n * count / total for label, count in population.items()}
    out = {label: math.floor(q) for label, q in quota.items()}
    left = n - sum(out.values())
    order = sorted(population, key=lambda lab: (-(quota[lab] - out[lab]), -population[lab], lab))
    for label in order[:left]:
        out[label] += 1
    return out


def stratified_sample(
    labels: Mapping[int, str],
    n: int,
    *,
    seed: int = 0,
    exists: Callable[[int], bool] | None = None,
) -> tuple[list[int], dict[str, int], int]:
    """Draw ``n`` track ids whose label proportions mirror the population's.

    Parameters
    ----------
    labels : mapping of int to str
        Track id → label for the whole collection.
    n : int
        Sample size.
    seed : int
        Seed of the generator; the same seed gives the same sample.
    exists : callable, optional
        Whether a track's audio is available; tracks for which it returns False are not part of
        the population.

    Returns
    -------
    ids : list of int
        Sampled ids, ascending.
    population : dict of str to int
        Tracks per label in the population.
    missing : int
        Tracks left out because ``exists`` returned False.

    Raises
    ------
    LabelError
        When ``n`` is not between 1 and the population size.
    """
    by_label: dict[str, list[int]] = {}
    missing = 0
    for tid in sorted(labels):
        if exists is not None and not exists(tid):
            missing += 1
            continue
        by_label.setdefault(labels[tid], []).append(tid)
    population = {label: len(ids) for label, ids in sorted(by_label.items())}
    total = sum(population.values())
    if not 1 <= n <= total:
        raise LabelError(
            f"cannot draw {n} tracks: the population has {total} labelled tracks with audio"
            + (f" ({missing} labelled tracks have no audio file)" if missing else "")
        )
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label, count in allocate(population, n).items():
        if count:
            pool = by_label[label]
            picks = rng.choice(len(pool), size=count, replace=False)
            chosen.extend(pool[int(i)] for i in picks)
    return sorted(chosen), population, missing


def sample_fma(
    tracks_csv: str | os.PathLike[str],
    audio_dir: str | os.PathLike[str],
    n: int,
    *,
    by: str = "genre_top",
    seed: int = 0,
    extension: str = ".mp3",
) -> Sample:
    """A stratified sample of an FMA-format collection (see the module docstring).

    Parameters
    ----------
    tracks_csv : path-like
        The FMA metadata file.
    audio_dir : path-like
        Folder laid out as ``000/000123.mp3``.
    n : int
        Sample size.
    by : str
        Label column of ``tracks.csv`` (see :func:`soundalike.labels.read_fma_tracks`).
    seed : int
        Seed; the same seed and files give the same sample.
    extension : str
        Audio file extension.

    Raises
    ------
    LabelError
        When the metadata cannot be read, the audio folder does not exist or ``n`` is out of range.
    """
    audio = Path(audio_dir)
    if not audio.is_dir():
        raise LabelError(f"{audio}: the audio folder does not exist")
    labels = read_fma_tracks(tracks_csv, column=by)
    ids, population, missing = stratified_sample(
        labels, n, seed=seed, exists=lambda tid: fma_audio_path(audio, tid, extension=extension).is_file()
    )
    total = sum(population.values())
    log.info("sampled %d of %d tracks (%d without audio)", len(ids), total, missing)
    return Sample(
        track_ids=ids,
        paths=[fma_audio_path(audio, tid, extension=extension).resolve() for tid in ids],
        labels={tid: labels[tid] for tid in ids},
        population=population,
        quota={label: n * count / total for label, count in population.items()},
        missing_audio=missing,
    )


def write_list(sample: Sample, out: str | os.PathLike[str], *, header: str = "") -> Path:
    """Write the sample's audio paths, one per line, for ``ingest --from-list``.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(out)
    lines = [f"# {line}" for line in header.splitlines() if line.strip()]
    lines += [str(p) for p in sample.paths]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    os.replace(tmp, path)
    return path
