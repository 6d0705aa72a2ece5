"""Settings: one frozen dataclass, layered defaults < TOML file < ``SOUNDALIKE_*`` environment < CLI.

The TOML file is ``--config FILE`` when given, else ``soundalike.toml`` inside the library folder if
it exists. Keys are the field names below, e.g.::

    index = "annoy"
    workers = 4
    max_duration = 3600
    [weights]
    rhythm = 2.0
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundalike.errors import ConfigError
from soundalike.vocabulary import (
    AUTO_INDEX,
    DEFAULT_WEIGHTS,
    FAMILIES,
    INDEX_CHOICES,
    LEARNED_FAMILIES,
)


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with its default."""

    library: Path = Path("soundalike-library")
    catalog: str | None = None
    """Catalog URI: a SQLite file path, or ``mongodb://HOST/DB``; default ``LIBRARY/catalog.sqlite``."""
    index: str = AUTO_INDEX
    """Index backend, or ``auto`` (ScaNN, or faiss IVF-PQ for the largest libraries). Unless a settings file or the environment names one, the backend last chosen
    on the command line is used instead (see :mod:`soundalike.library`)."""
    workers: int = field(default_factory=_default_workers)
    batch_size: int = 32
    max_duration: float = 1800.0
    min_duration: float = 1.0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    style: bool = True
    """Analyse the learned style family (musicnn). False: the fastest analysis, and style gets no weight."""
    k: int = 10
    max_upload_mb: float = 50.0
    upload_analysed_s: float = 600.0
    """Seconds of an upload that are decoded and analysed (the rest is never read; the answer says so)."""
    analyses: int = field(default_factory=_default_workers)
    """Uploads analysed at once by ``serve`` (default: the number of cores)."""
    analysis_queue: int = 8
    """Uploads that may wait (at most 10 s) for one of those: enough for a few clients at once; beyond that an upload is answered 503 with Retry-After."""
    host: str = "127.0.0.1"
    port: int = 8000
    given: frozenset[str] = frozenset()
    """Names of the fields a settings file, the environment or the command line set (not defaults)."""

    def __post_init__(self) -> None:
        if self.index not in INDEX_CHOICES:
            raise ConfigError(f"index: unknown backend {self.index!r}; expected one of {', '.join(INDEX_CHOICES)}")
        if self.workers < 1:
            raise ConfigError(f"workers: must be at least 1, got {self.workers}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, got {self.batch_size}")
        if not 0 < self.min_duration < self.max_duration:
            raise ConfigError(
                f"durations: need 0 < min_duration < max_duration, got {self.min_duration} and {self.max_duration}"
            )
        if self.upload_analysed_s < self.min_duration or self.analyses < 1 or self.analysis_queue < 0:
            raise ConfigError(
                "uploads: need upload_analysed_s >= min_duration, analyses >= 1 and analysis_queue >= 0, got "
                f"{self.upload_analysed_s}, {self.analyses} and {self.analysis_queue}"
            )
        unknown = set(self.weights) - set(FAMILIES)
        if unknown:
            raise ConfigError(f"weights: unknown families {sorted(unknown)}; expected {', '.join(FAMILIES)}")
        if any(w < 0 for w in self.weights.values()) or not any(w > 0 for w in self.weights.values()):
            raise ConfigError("weights: must be non-negative with at least one above zero")

    @property
    def family_weights(self) -> dict[str, float]:
        """Weight of each family (learned families 0 when ``style`` is off)."""
        return {
            f: 0.0 if (f in LEARNED_FAMILIES and not self.style) else float(self.weights.get(f, DEFAULT_WEIGHTS[f]))
            for f in FAMILIES
        }


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "given"}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML, environment or CLI value into the field's type."""
    try:
        if name == "library":
            return Path(value)
        if name in {"workers", "batch_size", "k", "port", "analyses", "analysis_queue"}:
            return int(value)
        if name in {"max_duration", "min_duration", "max_upload_mb", "upload_analysed_s"}:
            return float(value)
        if name == "style":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError("expected true or false")
            return text in {"1", "true", "yes", "on"}
        if name == "weights":
            if isinstance(value, str):
                pairs = (p.split("=", 1) for p in value.split(",") if p.strip())
                return {k.strip(): float(v) for k, v in pairs}
            return {str(k): float(v) for k, v in dict(value).items()}
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot use {value!r} ({exc})") from exc


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Combine the layers into one :class:`Settings`.

    Parameters
    ----------
    overrides : mapping, optional
        Values from the command line; ``None`` values are ignored.
    config_file : path-like, optional
        A TOML file; when absent, ``LIBRARY/soundalike.toml`` is read if present.
    environ : mapping, optional
        Defaults to ``os.environ``.

    Raises
    ------
    ConfigError
    """
    env = os.environ if environ is None else environ
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    env_values = {
        name: env[f"SOUNDALIKE_{name.upper()}"] for name in _FIELDS if f"SOUNDALIKE_{name.upper()}" in env
    }
    library = cli.get("library") or env_values.get("library") or Settings.library
    path = Path(config_file) if config_file else Path(library) / "soundalike.toml"
    file_values: dict[str, Any] = {}
    if config_file or path.is_file():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the settings file ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        unknown = set(file_values) - set(_FIELDS)
        if unknown:
            raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
    merged: dict[str, Any] = {}
    for layer in (file_values, env_values, cli):
        for name, value in layer.items():
            merged[name] = _coerce(name, value)
    return Settings(**merged, given=frozenset(merged))
