"""The benchmark package lives at the repository root, beside ``src``: make it importable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of generated inputs for the smoke tests of this module."""
    return tmp_path_factory.mktemp("bench-cache")
