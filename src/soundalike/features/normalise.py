"""The one place where raw feature vectors become searchable unit vectors.

Raw vectors are standardised with the library's mean and standard deviation, then each family's block
is scaled to unit length and weighted, and the whole vector has length one. Consequences that the
rest of soundalike relies on:

* every index (exact, Annoy, ScaNN) scores the same vectors, so scores are comparable;
* the dot product of two vectors is the weighted mean of the per-family cosines, which is what
  ``similarity`` and ``aspects`` report;
* a query for one aspect is the same vector with the other families zeroed, scored on the same index.

A family with many dimensions (a 104-bin rhythm pattern) therefore weighs no more than one with few.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from soundalike.features import Layout

STD_FLOOR = 1e-6


@dataclass(frozen=True)
class Normaliser:
    """Standardisation statistics and family weights for one kind of vector (track or segment).

    Attributes
    ----------
    layout : Layout
    mean, std : np.ndarray [shape=(layout.dim,), dtype=float64]
    weights : dict of str to float
        Relative weight of each family in the ``all`` similarity; they need not sum to one.
    """

    layout: Layout
    mean: np.ndarray
    std: np.ndarray
    weights: Mapping[str, float]

    @classmethod
    def fit(
        cls, chunks: Iterable[np.ndarray], layout: Layout, weights: Mapping[str, float]
    ) -> Normaliser:
        """Compute mean and std from raw vectors given in chunks of shape ``(n, layout.dim)``.

        Streams: only running sums are kept, so a catalog of millions of tracks fits.
        """
        count = 0
        total = np.zeros(layout.dim)
        total_sq = np.zeros(layout.dim)
        for chunk in chunks:
            c = np.asarray(chunk, dtype=np.float64).reshape(-1, layout.dim)
            count += len(c)
            total += c.sum(axis=0)
            total_sq += np.square(c).sum(axis=0)
        if count == 0:
            mean = np.zeros(layout.dim)
            std = np.ones(layout.dim)
        else:
            mean = total / count
            std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        unknown = set(weights) - set(layout.families)
        if unknown:
            raise ValueError(f"weights for unknown families: {sorted(unknown)}")
        full = {f: float(weights.get(f, 1.0)) for f in layout.families}
        return cls(layout=layout, mean=mean, std=np.maximum(std, STD_FLOOR), weights=full)

    def family_scales(self, aspect: str = "all") -> dict[str, float]:
        """Length of each family's block in a normalised vector (zero outside ``aspect``)."""
        if aspect == "all":
            active = {f: w for f, w in self.weights.items() if w > 0}
        elif aspect in self.layout.families:
            active = {aspect: 1.0}
        else:
            raise ValueError(f"unknown aspect {aspect!r}; expected all or one of {', '.join(self.layout.families)}")
        total = sum(active.values())
        return {f: float(np.sqrt(active.get(f, 0.0) / total)) for f in self.layout.families}

    def transform(self, raw: np.ndarray, aspect: str = "all") -> np.ndarray:
        """Standardise, unit-scale each family, weight, and (for ``aspect``) zero other families.

        Parameters
        ----------
        raw : np.ndarray [shape=(n, dim) or (dim,)]
        aspect : str
            ``"all"`` or one family name.

        Returns
        -------
        np.ndarray [same shape as raw, dtype=float32]
            Rows of unit length (a row whose active families all equal the library mean is zero).
        """
        x = (np.asarray(raw, dtype=np.float64) - self.mean) / self.std
        single = x.ndim == 1
        x = np.atleast_2d(x)
        out = np.zeros_like(x)
        for family, scale in self.family_scales(aspect).items():
            if scale == 0.0:
                continue
            sl = self.layout.slices[family]
            block = x[:, sl]
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            out[:, sl] = np.where(norms > 0, block / np.maximum(norms, 1e-12), 0.0) * scale
        out32 = out.astype(np.float32)
        return out32[0] if single else out32

    def aspect_similarities(self, query: np.ndarray, candidates: np.ndarray) -> dict[str, np.ndarray]:
        """Per-family cosine between one normalised query and normalised candidates.

        Parameters
        ----------
        query : np.ndarray [shape=(dim,)]
            A vector from :meth:`transform` with ``aspect="all"``.
        candidates : np.ndarray [shape=(n, dim)]

        Returns
        -------
        dict of str to np.ndarray [shape=(n,)]
            Cosines in [-1, 1] for every family with a non-zero weight.
        """
        scales = self.family_scales("all")
        out: dict[str, np.ndarray] = {}
        for family, scale in scales.items():
            if scale == 0.0:
                continue
            sl = self.layout.slices[family]
            out[family] = (candidates[:, sl] @ query[sl]) / (scale * scale)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays to save beside an index (see :meth:`from_arrays`)."""
        return {
            "mean": self.mean,
            "std": self.std,
            "weights": np.array([self.weights[f] for f in self.layout.families]),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], layout: Layout) -> Normaliser:
        weights = {f: float(w) for f, w in zip(layout.families, arrays["weights"], strict=True)}
        return cls(layout=layout, mean=np.asarray(arrays["mean"]), std=np.asarray(arrays["std"]), weights=weights)
