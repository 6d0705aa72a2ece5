"""``python -m soundalike.cli``."""

from soundalike.cli import main

main()
