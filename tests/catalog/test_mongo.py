"""MongoDB specifics: documents, indexes, id counter, schema, and errors.

``mongomock://`` is mongomock, an in-process **stand-in** for a MongoDB server (none can be installed
on the CI machines); the connection error test talks to a real (closed) port through pymongo.
"""

from __future__ import annotations

import os

import pytest

from mongo_stand_in import StandInCatalog
from soundalike.catalog import open_catalog
from soundalike.catalog.mongo import MongoCatalog
from soundalike.errors import CatalogError

from .test_contract import DIM, ok_record


@pytest.fixture
def mongo(request) -> StandInCatalog:
    return StandInCatalog(f"mongomock://specifics/{request.node.name[:40]}")


def test_tracks_are_documents_with_binary_vectors_and_segments(mongo):
    rec = ok_record("/music/a.mp3", 1)
    mongo.write([rec])
    doc = mongo._tracks.find_one({})
    assert isinstance(doc["id"], int)
    assert bytes(doc["vector"]) == rec.vector.astype("<f4").tobytes() and len(bytes(doc["vector"])) == 4 * DIM
    assert bytes(doc["seg_vectors"]) == rec.segments.astype("<f4").tobytes()
    assert bytes(doc["path"]) == b"/music/a.mp3" and doc["path_text"] == "/music/a.mp3"


def test_path_and_id_are_unique_and_content_hash_is_not(mongo):
    indexes = mongo._tracks.index_information()
    assert indexes["path_unique"]["unique"] and indexes["id_unique"]["unique"]
    assert not indexes["content_hash"].get("unique", False)


def test_a_path_that_is_not_utf8_is_stored_as_its_bytes(mongo):
    path = os.fsdecode(b"/music/caf\xe9.mp3")
    mongo.write([ok_record(path, 1)])
    doc = mongo._tracks.find_one({})
    assert bytes(doc["path"]) == b"/music/caf\xe9.mp3"
    assert doc["path_text"] == "/music/caf\ufffd.mp3"


def test_catalogs_opened_on_one_stand_in_server_share_data(mongo):
    mongo.write([ok_record("/music/a.mp3", 1)])
    again = open_catalog("unused-library", mongo.uri, create=False)
    assert isinstance(again, MongoCatalog) and again.count() == 1


def test_a_database_without_a_catalog_is_an_error_when_not_creating():
    with pytest.raises(CatalogError, match="no soundalike catalog in this database"):
        StandInCatalog("mongomock://specifics/nothing-here", create=False)


def test_a_newer_schema_is_refused_with_both_versions(mongo):
    mongo._state.update_one({"_id": "schema"}, {"$set": {"version": 99}})
    with pytest.raises(CatalogError, match="99.*expected at most 1"):
        StandInCatalog(mongo.uri)


def test_check_finds_a_missing_index_and_a_counter_behind_the_ids(mongo):
    mongo.write([ok_record("/music/a.mp3", 1), ok_record("/music/b.mp3", 2)])
    mongo._tracks.drop_index("path_unique")
    mongo._state.update_one({"_id": "track_id"}, {"$set": {"last": 1}})
    problems = mongo.check()
    assert any("unique index on path" in p for p in problems)
    assert any("counter (1) is behind the largest id (2)" in p for p in problems)


def test_an_unreachable_server_is_one_error_without_the_password():
    uri = "mongodb://soundalike:secret@127.0.0.1:1/library?serverSelectionTimeoutMS=300"
    with pytest.raises(CatalogError) as caught:
        MongoCatalog(uri)
    message = str(caught.value)
    assert message.startswith("mongodb://soundalike:***@127.0.0.1:1/library")
    assert "cannot open the MongoDB catalog" in message and "secret" not in message
    assert "\n" not in message
