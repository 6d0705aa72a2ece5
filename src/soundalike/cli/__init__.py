"""The ``soundalike`` command line: option parsing and printing over :class:`soundalike.library.Library`.

Expected failures (a bad file, an empty library, a wrong setting) print one line ``error: …`` and
exit with status 1; ``--verbose`` adds the traceback. Commands live by area, as beets' do:

=============  ======================================================
``library``    ingest, index, stats, failures, check
``query``      query, similar
``radio``      radio (and --path), duplicates
``evaluate``   tune, evaluate, sample
``catalog``    catalog export / import / copy
``serve``      serve (the web app and JSON API)
=============  ======================================================
"""

from __future__ import annotations

from soundalike.cli import catalog, evaluate, library, query, radio, serve  # noqa: F401 - each registers its commands
from soundalike.cli._common import main

__all__ = ["main"]
