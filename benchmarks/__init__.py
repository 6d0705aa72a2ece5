"""Benchmarks: how fast soundalike is, against exact search, peers and the limits of the machine.

``python -m benchmarks`` (``make bench``) measures six areas and writes
``benchmarks/results/latest.md`` (machine, versions, date, every figure) and prints the same tables;
``--quick`` (``make bench-quick``) runs small sizes in under three minutes and writes
``benchmarks/results/quick.md`` instead.

=============  ==============================================================================
module         what it measures
=============  ==============================================================================
analysis       seconds per track and × real time on one core, by stage, against decode-only
               and the straightforward librosa pipeline (:mod:`benchmarks.analysis`)
ingest         tracks per second for a synthetic library with 1 and 2 worker processes
search         exact, Annoy and ScaNN at 10k, 100k and 1M vectors: build time, memory, QPS,
               latency, recall@10; and the 1M library index built the way ``bundle`` builds it
endtoend       ``POST /api/recommend`` of a 30-second MP3 on a 10k-track library over HTTP
radio          50-track radios at 10k, 100k and 1M tracks against a top-50 query and an index-free
               radio; smoothness on real music; duplicates' precision, recall and time
               (:mod:`benchmarks.radio`)
clips          a 10-s clip's query time on 10k / 100k synthetic 3-minute tracks beside its decode +
               analysis floor, and the recall@10 of the blended ranking (track and segment
               candidates re-scored) against exact window-set scoring of every track
               (:mod:`benchmarks.clips`)
load           8 clients, 400 requests mixing uploads and track-similarity calls on a 2,000-track
               library (only with ``--only load``, ``make bench-load``: writes ``results/load.md``)
=============  ==============================================================================

Every figure is an absolute number on the machine described in the results, and where the issue
asks for one, a ratio against a baseline measured in the same run. Nothing here is a timed
assertion of the test suite. This package imports nothing heavy, so ``__main__`` can limit BLAS
and OpenMP to one thread before numpy is first imported.
"""

from __future__ import annotations

from pathlib import Path

from soundalike.threads import VARIABLES  # imports only os: numpy stays unloaded

ROOT = Path(__file__).resolve().parent.parent
"""The repository."""
CACHE = Path(__file__).resolve().parent / ".cache"
"""Generated inputs (full-length tracks, synthetic libraries, vectors); safe to delete."""
RESULTS = Path(__file__).resolve().parent / "results"
THREAD_VARIABLES = VARIABLES  # the ones soundalike.threads.one_math_thread sets
"""Set to 1 before numpy is first imported, so that every figure is for one core unless it says otherwise."""

__all__ = ["CACHE", "RESULTS", "ROOT", "THREAD_VARIABLES"]
