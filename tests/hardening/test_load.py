"""Load: 8 clients, 400 requests mixing uploads and track-similarity calls, 2,000 tracks, 0 errors.

The load is :mod:`benchmarks.load`'s, run against a real ``soundalike serve`` process; its report
(p50/p95/p99 by kind of request) is written to ``test-artifacts/load.md``. ``make bench-load``
runs the same load and writes ``benchmarks/results/load.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.common import machine_info, render
from benchmarks.load import FULL, run

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eight_clients_four_hundred_mixed_requests_without_an_error(tmp_path_factory):
    section = run(tmp_path_factory.mktemp("load-cache"), FULL, fresh=False)

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.md").write_text(render([section], machine_info(), mode="test", seconds=section.raw["wall"]))
    outcomes = section.raw["outcomes"]
    errors = [o for o in outcomes if o["error"]]
    kinds = {o["kind"] for o in outcomes}
    assert len(outcomes) == FULL.requests == 400
    assert kinds == {"upload", "similar"}
    assert section.raw["library"]["tracks"] == FULL.tracks == 2000
    assert not errors, f"{len(errors)} of {len(outcomes)} requests failed, e.g. {errors[:3]}"
    assert all(t.met for t in section.targets)
