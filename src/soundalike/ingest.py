"""Ingest: find audio files, analyse the new and changed ones in parallel, write them to the catalog.

The per-file worker :func:`analyse_file` is a top-level, picklable function that never raises for a
bad file: it returns a :class:`~soundalike.catalog.TrackRecord` that is either analysed or failed with
a reason. Only the driver (:func:`ingest`) writes to the catalog, in batches, each in one transaction,
so an ingest killed at any moment loses at most the batch in flight and never leaves a half-written
track; the next run skips what was written and finishes the rest.

Work runs on a :class:`Runner`: local processes by default (:class:`ProcessRunner`), or a Dask cluster
(:mod:`soundalike.distributed`). The importer knows nothing of the terminal: progress goes to a
callback.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import io
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from soundalike.catalog import (
    FAILED,
    OK,
    Catalog,
    FileState,
    TrackRecord,
    add_music_roots,
    display_path,
)
from soundalike.errors import AudioError, IngestPathError
from soundalike.threads import one_math_thread
from soundalike.vocabulary import Progress

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {
        ".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav", ".wave", ".m4a", ".m4b", ".mp4", ".aac",
        ".aif", ".aiff", ".aifc", ".wma", ".wv", ".ape", ".mka", ".webm", ".mpc", ".alac", ".caf",
        ".au", ".snd", ".spx", ".tta", ".dsf", ".mp2",
    }
)  # fmt: skip
"""Extensions picked up when walking a folder; a file named explicitly is tried whatever its name."""

HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class AnalysisOptions:
    """What the worker needs to know; small and picklable."""

    max_duration: float = 1800.0
    min_duration: float = 1.0
    style: bool = True
    """Compute the learned style family (``--no-style``: the fastest analysis, zeros in its place)."""


@dataclass(frozen=True)
class Candidate:
    """A file found by the walk, with what ``stat`` said of it (or why it could not be read)."""

    path: str
    size: int
    mtime: float
    error: str | None = None


@dataclass
class IngestSummary:
    """What an ingest did."""

    found: int = 0
    analysed: int = 0
    unchanged: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    pruned: int = 0
    seconds: float = 0.0
    audio_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Files analysed per second."""
        return self.analysed / self.seconds if self.seconds > 0 else 0.0


"""``progress(event, done, total)``: event is ``"start"``, ``"file"`` or ``"done"``."""


