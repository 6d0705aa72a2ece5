"""The one place where raw feature vectors become searchable unit vectors.

Raw vectors are standardised with the library's mean and standard deviation, then each family's block
is scaled to unit length and weighted, and the whole vector has length one. Consequences that the
rest of soundalike relies on:

* every index (exact, Annoy, ScaNN) scores the same vectors, so scores are comparable;
* the dot product of two vectors is the weighted mean of the per-family cosines, which is what
  ``similarity`` and ``aspects`` report;
* a query for one aspect is the same vector with the other families zeroed, scored on the same index.

A family with many dimensions (a 104-bin rhythm pattern) therefore weighs no more than one with few.

A learned family (``style``) is not standardised: its block is the model's embedding as it is, scaled
to unit length, so its aspect is the plain cosine of two embeddings (on the development sets that
fused better than the standardised one: dev-corpus P@10 0.433 against 0.420-0.426).

A small library's own statistics say little: over two tracks every standardised dimension is +1 or
-1 and every cosine is -1. So the library's mean and variance are pooled with *reference statistics*
(:class:`Reference`, package data made by ``tools/make_reference_stats.py`` from a broad set of
music), worth :data:`PRIOR_TRACKS` tracks: ``mean = (n·m_lib + n0·m_ref) / (n + n0)`` and the
variance of the pooled mixture likewise. At three tracks the reference dominates; at thousands it is
negligible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from soundalike.features import FEATURE_VERSION, Layout, segment_layout, track_layout
from soundalike.vocabulary import LEARNED_FAMILIES

log = logging.getLogger(__name__)

STD_FLOOR = 1e-6

PRIOR_TRACKS = 20.0
"""Weight of the reference statistics, in tracks (for segments: this many tracks' worth of segments)."""

REFERENCE_FILE = "reference_stats.npz"
"""Package data: mean and variance of raw track and segment vectors over a broad set of music."""

KINDS = ("track", "segment")


@dataclass(frozen=True)
class Reference:
    """Per-dimension statistics of raw vectors over a reference set of music: the prior of :meth:`Normaliser.fit`.

    Attributes
    ----------
    keys : tuple of str
        ``"family/name"`` of each dimension (see :func:`dimension_keys`); a layout's dimension missing
        here gets no prior.
    mean, var : np.ndarray [shape=(len(keys),), dtype=float64]
    pseudo_count : float
        Weight of the prior in rows of the vectors it describes.
    """

    keys: tuple[str, ...]
    mean: np.ndarray
    var: np.ndarray
    pseudo_count: float

    def aligned(self, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(known, mean, var)`` over ``layout``'s dimensions; ``known`` marks those the reference has."""
        where = {k: i for i, k in enumerate(self.keys)}
        idx = np.array([where.get(k, -1) for k in dimension_keys(layout)], dtype=np.int64)
        known = idx >= 0
        mean = np.zeros(layout.dim)
        var = np.ones(layout.dim)
        mean[known] = self.mean[idx[known]]
        var[known] = self.var[idx[known]]
        return known, mean, var


def dimension_keys(layout: Layout) -> list[str]:
    """``"family/name"`` for every dimension of ``layout``, in order."""
    keys = [""] * layout.dim
    for family, sl in layout.slices.items():
        for i in range(sl.start, sl.stop):
            keys[i] = f"{family}/{layout.names[i]}"
    return keys


def _layout(kind: str) -> Layout:
    if kind not in KINDS:
        raise ValueError(f"unknown vector kind {kind!r}; expected one of {', '.join(KINDS)}")
    return track_layout() if kind == "track" else segment_layout()


def read_reference(kind: str, *, path: str | Path | None = None, prior_tracks: float = PRIOR_TRACKS) -> Reference:
    """Read the reference statistics of ``kind`` (``"track"`` or ``"segment"``) and check them.

    Parameters
    ----------
    kind : str
    path : str or Path, optional
        The ``.npz`` file (default: the one shipped in the package).
    prior_tracks : float
        Weight of the prior in tracks.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file was made for another feature version, or lacks ``kind``; the message names both sides.
    """
    from importlib.resources import files

    source = files("soundalike.features").joinpath(REFERENCE_FILE) if path is None else Path(path)
    with source.open("rb") as f, np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    found = int(arrays["feature_version"]) if "feature_version" in arrays else None
    if found != FEATURE_VERSION:
        raise ValueError(
            f"{REFERENCE_FILE}: feature version mismatch: expected {FEATURE_VERSION}, found {found}; "
            "run tools/make_reference_stats.py"
        )
    if f"{kind}_keys" not in arrays:
        raise ValueError(f"{REFERENCE_FILE}: no {kind} statistics; run tools/make_reference_stats.py")
    rows_per_track = float(arrays[f"{kind}_rows"]) / max(float(arrays[f"{kind}_tracks"]), 1.0)
    return Reference(
        keys=tuple(str(k) for k in arrays[f"{kind}_keys"]),
        mean=np.asarray(arrays[f"{kind}_mean"], dtype=np.float64),
        var=np.asarray(arrays[f"{kind}_var"], dtype=np.float64),
        pseudo_count=prior_tracks * rows_per_track,
    )


@lru_cache(maxsize=2)
def reference(kind: str) -> Reference | None:
    """The shipped reference statistics of ``kind``, or None (logged) when missing or out of date.

    Without them a small library is standardised on its own statistics alone, which degenerate
    below about twenty tracks.
    """
    try:
        ref = read_reference(kind)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("no reference statistics for %s vectors, small libraries will score poorly: %s", kind, exc)
        return None
    known, _, _ = ref.aligned(_layout(kind))
    if not known.all():
        log.warning(
            "reference statistics lack %d of %d %s dimensions (they get no prior); run tools/make_reference_stats.py",
            int((~known).sum()), len(known), kind,
        )
    return ref


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
        cls,
        chunks: Iterable[np.ndarray],
        layout: Layout,
        weights: Mapping[str, float],
        *,
        prior: Reference | Callable[[int], Reference | None] | None = None,
    ) -> Normaliser:
        """Compute mean and std from raw vectors given in chunks of shape ``(n, layout.dim)``.

        Streams: only running sums are kept, so a catalog of millions of tracks fits.

        Parameters
        ----------
        chunks : iterable of np.ndarray [shape=(n, layout.dim)]
        layout : Layout
        weights : dict of str to float
            Family weights (missing families weigh 1).
        prior : Reference or callable, optional
            Statistics pooled with the library's, weighted by ``prior.pseudo_count`` rows against the
            library's ``n`` rows, on the dimensions the reference has.
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
            var = np.ones(layout.dim)
        else:
            mean = total / count
            var = np.maximum(total_sq / count - mean**2, 0.0)
        if callable(prior):  # a prior that depends on how many rows the library turned out to have
            prior = prior(count)
        if prior is not None:
            mean, var = _pool(count, mean, var, prior, layout)
        std = np.sqrt(var)
        unknown = set(weights) - set(layout.families)
        if unknown:
            raise ValueError(f"weights for unknown families: {sorted(unknown)}")
        full = {f: float(weights.get(f, 1.0)) for f in layout.families}
        std = np.maximum(std, STD_FLOOR)
        for family in LEARNED_FAMILIES:  # a learned embedding is compared as the model made it
            if family in layout.slices:
                mean[layout.slices[family]], std[layout.slices[family]] = 0.0, 1.0
        return cls(layout=layout, mean=mean, std=std, weights=full)

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


def _pool(
    n: int, mean: np.ndarray, var: np.ndarray, prior: Reference, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the library's ``n`` rows pooled with ``prior.pseudo_count`` reference rows."""
    known, ref_mean, ref_var = prior.aligned(layout)
    n0 = prior.pseudo_count
    pooled = (n * mean + n0 * ref_mean) / (n + n0)
    # the variance of the mixture: each part's own spread plus how far its mean is from the pooled one
    pooled_var = (n * (var + (mean - pooled) ** 2) + n0 * (ref_var + (ref_mean - pooled) ** 2)) / (n + n0)
    return np.where(known, pooled, mean), np.where(known, pooled_var, var)
