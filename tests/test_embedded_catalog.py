"""The embedded server reads its index catalog once per storage transaction
(facepic/embedded_catalog.py): the same results as reading it for each document, and the
reads counted. Each side runs in a fresh process, since the change is made to the class."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("secantus")

SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    from pymongo import ASCENDING, MongoClient
    from pymongo.collation import Collation
    from pymongo.errors import BulkWriteError
    from secantus import SecantusDBServer
    from secantus.storage import Storage

    reads = 0
    original = Storage._index_options_map
    def counted(self, db, coll):
        global reads
        reads += 1
        return original(self, db, coll)
    Storage._index_options_map = counted
    if sys.argv[1] == "once":
        from facepic.embedded_catalog import read_once
        assert read_once(Storage) and read_once(Storage)  # a second call changes nothing more

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=tempfile.mkdtemp())
    server.start()
    host, port = server.address
    c = MongoClient(f"mongodb://{host}:{port}/?directConnection=true")["t"]["c"]
    c.create_index([("sha", ASCENDING)], unique=True)
    c.create_index([("name", ASCENDING)], collation=Collation("en", strength=2), unique=True)
    c.create_index([("tags", ASCENDING)])
    c.create_index([("where", "2dsphere")])
    c.create_index([("gone", ASCENDING)], sparse=True)
    out = {}
    before = reads
    docs = [{"_id": i, "sha": f"s{i}", "name": f"N{i}", "tags": [i, i + 1], "where": {"type": "Point", "coordinates": [i, i]}}
            for i in range(40)]
    docs += [{"_id": 100, "sha": "s3"},  # the unique index
             {"_id": 101, "sha": "x101", "name": "n5"},  # the unique index, by its collation
             {"_id": 102, "sha": "x102", "where": {"type": "Point", "coordinates": [500, 0]}}]  # bad geometry
    try:
        c.insert_many(docs, ordered=False)
    except BulkWriteError as e:
        out["insert_errors"] = sorted((err["index"], err["code"]) for err in e.details["writeErrors"])
    out["insert_reads"] = reads - before
    before = reads
    r = c.update_many({"_id": {"$lt": 20}}, {"$set": {"tags": ["a", "b"]}, "$inc": {"n": 1}})
    out["updated"] = r.modified_count
    out["update_reads"] = reads - before
    try:
        c.update_one({"_id": 30}, {"$set": {"sha": "s1"}})
    except Exception as e:
        out["update_error"] = getattr(e, "code", None)
    out["deleted"] = c.delete_many({"_id": {"$gte": 35}}).deleted_count
    out["by_tag"] = sorted(d["_id"] for d in c.find({"tags": "a"}))
    out["by_name"] = sorted(d["_id"] for d in c.find({"name": "n7"}).collation(Collation("en", strength=2)))
    out["near"] = [d["_id"] for d in c.find({"where": {"$geoWithin": {"$centerSphere": [[2, 2], 0.02]}}})]
    out["all"] = sorted(json.dumps(d, sort_keys=True) for d in c.find())
    # An index made between two commands holds for the next one.
    c.insert_one({"_id": 200, "sha": "x200", "label": "Ab"})
    c.create_index([("label", ASCENDING)], collation=Collation("en", strength=2), unique=True, sparse=True)
    try:
        c.insert_one({"_id": 201, "sha": "x201", "label": "aB"})
        out["next_command"] = "inserted"
    except Exception as e:
        out["next_command"] = getattr(e, "code", None)
    server.stop()
    print(json.dumps(out))
    """
)


# A command in two chunks (over 1,000 documents), another connection making a unique index with
# a collation between them: the second chunk must enforce it (its own transaction, its own read).
BETWEEN_CHUNKS = textwrap.dedent(
    """
    import json, sys, tempfile, threading
    from secantus.storage import Storage

    if sys.argv[1] == "once":
        from facepic.embedded_catalog import read_once
        read_once(Storage)
    storage = Storage(tempfile.mkdtemp())
    storage.create_index("t", "c", "x_1", {"x": 1})
    real_chunk = Storage._insert_chunk
    chunks = []

    def chunk(self, db, coll, prepared, **kwargs):
        if chunks:
            made = threading.Thread(target=lambda: self.create_index(
                db, coll, "name_1", {"name": 1}, {"unique": True, "collation": {"locale": "en", "strength": 2}}))
            made.start()
            made.join()
        chunks.append(len(prepared))
        return real_chunk(self, db, coll, prepared, **kwargs)

    Storage._insert_chunk = chunk
    docs = [{"_id": i, "name": f"a{i}"} for i in range(1000)] + [{"_id": 5000, "name": "A5"}]
    inserted, errors = storage.insert("t", "c", docs, ordered=False)
    print(json.dumps({"chunks": chunks, "inserted": inserted, "codes": [e["code"] for e in errors]}))
    """
)


def _side(way: str, script: str = SCRIPT) -> dict:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script, way], capture_output=True, text=True, timeout=120, cwd=root, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_reading_the_catalog_once_per_command_changes_no_result_and_saves_the_reads() -> None:
    plain, once = _side("plain"), _side("once")
    reads = {k: (plain.pop(k), once.pop(k)) for k in ("insert_reads", "update_reads")}
    assert once == plain
    # The conflicts are still found: the duplicate sha, the name equal under the collation, the
    # point off the globe.
    assert plain["insert_errors"] == [[40, 11000], [41, 11000], [42, 16572]]
    assert plain["updated"] == 20 and plain["by_tag"] == list(range(20)) and plain["by_name"] == [7]
    assert plain["near"] == [2] and plain["deleted"] == 5 and len(plain["all"]) == 35
    assert plain["update_error"] == 11000 and plain["next_command"] == 11000
    # Per document before (three reads for each of the 40 written), once per transaction now
    # (the insert's one; the update's two), and read again by each command.
    assert reads["insert_reads"][0] >= 3 * 40
    assert reads["insert_reads"][1] == 1
    assert reads["update_reads"][0] >= 20
    assert 1 <= reads["update_reads"][1] <= 2


def test_an_index_made_between_two_chunks_of_a_command_holds_for_the_second() -> None:
    plain, once = _side("plain", BETWEEN_CHUNKS), _side("once", BETWEEN_CHUNKS)
    assert plain == once == {"chunks": [1000, 1], "inserted": 1000, "codes": [11000]}
