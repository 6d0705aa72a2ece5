"""soundalike: recommend music that sounds alike.

Importing the package is cheap; the heavy parts (PyAV, librosa, the indexes) load when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
