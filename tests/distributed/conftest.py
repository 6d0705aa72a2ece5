"""A real Dask LocalCluster (two worker processes, one thread each, on loopback) shared by the module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundalike.distributed import DaskRunner

WORKER_MEMORY = "800MB"
"""Per worker: the synthetic tracks need about 320 MB; the 25-minute file of the crash test needs 1.6 GB."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskRunner]:
    """``--dask local:2``, with a file given up after it killed two workers (one retry)."""
    with DaskRunner("local:2", allowed_failures=1, memory_limit=WORKER_MEMORY) as runner:
        runner.client  # noqa: B018 - start the cluster now, not inside the first test's timing
        yield runner


def copy_tracks(synth_library, folder: Path, n: int, *, start: int = 0) -> Path:
    """``n`` tracks of the session's synthetic library copied into ``folder``, tagged where the format allows."""
    import mutagen

    folder.mkdir(parents=True, exist_ok=True)
    for p, spec in synth_library.tracks[start : start + n]:
        copy = folder / p.name
        shutil.copy(p, copy)
        meta = mutagen.File(copy, easy=True)
        if meta is None or copy.suffix == ".wav":
            continue
        if meta.tags is None:
            meta.add_tags()
        meta["title"] = f"{spec.instrument} {spec.groove} in {spec.key}"
        meta["artist"] = "The Dask Tests"
        meta.save()
    return folder
