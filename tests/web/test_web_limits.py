"""The analysis gate: a fixed number of analyses at once, a bounded queue, then 503 with Retry-After."""

from __future__ import annotations

import threading

import pytest

from soundalike.web.limits import AnalysisGate, BusyError


def test_an_analysis_beyond_the_slots_and_queue_is_refused_with_retry_after() -> None:
    gate = AnalysisGate(slots=1, queue=0, wait_s=5.0, retry_after_s=7)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.turn():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    with pytest.raises(BusyError) as refused, gate.turn():
        pass
    release.set()
    holder.join(10)
    assert refused.value.code == 503
    assert dict(refused.value.get_headers())["Retry-After"] == "7"
    with gate.turn():  # the slot is free again
        assert gate.admitted == 1
