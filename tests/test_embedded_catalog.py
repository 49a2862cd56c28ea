"""The embedded server reads its index catalog once per write command
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
    server.stop()
    print(json.dumps(out))
    """
)


def _side(way: str) -> dict:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, way], capture_output=True, text=True, timeout=120, cwd=root, check=False
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
    assert plain["update_error"] == 11000
    # Per document before (three reads for each of the 40 written), once per command now.
    assert reads["insert_reads"][0] >= 3 * 40
    assert reads["insert_reads"][1] <= 2
    assert reads["update_reads"][0] >= 20
    assert reads["update_reads"][1] <= 2
