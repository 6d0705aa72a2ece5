"""How much analysis the server does at once: a fixed number of uploads, a short queue, then 503.

One upload is the one request whose cost depends on what the client sends: decoding and analysing
its audio takes seconds of a core and hundreds of MB. Three bounds keep a few of them from taking
the server down (issue 11):

* only the first ``upload_analysed_s`` seconds (default 600) are decoded and analysed; decoding
  stops reading there, and the answer says ``"truncated_to_s"`` when it applies;
* at most ``analyses`` uploads (default: the number of cores) are analysed at once, and at most
  ``analysis_queue`` more (default 8) wait, each for at most ``wait_s`` seconds, for a turn;
* any other upload is answered at once ``503 Service Unavailable`` with ``Retry-After``.

The server (:func:`soundalike.web.server.create_server`) gives the app as many request threads
*on top of* the ones asked for as the gate can hold, so analyses and their queue never take the
threads that health, listings, track pages and similar-by-track are answered on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from werkzeug.exceptions import ServiceUnavailable

log = logging.getLogger(__name__)

__all__ = ["AnalysisGate", "BusyError"]


class BusyError(ServiceUnavailable):
    """503: every analysis slot and queue place is taken (``Retry-After`` says when to try again)."""


class AnalysisGate:
    """At most ``slots`` analyses at once, at most ``queue`` more waiting for one.

    Parameters
    ----------
    slots : int
        Analyses at once (at least 1).
    queue : int
        Analyses that may wait for a slot (0: none wait).
    wait_s : float
        Longest a queued analysis waits before it is answered 503.
    retry_after_s : int
        What the 503's ``Retry-After`` header says.
    """

    def __init__(self, *, slots: int, queue: int, wait_s: float = 10.0, retry_after_s: int = 5) -> None:
        if slots < 1 or queue < 0 or wait_s < 0:
            raise ValueError(f"analysis gate: need slots >= 1, queue >= 0, wait_s >= 0; got {slots}, {queue}, {wait_s}")
        self.slots, self.queue, self.wait_s, self.retry_after_s = slots, queue, wait_s, retry_after_s
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._admitted = 0  # running plus waiting

    @property
    def capacity(self) -> int:
        """Requests the gate can hold at once (running and waiting): the threads it may occupy."""
        return self.slots + self.queue

    @property
    def admitted(self) -> int:
        with self._lock:
            return self._admitted

    def _busy(self, why: str) -> BusyError:
        log.warning("upload refused with 503: %s", why)
        return BusyError(
            f"the server is analysing as many uploads as it can ({self.slots} at once, {self.queue} waiting); "
            f"try again in {self.retry_after_s} s",
            retry_after=self.retry_after_s,
        )

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold one analysis slot for the block.

        Raises
        ------
        BusyError
            At once when the slots and the queue are full, or after ``wait_s`` without a slot.
        """
        with self._lock:
            if self._admitted >= self.capacity:
                raise self._busy(f"{self._admitted} uploads running or waiting")
            self._admitted += 1
        try:
            if not self._free.acquire(timeout=self.wait_s):
                raise self._busy(f"no analysis slot within {self.wait_s:g} s")
            try:
                yield
            finally:
                self._free.release()
        finally:
            with self._lock:
                self._admitted -= 1
