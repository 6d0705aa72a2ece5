"""How many threads the numeric libraries (BLAS, OpenMP) may start in a soundalike process.

Their default is a thread per core for every call, which only pays off for large matrix products.
soundalike's work is many small ones, and its parallelism is its own: one ingest worker process per
core, one server thread per request, the style model's own intra-op threads. Pools of a thread per
core on top of that contend for the same cores (OpenBLAS's threads keep spinning for a while after a
call).
"""

from __future__ import annotations

import os

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Read by each numeric library when it loads."""


def one_math_thread() -> None:
    """Limit BLAS and OpenMP in this process to one thread: the libraries already loaded, and
    (through :data:`VARIABLES`) those loaded later.

    Used by each ingest worker process (2 workers on 2 cores analysed 8.8 files/s with the default
    pools, 14.2 with this) and by the processes that answer queries (``serve``, ``query``,
    ``similar``, ``radio``): a 10-s WAV clip uploaded to ``serve`` on the 233-track development
    corpus took 104-117 ms p50 over HTTP with the default pools and 80-85 ms with this; on a million
    tracks its analysis took 78 ms (155 ms of CPU) against 54 ms (71 ms of CPU), interleaved in one
    process (2 cores, 2026-12-03).
    """
    from threadpoolctl import threadpool_limits

    for name in VARIABLES:
        os.environ[name] = "1"
    threadpool_limits(1)


__all__ = ["VARIABLES", "one_math_thread"]
