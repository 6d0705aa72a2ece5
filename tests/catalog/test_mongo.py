"""MongoDB specifics: documents, indexes, id counter, schema, and errors.

``mongomock://`` is mongomock, an in-process **stand-in** for a MongoDB server (none can be installed
on the CI machines); the connection error test talks to a real (closed) port through pymongo.
"""

from __future__ import annotations

import os

import pytest

from mongo_stand_in import StandInCatalog
from soundalike.catalog import open_catalog
from soundalike.catalog.mongo import MongoCatalog, trigrams
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
    with pytest.raises(CatalogError, match="99.*expected at most 2"):
        StandInCatalog(mongo.uri)


def test_check_finds_a_missing_index_and_a_counter_behind_the_ids(mongo):
    mongo.write([ok_record("/music/a.mp3", 1), ok_record("/music/b.mp3", 2)])
    mongo._tracks.drop_index("path_unique")
    mongo._state.update_one({"_id": "track_id"}, {"$set": {"last": 1}})
    problems = mongo.check()
    assert any("unique index on path" in p for p in problems)
    assert any("counter (1) is behind the largest id (2)" in p for p in problems)


def test_a_search_of_three_characters_or_more_asks_the_grams_index(mongo):
    mongo.write([ok_record("/music/a.mp3", 1, title="Blue Moon"), ok_record("/music/b.mp3", 2)])
    assert mongo._tracks.find_one({"id": 1})["grams"] == trigrams(["Blue Moon", "Tester", "Synth", "/music/a.mp3"])
    where = mongo._filter("ok", "MOON")
    assert where["grams"] == {"$all": ["moo", "oon"]}  # what the index answers; the pattern checks the rest
    assert "grams" in mongo._tracks.index_information() and mongo.check() == []
    assert [t.title for t in mongo.tracks(query="MOON")] == ["Blue Moon"]
    assert "grams" not in mongo._filter("ok", "mo")


def test_a_catalog_of_schema_1_gets_its_grams_when_opened(mongo):
    mongo.write([ok_record(f"/music/{i}.mp3", i, title="Blue Moon" if i % 2 else None) for i in range(5)])
    mongo._tracks.update_many({}, {"$unset": {"grams": ""}})
    mongo._tracks.drop_index("grams")
    mongo._state.update_one({"_id": "schema"}, {"$set": {"version": 1}})
    assert any("index on grams is missing" in p for p in mongo.check())

    again = StandInCatalog(mongo.uri)
    assert again._state.find_one({"_id": "schema"})["version"] == 2
    assert again._tracks.count_documents({"grams": {"$exists": False}}) == 0
    assert again.count(query="moon") == 2 and again.check() == []


@pytest.mark.skipif(not os.environ.get("SOUNDALIKE_TEST_MONGODB_URI"), reason="needs a real MongoDB server (SOUNDALIKE_TEST_MONGODB_URI)")
def test_a_real_server_answers_a_search_from_the_grams_index():
    import uuid

    database = f"soundalike_test_{uuid.uuid4().hex[:12]}"
    cat = MongoCatalog(os.environ["SOUNDALIKE_TEST_MONGODB_URI"], database=database)
    try:
        cat.write([ok_record(f"/music/{i}.mp3", i, title="Blue Moon" if i % 50 == 0 else None) for i in range(500)])
        plan = cat._tracks.find(cat._filter("ok", "blue moon")).explain()
        assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"]) and "grams" in str(plan["queryPlanner"]["winningPlan"])
        assert cat.count(query="blue moon") == 10
    finally:
        cat._client.drop_database(database)
        cat.close()


def test_an_unreachable_server_is_one_error_without_the_password():
    uri = "mongodb://soundalike:secret@127.0.0.1:1/library?serverSelectionTimeoutMS=300"
    with pytest.raises(CatalogError) as caught:
        MongoCatalog(uri)
    message = str(caught.value)
    assert message.startswith("mongodb://soundalike:***@127.0.0.1:1/library")
    assert "cannot open the MongoDB catalog" in message and "secret" not in message
    assert "\n" not in message
