"""Typed evaluation records: metrics.json from to_dict(), and the CLI summary from the attributes."""

from __future__ import annotations

import numpy as np
import pytest

from soundalike import evaluate as ev


def small_evaluation(recall: float) -> ev.Evaluation:
    """An evaluation of 3 unlabelled tracks without excerpts, measured by hand."""
    return ev.Evaluation(
        generated_at="2026-01-01T00:00:00+0000",
        tracks=3,
        options=ev.EvalOptions(k=2, excerpts=0),
        labels=None,
        silhouette=ev.Silhouette(score=float("nan"), k=2, chosen_by="best", by_k={2: float("nan")}),
        retrieval=None,
        clips=None,
        index=ev.IndexQuality(
            backend="annoy", params=None, k=2, queries=3, recall_at_k=recall, recall_least=0.5,
            latency_ms=ev.Latency.of(np.array([0.001, 0.003])), exact_latency_ms=ev.Latency.of(np.array([])),
        ),
    )  # fmt: skip


def test_metrics_json_writes_nan_as_null_and_k_as_a_string_key() -> None:
    m = small_evaluation(recall=float("nan")).to_dict()
    assert m["schema"] == ev.METRICS_SCHEMA and m["k"] == 2 and m["options"]["excerpts"] == 0
    assert m["silhouette"]["score"] is None and m["silhouette"]["by_k"] == {"2": None}
    assert m["index"]["recall_at_k"] is None and m["index"]["exact_latency_ms"] == {"p50": None, "p95": None, "mean": None}
    assert m["index"]["latency_ms"] == pytest.approx({"p50": 2.0, "p95": 2.9, "mean": 2.0})


def test_summary_reads_the_records_and_says_n_a_for_a_missing_figure() -> None:
    text = ev.format_summary(small_evaluation(recall=float("nan")))
    assert text.splitlines() == [
        "evaluated 3 tracks; no labels",
        "  silhouette n/a (k-means, k = 2 chosen by best)",
        "  annoy recall@2 n/a (least similar 0.500), latency p50 2.00 ms, p95 2.90 ms",
    ]
