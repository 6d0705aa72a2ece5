"""Where the real clips are (``../shared/dev-music``, beside the checkout), for the tests that use them.

``needs_dev_music`` skips a test (or, as ``pytestmark``, a module) when they are not there; a fixture
that needs them calls ``pytest.skip(ABSENT_REASON)`` unless ``PRESENT``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DEV_MUSIC = Path(__file__).resolve().parents[1].parent / "shared" / "dev-music"

PRESENT = (DEV_MUSIC / "labels.csv").exists()
ABSENT_REASON = "../shared/dev-music is not beside this checkout"

needs_dev_music = pytest.mark.skipif(not PRESENT, reason=ABSENT_REASON)
