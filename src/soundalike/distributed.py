"""Analyse files on a Dask distributed cluster: a :class:`~soundalike.ingest.Runner` for ``--dask``.

The workers run the same per-file function as local processes, :func:`soundalike.ingest.analyse_file`;
results come back as they finish (:class:`distributed.as_completed`) and the ingest driver writes
them in batches as usual, so the progress bar, failure handling and resume-after-kill behaviour are
those of a local ingest.

* ``DaskRunner("tcp://HOST:8786")`` connects to a running scheduler. The workers read the files
  from a path they share with this client (the same absolute paths), or, with ``ship_bytes=True``,
  the client reads each file and sends its bytes with the task.
* ``DaskRunner("local:N")`` starts a :class:`distributed.LocalCluster` of ``N`` worker processes (one
  thread each) on 127.0.0.1 and shuts it down when closed.

A worker that dies mid-task loses nothing: the scheduler hands its file to another worker. A file
that kills every worker that tries it (a decoder crash, or more memory than a worker has) is given up
by the scheduler after ``allowed-failures`` deaths with :class:`distributed.KilledWorker`; this runner
records it as failed (reason ``crash``) and the run goes on. The local cluster runs each file alone
on its worker (one thread, ``worker-saturation`` 1.0, and enough tasks in flight for the scheduler
to queue them), so only the file that was running when a worker died is suspected.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from soundalike.catalog import TrackRecord
from soundalike.errors import ClusterError
from soundalike.ingest import AnalysisOptions, Candidate, analyse_file, failed_record

log = logging.getLogger(__name__)

DEFAULT_ALLOWED_FAILURES = 3
"""Worker deaths a file may cause before it is given up (Dask's own default)."""

MAX_BYTES_IN_FLIGHT = 1 << 30
"""With ``ship_bytes``: file bytes held by the client and scheduler at once, at most (one file always fits)."""


@dataclasses.dataclass(frozen=True)
class ClusterAddress:
    """What ``--dask`` names: a local cluster of ``workers`` processes, or a scheduler address."""

    local: bool
    workers: int | None = None
    scheduler: str | None = None


def parse_address(address: str) -> ClusterAddress:
    """Read ``local``, ``local:N`` or a scheduler address (``tcp://HOST:8786``, ``tls://…``, ``HOST:PORT``).

    Raises
    ------
    ClusterError
        For ``local:N`` with N not a positive integer, or an empty address.
    """
    text = address.strip()
    if not text:
        raise ClusterError("--dask: give local, local:N or the scheduler's address (tcp://HOST:8786)")
    if text == "local":
        return ClusterAddress(local=True)
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--dask {address}: expected local:N with N a positive number of workers")
        return ClusterAddress(local=True, workers=int(count))
    return ClusterAddress(local=False, scheduler=text)


def _worker_versions() -> tuple[str, int]:
    """Run on each worker: the soundalike version and feature version it would analyse with."""
    from soundalike import __version__
    from soundalike.features import FEATURE_VERSION

    return __version__, FEATURE_VERSION


class DaskRunner:
    """Run :func:`~soundalike.ingest.analyse_file` on a Dask cluster, yielding records as they finish.

    Parameters
    ----------
    address : str
        ``"local"``, ``"local:N"`` or a scheduler address such as ``"tcp://HOST:8786"``.
    workers : int, optional
        Worker processes for plain ``"local"`` (default: the number of cores).
    ship_bytes : bool
        Read each file here and send its bytes, for workers that cannot see the files.
    max_in_flight : int, optional
        Files submitted and not yet returned, at most; default four per worker thread, so that the
        scheduler queues them and hands each worker one file at a time.
    allowed_failures : int
        For a local cluster: worker deaths a file may cause before it is recorded as failed. A remote
        scheduler uses its own ``distributed.scheduler.allowed-failures`` setting.
    memory_limit : str or int, optional
        For a local cluster: memory per worker (``"2GB"``); default Dask's share of the machine's.
        A worker that grows past 95% of it is restarted by its nanny.
    connect_timeout_s : float
        How long to wait for the scheduler, and then for a first worker.

    Notes
    -----
    The cluster is started (or connected to) on first use and released by :meth:`close`; use the
    runner as a context manager.
    """

    def __init__(
        self,
        address: str,
        *,
        workers: int | None = None,
        ship_bytes: bool = False,
        max_in_flight: int | None = None,
        allowed_failures: int = DEFAULT_ALLOWED_FAILURES,
        memory_limit: str | int | None = None,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self.address = address
        self.target = parse_address(address)
        self.workers = self.target.workers or workers
        self.ship_bytes = ship_bytes
        self.max_in_flight = max_in_flight
        self.allowed_failures = allowed_failures
        self.memory_limit = memory_limit
        self.connect_timeout_s = connect_timeout_s
        self._client: Any = None
        self._cluster: Any = None
        self._threads: tuple[float, int] = (0.0, 0)

    # -- the cluster --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The :class:`distributed.Client`, started or connected on first use."""
        if self._client is None:
            self._start()
        return self._client

    def _start(self) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ClusterError("--dask needs Dask: pip install 'soundalike[dask]'") from exc
        try:
            if self.target.local:
                n = self.workers or max(1, len(os.sched_getaffinity(0)))
                settings = {
                    "distributed.scheduler.allowed-failures": self.allowed_failures,
                    # One file per worker at a time: a dying worker then takes no innocent file down with it.
                    "distributed.scheduler.worker-saturation": 1.0,
                }
                with dask.config.set(settings):
                    self._cluster = LocalCluster(
                        n_workers=n,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                        memory_limit="auto" if self.memory_limit is None else self.memory_limit,
                    )
                self._client = Client(self._cluster, set_as_default=False)
                # Local workers are children of this process: they must not outlive a kill -9 of it.
                self._client.register_plugin(_exit_with_driver(), name="soundalike-exit-with-driver")
                log.info("started a local Dask cluster of %d worker processes at %s", n, self._cluster.scheduler_address)
            else:
                self._client = Client(self.target.scheduler, timeout=self.connect_timeout_s, set_as_default=False)
                log.info("connected to the Dask scheduler at %s", self.target.scheduler)
        except ClusterError:
            self.close()
            raise
        except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address …
            self.close()
            raise ClusterError(f"--dask {self.address}: cannot start or reach the cluster ({_reason(exc)})") from exc
        try:
            self._check_workers()
        except BaseException:
            self.close()
            raise

    def _check_workers(self) -> None:
        """Wait for a worker, and refuse workers that would analyse with different features."""
        from soundalike.features import FEATURE_VERSION

        client = self._client
        try:
            client.wait_for_workers(1, timeout=self.connect_timeout_s)
        except Exception as exc:
            raise ClusterError(
                f"--dask {self.address}: no worker joined the scheduler within {self.connect_timeout_s:.0f} s"
            ) from exc
        try:
            versions = client.run(_worker_versions)
        except Exception as exc:
            raise ClusterError(
                f"--dask {self.address}: the workers cannot run soundalike ({_reason(exc)}); "
                "install the same soundalike on every worker"
            ) from exc
        for worker, (version, feature_version) in sorted(versions.items()):
            if feature_version != FEATURE_VERSION:
                raise ClusterError(
                    f"--dask {self.address}: worker {worker} runs soundalike {version} with feature version "
                    f"{feature_version}, this client expects {FEATURE_VERSION}; install the same soundalike"
                )

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this runner started one."""
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing must not hide the error that got us here
                log.debug("closing the Dask client: %s", exc)
        if cluster is not None:
            try:
                cluster.close()
            except Exception as exc:
                log.debug("closing the local Dask cluster: %s", exc)

    def __enter__(self) -> DaskRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _limit(self) -> int:
        """Files in flight: four per worker thread (refreshed every 10 s, as workers come and go)."""
        if self.max_in_flight:
            return self.max_in_flight
        checked, threads = self._threads
        if time.monotonic() - checked > 10.0:
            threads = sum(self.client.nthreads().values())
            self._threads = (time.monotonic(), threads)
        return max(4, 4 * threads)

    # -- running ------------------------------------------------------------------------------

    def run(self, candidates: Sequence[Candidate], options: AnalysisOptions) -> Iterator[TrackRecord]:
        """Analyse ``candidates`` on the cluster; yield one record per candidate, as each finishes.

        Raises
        ------
        ClusterError
            When the cluster cannot be used, or cancels work (a scheduler restart, say). What was
            yielded so far stays valid; running the ingest again resumes.
        """
        if not candidates:
            return
        from distributed import as_completed

        client = self.client
        todo = deque(candidates)
        ready: deque[TrackRecord] = deque()  # decided here, without a worker (unreadable files)
        in_flight: dict[str, tuple[Any, Candidate, int]] = {}  # key → (future, candidate, bytes shipped)
        futures = as_completed(loop=client.loop, with_results=True, raise_errors=False)
        shipped = 0

        def fill() -> None:
            nonlocal shipped
            batch: list[Candidate] = []
            payloads: list[bytes | None] = []
            room = self._limit() - len(in_flight)
            while todo and len(batch) < room:
                c = todo[0]
                if c.error:  # already known to fail: no need for a worker
                    ready.append(analyse_file(todo.popleft(), options))
                    continue
                data = None
                if self.ship_bytes:
                    if shipped and shipped + c.size > MAX_BYTES_IN_FLIGHT:
                        break
                    todo.popleft()
                    try:
                        with open(c.path, "rb") as f:
                            data = f.read()
                    except OSError as exc:
                        failed = dataclasses.replace(c, error=f"cannot read: {exc.strerror or exc}")
                        ready.append(analyse_file(failed, options))
                        continue
                    shipped += len(data)
                else:
                    todo.popleft()
                batch.append(c)
                payloads.append(data)
            if not batch:
                return
            # One graph for the whole batch: the scheduler then sees many similar tasks and queues
            # them, handing each worker thread one file at a time.
            submitted = client.map(
                analyse_file, batch, [options] * len(batch), payloads, pure=False, retries=0
            )
            for fut, c, data in zip(submitted, batch, payloads, strict=True):
                in_flight[fut.key] = (fut, c, 0 if data is None else len(data))
            futures.update(submitted)

        try:
            fill()
            while ready or in_flight or todo:
                if ready:
                    yield ready.popleft()
                    continue
                if not in_flight:
                    fill()
                    continue
                fut, result = next(futures)
                _, c, size = in_flight.pop(fut.key)
                shipped -= size
                record = self._record(fut, result, c)
                fut.release()
                fill()  # keep the workers busy while the driver writes
                yield record
        finally:
            if in_flight and self._client is not None:
                try:
                    self._client.cancel([fut for fut, _, _ in in_flight.values()], force=True)
                except Exception as exc:
                    log.debug("cancelling unfinished Dask tasks: %s", exc)

    def _record(self, fut: Any, result: Any, c: Candidate) -> TrackRecord:
        """The worker's record, or a failed record for a file that kept killing workers."""
        from distributed import KilledWorker

        if fut.status == "finished":
            return result
        if fut.status == "error":
            exc = result[1] if isinstance(result, tuple) else result
            if isinstance(exc, KilledWorker):
                deaths = exc.allowed_failures + 1
                log.warning("%s: killed the Dask worker analysing it %d times; recorded as failed", c.path, deaths)
                return failed_record(
                    c, "crash", f"killed the worker {deaths} times (it crashed or ran out of memory on this file)"
                )
            log.warning("%s: the Dask task failed: %r", c.path, exc)
            return failed_record(c, "internal", f"analysis failed on the Dask worker: {type(exc).__name__}: {exc}")
        raise ClusterError(
            f"--dask {self.address}: the cluster dropped the analysis of {c.path} ({fut.status}); "
            "run the same command again to resume"
        )


def _exit_with_driver() -> Any:
    """A worker plugin for local clusters: each worker process exits once the driver that started it dies."""
    from distributed import WorkerPlugin

    from soundalike.ingest import die_with_parent

    class ExitWithDriver(WorkerPlugin):  # type: ignore[misc]
        def setup(self, worker: Any) -> None:
            die_with_parent()

    return ExitWithDriver()


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


__all__ = ["ClusterAddress", "ClusterError", "DaskRunner", "parse_address"]
