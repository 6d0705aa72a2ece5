"""Write src/soundalike/features/reference_stats.npz: mean and variance of raw vectors over real music.

A library standardises its vectors with its own statistics pooled with these (see
``soundalike.features.normalise``), so that a library of a few tracks still gets meaningful
similarities. Run it again whenever FEATURE_VERSION changes (a test fails until you do):

    PYTHONPATH=src .venv/bin/python tools/make_reference_stats.py

It analyses, with the normal ingest, every audio file under the sources into a work library
(default /tmp/soundalike-reference-stats; a rerun analyses only what changed) and writes the mean and
population variance of every track-vector and segment-vector dimension over those tracks. The
default sources are the two development sets, all real music, every track counting once:

* ``../shared/dev-music``: 91 thirty-second clips from 4 free game soundtracks;
* ``$SOUNDALIKE_DEVCORPUS/library`` (default /tmp/soundalike-dev-corpus/library): 234 whole tracks
  from 10 free game soundtracks packaged by Debian, those 4 among them (build it first:
  ``bash ../shared/dev-corpus/build.sh``); one of them is silent and fails analysis.

The shipped file was made so on 2026-12-02 from 324 tracks (16,047 segments); ``made_from`` in it
says which folders and how many tracks each. Rerunning it over the work library it left writes a
byte-identical file.

A missing source is an error, so the file is never made silently from part of the set; name other
folders as arguments to use other music.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.features import FEATURE_VERSION, segment_layout, track_layout
from soundalike.features.normalise import REFERENCE_FILE, dimension_keys
from soundalike.ingest import ProcessRunner, ingest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "soundalike" / "features" / REFERENCE_FILE


def default_sources() -> list[Path]:
    corpus = Path(os.environ.get("SOUNDALIKE_DEVCORPUS", "/tmp/soundalike-dev-corpus"))
    return [ROOT.parent / "shared" / "dev-music", corpus / "library"]


def _moments(rows: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, dim))
    if len(x) == 0:
        raise SystemExit("no analysed tracks under the sources")
    if not np.isfinite(x).all():
        raise SystemExit("non-finite raw features; fix the analysis before making reference statistics")
    return x.mean(axis=0), x.var(axis=0), len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="*", type=Path, help="music folders (default: dev-music and the dev-corpus)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/soundalike-reference-stats"), help="work library")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sources = [s.resolve() for s in (args.sources or default_sources())]
    missing = [str(s) for s in sources if not s.is_dir()]
    if missing:
        raise SystemExit(f"missing source folders: {', '.join(missing)}")

    args.work.mkdir(parents=True, exist_ok=True)
    catalog = SQLiteCatalog(args.work / "catalog.sqlite")
    summary = ingest(sources, catalog, runner=ProcessRunner(args.workers))
    print(f"ingest: {summary.found} files, {summary.analysed} analysed, {len(summary.failed)} failed in {summary.seconds:.0f} s")

    # only tracks under the sources count, whatever else the work library holds
    by_source = {s: 0 for s in sources}
    keep: set[int] = set()
    track_rows: list[np.ndarray] = []
    for ids, vectors in catalog.iter_vectors(FEATURE_VERSION):
        for track_id, vector in zip(ids, vectors, strict=True):
            track = catalog.get(int(track_id))
            source = next((s for s in sources if track is not None and Path(track.path).is_relative_to(s)), None)
            if source is not None:
                by_source[source] += 1
                keep.add(int(track_id))
                track_rows.append(vector[None, :])
    segments = [s for batch in catalog.iter_segments(FEATURE_VERSION) for s in batch if s.track_id in keep and len(s.starts)]
    segment_rows = [s.vectors for s in segments]
    catalog.close()

    tl, sl = track_layout(), segment_layout()
    t_mean, t_var, t_n = _moments(track_rows, tl.dim)
    s_mean, s_var, s_n = _moments(segment_rows, sl.dim)
    made_from = "; ".join(f"{path}: {n} tracks" for path, n in by_source.items())
    np.savez_compressed(
        args.out,
        feature_version=np.int64(FEATURE_VERSION),
        made_from=np.str_(made_from),
        track_keys=np.array(dimension_keys(tl)),
        track_mean=t_mean,
        track_var=t_var,
        track_rows=np.int64(t_n),
        track_tracks=np.int64(t_n),
        segment_keys=np.array(dimension_keys(sl)),
        segment_mean=s_mean,
        segment_var=s_var,
        segment_rows=np.int64(s_n),
        segment_tracks=np.int64(len(segments)),
    )
    print(f"wrote {args.out}: feature version {FEATURE_VERSION}, {t_n} tracks, {s_n} segments ({made_from})")


if __name__ == "__main__":
    main()