def content_hash(source: str | os.PathLike[str] | bytes) -> str:
    """BLAKE2b-128 of a file's bytes (given its path, or the bytes): the key for 'the same recording'."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(source, bytes | bytearray | memoryview):
        digest.update(source)
        return digest.hexdigest()
    with open(source, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def failed_record(candidate: Candidate, reason: str, message: str, digest: str = "") -> TrackRecord:
    """The catalog record of a file that could not be analysed, with its reason."""
    from soundalike.features import FEATURE_VERSION

    return TrackRecord(
        path=candidate.path,
        content_hash=digest,
        size=candidate.size,
        mtime=candidate.mtime,
        status=FAILED,
        error=message,
        error_reason=reason,
        feature_version=FEATURE_VERSION,
    )


def analyse_file(candidate: Candidate, options: AnalysisOptions, data: bytes | None = None) -> TrackRecord:
    """Hash, decode and analyse one file; never raises for a bad file.

    Parameters
    ----------
    candidate : Candidate
    options : AnalysisOptions
    data : bytes, optional
        The file's content, when the caller read it (a Dask client with ``--ship-bytes`` sends the
        bytes to workers that cannot see the file). Hash, audio and tags then come from these bytes
        and the result is the same as reading ``candidate.path``.

    Returns
    -------
    TrackRecord
        ``status == "ok"`` with vectors, or ``status == "failed"`` with ``error`` and ``error_reason``.
    """
    from soundalike.audio import decode, read_tags
    from soundalike.features import FEATURE_VERSION, extract

    path = candidate.path
    source: str | bytes = path if data is None else data

    def failed(reason: str, message: str, digest: str = "") -> TrackRecord:
        return failed_record(candidate, reason, message, digest)

    if candidate.error:
        return failed("unreadable", candidate.error)
    try:
        digest = content_hash(source)
    except OSError as exc:
        return failed("unreadable", f"cannot read: {exc.strerror or exc}")
    try:
        audio = decode(source, max_duration=options.max_duration, min_duration=options.min_duration, name=path)
        analysis = extract(audio.samples, sample_rate=audio.sample_rate, style=options.style)
    except AudioError as exc:
        return failed(exc.reason, exc.detail, digest)
    except MemoryError:
        return failed("too-large", "ran out of memory while analysing", digest)
    except Exception as exc:  # one odd file must not stop a batch of thousands
        log.exception("%s: unexpected failure", path)
        return failed("internal", f"analysis failed unexpectedly: {type(exc).__name__}: {exc}", digest)
    return TrackRecord(
        path=path,
        content_hash=digest,
        size=candidate.size,
        mtime=candidate.mtime,
        status=OK,
        duration=analysis.duration,
        tags=read_tags(path) if data is None else read_tags(_named_buffer(data, path)),
        feature_version=FEATURE_VERSION,
        vector=analysis.vector,
        segments=analysis.segments,
        segment_starts=analysis.segment_starts,
    )


def _named_buffer(data: bytes, path: str) -> io.BytesIO:
    """The bytes as a file object named like the file, so mutagen guesses its format the same way."""
    buffer = io.BytesIO(data)
    buffer.name = path
    return buffer


# -- finding files ---------------------------------------------------------------------------


def _stat(path: str) -> Candidate:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Candidate(path, 0, 0.0, error="file not found (or a broken link)")
    except OSError as exc:
        return Candidate(path, 0, 0.0, error=f"cannot stat: {exc.strerror or exc}")
    return Candidate(path, st.st_size, st.st_mtime)


def walk(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Candidate]:
    """Audio files under ``paths`` (files named directly are always included), absolute, sorted.

    Hidden files and folders (names starting with a dot) are skipped; folder links are not followed
    (no loops), file links are.
    """
    for root in paths:
        root_s = os.path.abspath(os.fspath(root))
        if not os.path.isdir(root_s):
            yield _stat(root_s)
            continue
        for folder, dirs, files in os.walk(root_s):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in AUDIO_EXTENSIONS:
                    continue
                yield _stat(os.path.join(folder, name))


def read_list(list_file: str | os.PathLike[str]) -> list[str]:
    """Paths from a text file, one per line (blank lines and ``#`` comments ignored)."""
    base = Path(list_file).resolve().parent
    out = []
    for line in Path(list_file).read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(str(base / line) if not os.path.isabs(line) else line)
    return out


# -- running work ----------------------------------------------------------------------------


class Runner(Protocol):
    """Runs :func:`analyse_file` on many candidates and yields records as they finish."""

    def run(self, candidates: Sequence[Candidate], options: AnalysisOptions) -> Iterator[TrackRecord]: ...


class SerialRunner:
    """Everything in this process (for one worker, tests and debugging)."""

    def run(self, candidates: Sequence[Candidate], options: AnalysisOptions) -> Iterator[TrackRecord]:
        for c in candidates:
            yield analyse_file(c, options)


def exit_with_parent(*, every_s: float = 0.25) -> None:
    """Make this worker process exit (within ``every_s``) once the process that started it is gone.

    A driver killed with SIGKILL runs no clean-up, and a spawned worker would otherwise go on for
    minutes holding hundreds of MB. A daemon thread notices its parent change (it is adopted by init
    or a subreaper) and ends the process at once; the same thread serves local pools and the
    workers of a local Dask cluster, whose parent is the driver too.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="soundalike-exit-with-parent", daemon=True).start()


def kill_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``).

    Immediate even while the main thread holds the GIL in compiled code, where the watch thread of
    :func:`exit_with_parent` has to wait for it; that thread still covers other systems and a
    parent that died before this call.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.debug("PR_SET_PDEATHSIG is not available; relying on the parent watch")


def die_with_parent() -> None:
    """End this worker process as soon as its driver dies: the kernel's signal, and the watch thread."""
    kill_with_parent()
    exit_with_parent(every_s=0.1)


def worker_initializer() -> None:
    """Initializer of a local worker process: one BLAS thread, and exit when the driver dies."""
    one_math_thread()
    die_with_parent()


def require_paths(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Raise :class:`IngestPathError` naming the first of ``paths`` that does not exist (a usage error).

    For the paths a user names; files listed with ``--from-list`` that have gone are failures instead.
    """
    missing = [os.path.abspath(os.fspath(p)) for p in paths if not os.path.lexists(p)]
    if missing:
        raise IngestPathError(f"no such file or folder: {display_path(missing[0])}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


class ProcessRunner:
    """Local worker processes, at most ``4 × workers`` files in flight, one BLAS thread each.

    A file that crashes its worker process (a decoder bug, say) breaks the pool; the files that were
    in flight are then retried one at a time in fresh processes, and the one that crashes again is
    recorded as failed instead of stopping the run.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    def _pool(self, workers: int) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_initializer
        )

    def run(self, candidates: Sequence[Candidate], options: AnalysisOptions) -> Iterator[TrackRecord]:
        queue = list(reversed(candidates))
        suspects: list[Candidate] = []
        pool = self._pool(self.workers)
        in_flight: dict[cf.Future[TrackRecord], Candidate] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < 4 * self.workers:
                    c = queue.pop()
                    in_flight[pool.submit(analyse_file, c, options)] = c
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                broken = False
                for fut in done:
                    c = in_flight.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        suspects.append(c)
                        broken = True
                if broken:
                    suspects.extend(in_flight.values())
                    in_flight.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    log.warning("a worker process died; retrying %d files one at a time", len(suspects))
                    yield from self._isolate(suspects, options)
                    suspects = []
                    pool = self._pool(self.workers)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _isolate(self, suspects: list[Candidate], options: AnalysisOptions) -> Iterator[TrackRecord]:
        for c in suspects:
            with self._pool(1) as solo:
                try:
                    yield solo.submit(analyse_file, c, options).result()
                except BrokenProcessPool:
                    yield failed_record(c, "crash", "the analyser process crashed on this file (twice)")


# -- the driver ------------------------------------------------------------------------------


def _unchanged(state: FileState | None, c: Candidate, feature_version: int, retry_failed: bool) -> bool:
    if state is None:
        return False
    if c.error:  # still unreadable (a broken link, say): already recorded as failed
        return state.status == FAILED and not retry_failed
    same_file = state.size == c.size and abs(state.mtime - c.mtime) < 1e-3
    if not same_file:
        return False
    if state.status == OK:
        return state.feature_version == feature_version
    return not retry_failed


def ingest(
    paths: Iterable[str | os.PathLike[str]],
    catalog: Catalog,
    *,
    runner: Runner | None = None,
    options: AnalysisOptions | None = None,
    batch_size: int = 32,
    prune: bool = False,
    retry_failed: bool = False,
    again: Iterable[str] = (),
    progress: Progress | None = None,
) -> IngestSummary:
    """Bring the catalog up to date with the audio files under ``paths``.

    Parameters
    ----------
    paths : iterable of path-like
        Folders (walked for audio files) and files.
    catalog : Catalog
    runner : Runner, optional
        Where analysis runs; default :class:`SerialRunner`.
    options : AnalysisOptions, optional
    batch_size : int
        Records written per transaction.
    prune : bool
        Drop catalog entries under ``paths`` whose files no longer exist.
    retry_failed : bool
        Analyse again files that failed before even if they did not change.
    again : iterable of str
        Catalog paths to analyse again although they did not change, wherever they are (``ingest
        --style``: the tracks analysed without the learned family). Each keeps its track id; one
        whose file is gone, or whose new analysis fails, keeps its old analysis (the failure is
        reported in the summary), so an interrupted run is finished by running it again.
    progress : callable, optional
        ``progress(event, done, total)``.

    Returns
    -------
    IngestSummary
    """
    from soundalike.features import FEATURE_VERSION

    started = time.perf_counter()
    options = options or AnalysisOptions()
    runner = runner or SerialRunner()
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    summary = IngestSummary()
    states = catalog.file_states()
    seen: set[str] = set()
    todo: list[Candidate] = []
    redo = {p: None for p in again if p in states}  # ordered
    candidates = list(walk(roots))
    if not candidates and not prune and not redo:
        raise IngestPathError("no audio files under " + ", ".join(display_path(r) for r in roots))
    add_music_roots(catalog, roots)  # what the web shows paths relative to
    for c in [*candidates, *(_stat(p) for p in redo)]:
        if c.path in seen:
            continue
        if c.path in redo and c.error:  # gone: its analysis without the learned family stays
            log.warning("%s: not analysed again: %s", c.path, c.error)
            summary.failed.append((c.path, f"not analysed again: {c.error}"))
            continue
        seen.add(c.path)
        summary.found += 1
        if c.path not in redo and _unchanged(states.get(c.path), c, FEATURE_VERSION, retry_failed):
            summary.unchanged += 1
        else:
            todo.append(c)
    keep_ids = {p: t.id for p in redo if (t := catalog.get_by_path(p)) is not None}

    if prune:
        gone = [p for p in states if p not in seen and _under(p, roots) and not os.path.exists(p)]
        summary.pruned = catalog.remove(gone)

    # A file whose content is already analysed (moved, renamed or copied) reuses those features.
    pending: list[TrackRecord] = []
    to_analyse: list[Candidate] = []
    if states:
        for c in todo:
            cached = None if c.path in redo else _cached(catalog, c, FEATURE_VERSION, style=options.style)
            if cached is not None:
                pending.append(cached)
                summary.reused += 1
            else:
                to_analyse.append(c)
    else:
        to_analyse = todo

    total = len(todo)
    done = len(pending)
    if progress:
        progress("start", done, total)
    last_write = time.monotonic()

    def flush() -> None:
        nonlocal last_write
        catalog.write(pending)
        pending.clear()
        last_write = time.monotonic()

    for record in runner.run(to_analyse, options):
        done += 1
        if record.path in keep_ids:
            if record.status != OK:  # keep the analysis it has rather than lose the track
                summary.failed.append((record.path, f"not analysed again: {record.error or 'failed'}"))
                log.info("%s: not analysed again: %s", record.path, record.error)
                if progress:
                    progress("file", done, total)
                continue
            record = dataclasses.replace(record, track_id=keep_ids[record.path])
        pending.append(record)
        if record.status == OK:
            summary.analysed += 1
            summary.audio_seconds += record.duration or 0.0
        else:
            summary.failed.append((record.path, record.error or "failed"))
            log.info("%s: %s", record.path, record.error)
        if len(pending) >= batch_size or time.monotonic() - last_write > 5.0:
            flush()
        if progress:
            progress("file", done, total)
    flush()
    summary.seconds = time.perf_counter() - started
    if progress:
        progress("done", done, total)
    return summary


def _tags(path: str) -> dict[str, str]:
    from soundalike.audio import read_tags

    return read_tags(path)


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _cached(catalog: Catalog, c: Candidate, feature_version: int, *, style: bool = True) -> TrackRecord | None:
    if c.error:
        return None
    try:
        digest = content_hash(c.path)
    except OSError:
        return None
    found = catalog.find_analysis(digest, feature_version)
    if found is None or found.vector is None:
        return None
    if style and not _has_style(found.vector):  # analysed with --no-style: not what is asked now
        return None
    return TrackRecord(
        path=c.path,
        content_hash=digest,
        size=c.size,
        mtime=c.mtime,
        status=OK,
        duration=found.duration,
        tags=_tags(c.path),
        feature_version=feature_version,
        vector=found.vector,
        segments=found.segments,
        segment_starts=found.segment_starts,
    )


def _has_style(vector: np.ndarray) -> bool:
    """Whether a raw track vector holds the learned family (``--no-style`` leaves it zeros)."""
    from soundalike.features import track_layout

    return bool(np.any(np.asarray(vector)[track_layout().slices["style"]]))
