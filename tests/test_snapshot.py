"""The index worker's start from a snapshot of the known faces, on the real MongoDB wire server:
it must return exactly what reading every face returns, and never a stale person."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from facepic import snapshot
from facepic.db import Library, embedding_to_bson
from facepic.derived import bump_revision

pytestmark = pytest.mark.servers
_names = itertools.count()


@pytest.fixture
def lib(mongo_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Library]:
    monkeypatch.setattr(snapshot, "CHUNK", 7)  # several parts from a few faces
    library = Library(mongo_server, f"facepic_snapshot_{next(_names)}")
    library.ensure_indexes()
    library.claim_model("m")
    yield library
    library.drop_all()
    library.close()


def store(lib: Library, count: int, start: int, rng: np.random.Generator, person: str | None = None) -> None:
    """``count`` faces as the index stage stores them: numbered, some unassigned."""
    first = lib.next_seq(count)
    vectors = rng.normal(size=(count, 512)).astype(np.float32)
    lib.upsert_faces(
        [
            {
                "_id": f"f{start + i}",
                "image_id": f"i{start + i}",
                "index": 0,
                "model": "m",
                "seq": first + i,
                "embedding": embedding_to_bson(vectors[i]),
                "person_id": person or (None if (start + i) % 5 == 4 else f"p{(start + i) % 3}"),
            }
            for i in range(count)
        ]
    )


def as_rows(known: snapshot.Known) -> dict[str, tuple[str, bytes]]:
    """The assigned faces: id -> (person, embedding bytes)."""
    assert len(known.ids) == len(set(known.ids)) == len(known.persons) == len(known.matrix)
    persons, matrix = known.assigned()
    assert len(persons) == len(matrix) == sum(1 for p in known.persons if p)
    return {
        fid: (person, known.matrix[i].tobytes())
        for i, (fid, person) in enumerate(zip(known.ids, known.persons))
        if person
    }


def full_read(lib: Library) -> dict[str, tuple[str, bytes]]:
    """What reading every face returns."""
    return {
        d["_id"]: (d["person_id"], bytes(d["embedding"]))
        for d in lib.faces.find({"model": "m", "person_id": {"$ne": None}})
    }


def test_a_start_reads_the_snapshot_and_only_the_faces_stored_after_it(lib: Library) -> None:
    rng = np.random.default_rng(0)
    store(lib, 30, 0, rng)
    first = snapshot.load(lib, "m")
    assert "read one by one" in first.source and as_rows(first) == full_read(lib) and len(full_read(lib)) == 24
    assert lib.meta.find_one({"_id": snapshot.META_ID})["parts"] == 5  # 30 faces (6 unassigned), 7 a part

    store(lib, 3, 30, rng)  # photos indexed after the snapshot
    replay = lib.faces.find_one({"_id": "f2"})
    lib.upsert_faces([{**replay, "person_id": "p9", "seq": 10**6}])  # a replay keeps person and number
    assert lib.faces.find_one({"_id": "f2"})["seq"] == replay["seq"]
    second = snapshot.load(lib, "m")
    assert second.source == "30 faces from the snapshot, 0 of them read again, 3 stored after it"
    assert as_rows(second) == full_read(lib)

    # A face both in the snapshot and numbered after it (stored while a full read ran) counts once.
    lib.faces.update_one({"_id": "f0"}, {"$set": {"seq": lib.next_seq(1)}})
    assert as_rows(snapshot.load(lib, "m")) == full_read(lib)


def test_faces_put_in_another_person_are_read_again_and_the_rest_comes_from_the_snapshot(lib: Library) -> None:
    rng = np.random.default_rng(1)
    store(lib, 20, 0, rng)
    snapshot.load(lib, "m")
    p1 = [d["_id"] for d in lib.faces.find({"person_id": "p1"})]
    lib.set_person(p1, "p0")  # a merge
    lib.set_person(["f4"], "p5")  # an unassigned face placed by recluster
    lib.set_person(["f0"], None)  # a rejection
    bump_revision(lib)
    after = snapshot.load(lib, "m")
    assert after.source == f"20 faces from the snapshot, {len(p1) + 2} of them read again, 0 stored after it"
    assert "p1" not in after.persons and as_rows(after)["f4"][0] == "p5" and "f0" not in as_rows(after)
    assert as_rows(after) == full_read(lib)


def test_a_change_noted_but_never_made_or_made_after_the_snapshot_read_is_still_right(lib: Library) -> None:
    rng = np.random.default_rng(4)
    store(lib, 20, 0, rng)
    snapshot.load(lib, "m")
    # A correction that crashed after noting its change: the note makes a start read the face.
    lib.face_moves.insert_one({"_id": lib.next_seq(1), "faces": ["f1"], "at": datetime.now(UTC)})
    assert as_rows(snapshot.load(lib, "m")) == full_read(lib)
    # A change noted before a snapshot was taken but made after it read the face.
    lib.face_moves.insert_one({"_id": lib.next_seq(1), "faces": ["f2"], "at": datetime.now(UTC)})
    lib.meta.delete_one({"_id": snapshot.META_ID})
    snapshot.load(lib, "m")  # a new snapshot, covering the note's number, with f2 as it was
    lib.faces.update_one({"_id": "f2"}, {"$set": {"person_id": "p8"}})
    again = snapshot.load(lib, "m")
    assert "from the snapshot" in again.source and as_rows(again)["f2"][0] == "p8"
    assert as_rows(again) == full_read(lib)


def test_an_incomplete_snapshot_is_not_used(lib: Library, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(2)
    store(lib, 20, 0, rng)
    snapshot.load(lib, "m")
    lib.db["face_snapshots"].delete_one({"part": 1})  # a lost part
    with caplog.at_level(logging.WARNING):
        known = snapshot.load(lib, "m")
    assert "incomplete" in caplog.text and "read one by one" in known.source
    assert as_rows(known) == full_read(lib)


def test_many_changes_refresh_the_snapshot_and_a_wipe_or_reembedding_drops_it(lib: Library) -> None:
    rng = np.random.default_rng(3)
    store(lib, 10, 0, rng)
    snapshot.load(lib, "m")
    store(lib, 20, 10, rng, person="p7")  # more than a part and more than a tenth of the snapshot
    assert snapshot.load(lib, "m").source.endswith("20 stored after it")
    assert snapshot.load(lib, "m").source == "30 faces from the snapshot, 0 of them read again, 0 stored after it"
    assert len(lib.db["face_snapshots"].distinct("generation")) == 1  # the replaced snapshot's parts are gone
    snapshot.forget(lib)
    assert "read one by one" in snapshot.load(lib, "m").source
    lib.drop_all()
    assert lib.db["face_snapshots"].count_documents({}) == 0 and lib.face_moves.count_documents({}) == 0
