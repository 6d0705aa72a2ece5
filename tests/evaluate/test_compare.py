"""Bootstrap intervals of retrieval figures and the query-by-query comparison with a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soundalike import evaluate as ev
from soundalike.errors import ConfigError


def test_a_mean_interval_holds_the_mean_and_narrows_with_more_queries(rng: np.random.Generator) -> None:
    values = rng.uniform(0, 1, 400)
    few = ev.mean_interval(values[:40])
    many = ev.mean_interval(values)
    assert few is not None and many is not None and few.level == many.level == 0.95
    assert few.low < values[:40].mean() < few.high and many.low < values.mean() < many.high
    # The width of a mean's interval shrinks as 1/sqrt(n): 10x the queries, about a third of it.
    ratio = (many.high - many.low) / (few.high - few.low)
    assert 0.2 < ratio < 0.5
    # About 2 x 1.96 standard errors wide.
    assert many.high - many.low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(400), rel=0.15)
    assert ev.mean_interval(values[:1]) is None
    same = ev.mean_interval(np.full(5, 0.3))
    assert same is not None and (same.low, same.high) == (0.3, 0.3) and same.low > 0.0


def _clusters(rng: np.random.Generator, spread: float, n: int = 60) -> tuple[np.ndarray, list[str]]:
    """Unit vectors around 3 label centres; the larger ``spread``, the more labels mix."""
    centres = rng.standard_normal((3, 16))
    labels = [f"l{i % 3}" for i in range(n)]
    x = centres[np.arange(n) % 3] + spread * rng.standard_normal((n, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def _metrics(retrieval: ev.Retrieval) -> dict:
    """The ``metrics.json`` parts a comparison reads, through the JSON it is written as."""
    return json.loads(json.dumps({"schema": ev.METRICS_SCHEMA, "generated_at": "then", "k": retrieval.k, "retrieval": retrieval.to_dict()}))


def test_a_real_improvement_is_better_and_the_reverse_worse(rng: np.random.Generator) -> None:
    tight, labels = _clusters(rng, spread=0.8)
    loose = tight + 1.2 * rng.standard_normal(tight.shape).astype(np.float32)  # the same tracks, blurred
    loose /= np.linalg.norm(loose, axis=1, keepdims=True)
    keys = [f"/music/{i}.ogg" for i in range(len(labels))]
    good = ev.retrieval_quality(tight, labels, k=5, keys=keys)
    bad = ev.retrieval_quality(loose, labels, k=5, keys=keys)
    assert good.aspects["all"].map > bad.aspects["all"].map + 0.1
    up = ev.compare_retrieval(good, _metrics(bad), name="bad.json")
    assert up.verdict == "better" and up.queries == 60 and up.baseline_generated_at == "then"
    assert up.map_delta == pytest.approx(good.aspects["all"].map - bad.aspects["all"].map)
    assert up.map_interval is not None and up.map_interval.low > 0 and up.better > up.worse
    down = ev.compare_retrieval(bad, _metrics(good), name="good.json")
    assert down.verdict == "worse" and down.map_delta == pytest.approx(-up.map_delta)


def test_noise_between_equally_good_rankings_is_indistinguishable(rng: np.random.Generator) -> None:
    x, labels = _clusters(rng, spread=1.5)
    keys = [f"/music/{i}.ogg" for i in range(len(labels))]
    # Two rankings of the same quality: each vector nudged by a different small noise.
    a = x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    b = x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    ra = ev.retrieval_quality(a / np.linalg.norm(a, axis=1, keepdims=True), labels, k=5, keys=keys)
    rb = ev.retrieval_quality(b / np.linalg.norm(b, axis=1, keepdims=True), labels, k=5, keys=keys)
    c = ev.compare_retrieval(ra, _metrics(rb), name="b.json")
    assert c.verdict == "indistinguishable"
    assert c.map_interval is not None and c.map_interval.low < 0 < c.map_interval.high


def test_queries_are_matched_by_path(rng: np.random.Generator) -> None:
    x, labels = _clusters(rng, spread=0.8)
    keys = [f"/music/{i}.ogg" for i in range(len(labels))]
    full = ev.retrieval_quality(x, labels, k=5, keys=keys)
    part = ev.retrieval_quality(x[:45], labels[:45], k=5, keys=keys[:45][::-1])  # other order, fewer tracks
    c = ev.compare_retrieval(part, _metrics(full), name="full.json")
    assert (c.queries, c.only_here, c.only_there) == (45, 0, 15)


def test_comparisons_refuse_what_cannot_be_compared(rng: np.random.Generator, tmp_path: Path) -> None:
    x, labels = _clusters(rng, spread=0.8)
    keys = [str(i) for i in range(len(labels))]
    r5 = ev.retrieval_quality(x, labels, k=5, keys=keys)
    r10 = ev.retrieval_quality(x, labels, k=10, keys=keys)
    with pytest.raises(ConfigError, match="it measured P@10, this run P@5"):
        ev.compare_retrieval(r5, _metrics(r10), name="x")
    with pytest.raises(ConfigError, match="no per-query retrieval scores"):
        ev.compare_retrieval(ev.retrieval_quality(x, labels, k=5), _metrics(r5), name="x")
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(ConfigError, match="not a soundalike metrics.json"):
        ev.read_baseline(path)
    path.write_text(json.dumps(_metrics(r5)))
    assert ev.read_baseline(path)["retrieval"]["per_query"]["paths"] == keys
