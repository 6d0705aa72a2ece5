"""An in-process **stand-in** for a MongoDB server, for tests only (no server can be installed here).

``StandInCatalog("mongomock://NAME/DB")`` is :class:`~soundalike.catalog.mongo.MongoCatalog` talking
to :mod:`mongomock` instead of pymongo: catalogs opened with the same ``NAME`` in one process share
data, like clients of one server. ``SOUNDALIKE_TEST_MONGODB_URI`` runs the same tests on a real one.
"""

from __future__ import annotations

import threading
from typing import Any

import mongomock
from mongomock.store import ServerStore

from soundalike.catalog import URI_SCHEMES
from soundalike.catalog.mongo import DEFAULT_DATABASE, MongoCatalog

SCHEME = "mongomock://"

# One in-memory "server" per stand-in name, shared by every catalog opened in this process.
_SERVERS: dict[str, ServerStore] = {}
_LOCK = threading.Lock()


class StandInCatalog(MongoCatalog):
    """The MongoDB catalog on mongomock (``mongomock://NAME/DB``)."""

    def _connect(self, uri: str, timeout_s: float) -> tuple[Any, str]:
        name, _, rest = uri[len(SCHEME) :].partition("/")
        with _LOCK:
            store = _SERVERS.setdefault(name or "default", ServerStore())
        return mongomock.MongoClient(_store=store), rest.split("?")[0] or DEFAULT_DATABASE

    def _is_driver_error(self, exc: BaseException) -> bool:
        return super()._is_driver_error(exc) or type(exc).__module__.startswith("mongomock")

    def close(self) -> None:
        """Nothing to close: the in-memory server lives as long as the process (like a real one)."""

    def _bulk_write(self, ops: list[Any]) -> None:
        # mongomock 4.3's bulk_write does not accept the operation objects of pymongo 4.9+
        from pymongo import ReplaceOne, UpdateOne

        for op in ops:
            if isinstance(op, ReplaceOne):
                self._tracks.replace_one(op._filter, op._doc, upsert=op._upsert)
            elif isinstance(op, UpdateOne):
                self._tracks.update_one(op._filter, op._doc, upsert=bool(op._upsert))
            else:
                raise TypeError(f"the stand-in cannot bulk-write {type(op).__name__}")


def register() -> None:
    """Let ``--catalog mongomock://NAME/DB`` open the stand-in (CLI tests run in-process)."""
    URI_SCHEMES[SCHEME] = StandInCatalog
