"""What ``manifest.json`` says about a published index: one typed record, read and written in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soundalike.errors import IndexMismatchError

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says about a published index (one typed record, read in one place).

    Attributes
    ----------
    backend, segment_backend : str
        Backends of the track and segment indexes.
    dim, segment_dim : int
        Dimensions of track and segment vectors.
    feature_version : int
    count, segment_count : int
        Rows of the track and segment indexes.
    catalog_revision : int
        The catalog revision the index was built from (a different one means it is out of date).
    catalog : str
        Where that catalog lives.
    params, segment_params : dict
        The backends' parameters, as built.
    weights : dict of str to float
        Family weights of the ``all`` similarity.
    built_at : float
        Unix time of the build.
    build_seconds : dict of str to float
        ``tracks``, ``segments`` and ``total`` build times.
    storage : dict of str to str
        ``tracks`` and ``segments``: ``"float32"``, ``"float16"`` or ``"int8"`` (see :mod:`soundalike.index.storage`).
    segment_stride : int
        Every ``segment_stride``-th catalog window of each track is indexed.
    """

    backend: str
    segment_backend: str
    dim: int
    segment_dim: int
    feature_version: int
    count: int
    segment_count: int
    catalog_revision: int
    catalog: str
    params: dict[str, Any]
    segment_params: dict[str, Any]
    weights: dict[str, float]
    built_at: float
    build_seconds: dict[str, float]
    metric: str = "dot"
    format: int = MANIFEST_FORMAT
    storage: dict[str, str] = dataclasses.field(default_factory=lambda: {"tracks": "float32", "segments": "float32"})
    segment_stride: int = 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: object = "manifest") -> Manifest:
        """Read a manifest's JSON object; a missing or mistyped field is an :class:`IndexMismatchError`."""
        try:
            return cls(
                backend=str(data["backend"]),
                segment_backend=str(data["segment_backend"]),
                dim=int(data["dim"]),
                segment_dim=int(data["segment_dim"]),
                feature_version=int(data["feature_version"]),
                count=int(data["count"]),
                segment_count=int(data["segment_count"]),
                catalog_revision=int(data["catalog_revision"]),
                catalog=str(data.get("catalog", "")),
                params=dict(data.get("params") or {}),
                segment_params=dict(data.get("segment_params") or {}),
                weights={str(k): float(v) for k, v in dict(data.get("weights") or {}).items()},
                built_at=float(data.get("built_at", 0.0)),
                build_seconds={str(k): float(v) for k, v in dict(data.get("build_seconds") or {}).items()},
                metric=str(data.get("metric", "dot")),
                format=int(data.get("format", 0)),
                storage={str(k): str(v) for k, v in dict(data.get("storage") or {"tracks": "float32", "segments": "float32"}).items()},
                segment_stride=int(data.get("segment_stride", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexMismatchError(f"{where}: incomplete manifest ({type(exc).__name__}: {exc})") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
