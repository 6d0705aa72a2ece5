"""Small statistics shared by the feature families."""

from __future__ import annotations

import numpy as np


def mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over time of ``x [shape=(d, t)]``."""
    return x.mean(axis=1), x.std(axis=1)


def named(prefix: str, n: int) -> list[str]:
    """``[prefix00, prefix01, …]`` dimension names."""
    return [f"{prefix}{i:02d}" for i in range(n)]


def pool_rows(x: np.ndarray, n_out: int) -> np.ndarray:
    """Average adjacent rows of ``x [shape=(d, ...)]`` into ``n_out`` rows (``d`` divisible)."""
    d = x.shape[0]
    return x.reshape(n_out, d // n_out, *x.shape[1:]).mean(axis=1)
