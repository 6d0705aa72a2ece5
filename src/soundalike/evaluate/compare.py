"""How sure a retrieval figure is, and whether a change of the library moved it.

Precision@k and mAP are means over queries, and on a development set of a hundred tracks one
query's P@10 varies by about 0.25 around that mean: two settings that differ by 0.01 may rank the
same music equally well. So ``evaluate`` gives each mean a bootstrap interval (:func:`mean_interval`:
resampling the queries, scipy's :func:`scipy.stats.bootstrap`), and with ``--baseline`` compares the
run with an earlier ``metrics.json`` *query by query* (:func:`compare_retrieval`): the same tracks,
each query's change, and a paired interval of the mean change, which is far narrower than the two
runs' own intervals because most of the spread between queries is shared by both runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from soundalike.errors import ConfigError
from soundalike.evaluate.records import METRICS_SCHEMA, Comparison, Interval, QueryScores, Retrieval

CONFIDENCE = 0.95
RESAMPLES = 2000
_BATCH_VALUES = 1 << 22
"""Most resampled values held at once (resamples × queries), so a 100k-query interval stays small."""


def mean_interval(values: np.ndarray, *, level: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> Interval | None:
    """Percentile bootstrap interval of the mean of ``values`` (queries resampled with replacement).

    Returns
    -------
    Interval or None
        None with fewer than two values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return None
    if np.all(v == v[0]):  # no spread: every resample has the same mean
        return Interval(low=float(v[0]), high=float(v[0]), level=level)
    result = scipy.stats.bootstrap(
        (v,), np.mean, confidence_level=level, n_resamples=resamples, method="percentile",
        batch=max(1, _BATCH_VALUES // len(v)), random_state=np.random.default_rng(seed),
    )  # fmt: skip
    ci = result.confidence_interval
    return Interval(low=float(ci.low), high=float(ci.high), level=level)


def read_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An earlier ``metrics.json``, checked to hold per-query retrieval scores.

    Raises
    ------
    ConfigError
        When the file is missing, not JSON, or has no per-query retrieval scores (made without
        labels, or by a soundalike from before they were written).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"baseline: {p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"baseline: {p} is not a metrics.json ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != METRICS_SCHEMA:
        raise ConfigError(f"baseline: {p} is not a soundalike metrics.json ({METRICS_SCHEMA})")
    retrieval = data.get("retrieval") or {}
    per_query = retrieval.get("per_query")
    if not per_query:
        raise ConfigError(
            f"baseline: {p} has no per-query scores (it was made without labels, or by an older soundalike): "
            "evaluate the baseline again with this version"
        )
    return data


def check_cutoff(baseline: Mapping[str, Any], k: int) -> None:
    """Refuse a baseline measured at another cut-off: its P@k is not this run's P@k.

    Raises
    ------
    ConfigError
        When the baseline's ``k`` (:func:`read_baseline`) is not ``k``.
    """
    theirs = int(baseline["retrieval"]["k"])
    if theirs != k:
        raise ConfigError(f"baseline: it measured P@{theirs}, this run P@{k}; give -k {theirs} to compare with it")


def compare_retrieval(current: Retrieval, baseline: Mapping[str, Any], *, name: str, seed: int = 0) -> Comparison:
    """This evaluation's ``all`` ranking against a baseline's, query by query.

    Parameters
    ----------
    current : Retrieval
        With ``per_query``.
    baseline : mapping
        An earlier ``metrics.json`` (:func:`read_baseline`).
    name : str
        How to name the baseline (its path).
    seed : int
        Seed of the bootstrap.

    Raises
    ------
    ConfigError
        When the cut-offs differ, or either side has no per-query scores.
    """
    if current.per_query is None:
        raise ConfigError("baseline: this evaluation has no per-query retrieval scores to compare")
    check_cutoff(baseline, current.k)
    there = baseline["retrieval"]
    mine = _by_path(current.per_query)
    theirs = _by_path(QueryScores(**{key: tuple(there["per_query"][key]) for key in ("paths", "precision_at_k", "average_precision")}))
    common = [p for p in mine if p in theirs]
    dp = np.array([mine[p][0] - theirs[p][0] for p in common], dtype=np.float64)
    da = np.array([mine[p][1] - theirs[p][1] for p in common], dtype=np.float64)
    pi = mean_interval(dp, seed=seed)
    ai = mean_interval(da, seed=seed)
    return Comparison(
        baseline=name,
        baseline_generated_at=baseline.get("generated_at"),
        queries=len(common),
        only_here=len(mine) - len(common),
        only_there=len(theirs) - len(common),
        k=current.k,
        precision_delta=float(dp.mean()) if len(dp) else float("nan"),
        map_delta=float(da.mean()) if len(da) else float("nan"),
        precision_interval=pi,
        map_interval=ai,
        better=int(np.sum(da > 0)),
        worse=int(np.sum(da < 0)),
        verdict=verdict(pi, ai),
    )


def verdict(*intervals: Interval | None) -> str:
    """``"better"``, ``"worse"``, ``"mixed"`` or ``"indistinguishable"`` from intervals of changes."""
    up = any(i is not None and i.low > 0 for i in intervals)
    down = any(i is not None and i.high < 0 for i in intervals)
    if up and down:
        return "mixed"
    return "better" if up else "worse" if down else "indistinguishable"


def _by_path(scores: QueryScores) -> dict[str, tuple[float, float]]:
    if not len(scores.paths) == len(scores.precision_at_k) == len(scores.average_precision):
        raise ConfigError("baseline: per-query scores of different lengths")
    return {
        p: (float(a), float(b)) for p, a, b in zip(scores.paths, scores.precision_at_k, scores.average_precision, strict=True)
    }
