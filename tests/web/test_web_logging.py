"""The server's log: waitress's "Task queue depth" warning at most once a minute."""

from __future__ import annotations

import logging

import pytest
from waitress.task import ThreadedTaskDispatcher

from soundalike.web.server import QUEUE_WARNING_EVERY_S, create_server


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _queue_filter() -> logging.Filter:
    filters = [f for f in logging.getLogger("waitress.queue").filters if hasattr(f, "clock")]
    assert len(filters) == 1, filters
    return filters[0]


def _queue_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "waitress.queue"]


def test_task_queue_depth_warnings_are_logged_at_most_once_a_minute(app, caplog):
    server = create_server(app, host="127.0.0.1", port=0, threads=1)  # installs the filter
    server.close()
    clock = Clock(1e9)
    _queue_filter().use_clock(clock)  # type: ignore[attr-defined]  # earlier servers' warnings are forgotten
    dispatcher = ThreadedTaskDispatcher()  # no threads: every task added waits in the queue and warns
    with caplog.at_level(logging.WARNING, logger="waitress.queue"):
        for _ in range(300):
            dispatcher.add_task(object())
            clock.now += 0.1  # 300 tasks over 30 s
        assert _queue_lines(caplog) == ["Task queue depth is 1"]

        clock.now += QUEUE_WARNING_EVERY_S
        dispatcher.add_task(object())
    lines = _queue_lines(caplog)
    assert len(lines) == 2
    assert lines[1] == f"Task queue depth is 301 (299 more such warnings in the last {QUEUE_WARNING_EVERY_S:.0f} s not logged)"
