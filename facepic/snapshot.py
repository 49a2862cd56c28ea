"""The index worker's start: every known face of the library's model, read back from MongoDB
in seconds rather than minutes.

Reading a million face documents costs the server a decode per document (about 10,000 a
second on the embedded server, minutes at a million). So the index worker also keeps what it
loaded in `face_snapshots`: face ids, person ids and embeddings, ``CHUNK`` faces per document,
tagged with the library's epoch and revision and with the last face sequence number they
cover. Every face the index stage stores gets the next number (`seq`), so a start reads the
snapshot plus the faces stamped after it.

A snapshot is only used while the library's revision is the one it was taken at: any
correction, recluster, re-embedding or wipe changes the revision (persons may have changed
anywhere), and the next load reads the faces one by one and writes a new snapshot. The index
stage is the only writer of new faces and it never changes the person of a stored face, so
between two revisions "snapshot + faces after it" is exactly what a full read returns.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from bson.binary import Binary

from facepic.db import Library, embedding_from_bson
from facepic.detect import EMBEDDING_DIM
from facepic.ledger import now_iso

log = logging.getLogger(__name__)

CHUNK = 4000  # faces per snapshot document: 8 MB of embeddings, under MongoDB's 16 MB
META_ID = "face_snapshot"


@dataclass
class Known:
    """The assigned faces of one model, as the index worker searches them."""

    ids: list[str]
    persons: list[str]
    matrix: np.ndarray  # N x 512 float32
    source: str  # how they were read, for the log line


def _collection(lib: Library):  # noqa: ANN202 - a pymongo collection
    return lib.db["face_snapshots"]


def load(lib: Library, model: str, refresh_after: float = 0.1) -> Known:
    """Every assigned face of ``model``: from the snapshot and the faces stored after it when
    the snapshot is current, else from the faces themselves (then a new snapshot is written).
    The snapshot is also rewritten when the faces after it are more than ``refresh_after`` of
    it, so that a start never reads many faces one by one."""
    state = lib.epoch()
    snap = _read(lib, model, state)
    if snap is None:
        seq = lib.current_seq()
        ids, persons, matrix = lib.known_embeddings(model)
        known = Known(ids, persons, matrix, f"{len(ids)} faces read one by one")
        if state is not None:
            write(lib, model, state, seq, known)
        return known
    known, covered = snap
    seq = lib.current_seq()
    tail = _after(lib, model, covered, set(known.ids))
    if tail.ids:
        known = Known(known.ids + tail.ids, known.persons + tail.persons,
                      np.concatenate([known.matrix, tail.matrix]), "")
    known.source = f"{len(known.ids) - len(tail.ids)} faces from the snapshot, {len(tail.ids)} stored after it"
    if len(tail.ids) > max(CHUNK, refresh_after * len(known.ids)) and state is not None:
        write(lib, model, state, seq, known)
    return known


def _read(lib: Library, model: str, state: str | None) -> tuple[Known, int] | None:
    """The snapshot of ``model`` taken at ``state``, whole, with the sequence number it covers."""
    with lib.errors():
        meta = lib.meta.find_one({"_id": META_ID})
        if not meta or state is None or meta.get("state") != state or meta.get("model") != model:
            return None
        docs = list(_collection(lib).find({"generation": meta["generation"]}).sort("part", 1))
    if len(docs) != meta["parts"] or sum(d["count"] for d in docs) != meta["faces"]:
        log.warning("face snapshot incomplete; reading the faces one by one")
        return None
    matrix = np.empty((meta["faces"], EMBEDDING_DIM), dtype=np.float32)
    ids: list[str] = []
    persons: list[str] = []
    row = 0
    for d in docs:
        count = d["count"]
        matrix[row : row + count] = embedding_from_bson(d["embeddings"]).reshape(count, EMBEDDING_DIM)
        ids.extend(d["ids"].split("\n") if count else [])
        persons.extend(d["persons"].split("\n") if count else [])
        row += count
    return Known(ids, persons, matrix, ""), int(meta["seq"])


def _after(lib: Library, model: str, seq: int, seen: set[str]) -> Known:
    """Assigned faces of ``model`` stored after sequence number ``seq``, less ``seen`` ones."""
    ids: list[str] = []
    persons: list[str] = []
    rows: list[bytes] = []
    with lib.errors():
        # Unassigned faces are skipped here rather than in the query: a condition on the
        # person makes some servers scan the whole collection instead of the (model, seq) index.
        cursor = lib.faces.find(
            {"model": model, "seq": {"$gt": seq}}, {"_id": 1, "person_id": 1, "embedding": 1}, batch_size=10_000
        )
        for doc in cursor:
            if doc["_id"] in seen or doc.get("person_id") is None:
                continue
            ids.append(doc["_id"])
            persons.append(doc["person_id"])
            rows.append(bytes(doc["embedding"]))
    matrix = np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), EMBEDDING_DIM)
    return Known(ids, persons, matrix, "")


def write(lib: Library, model: str, state: str, seq: int, known: Known) -> None:
    """Store ``known`` as the snapshot of ``model`` at ``state`` covering faces up to ``seq``;
    the previous snapshot stays in use until the new one is whole."""
    generation = uuid.uuid4().hex
    coll = _collection(lib)
    parts = 0
    with lib.errors():
        for start in range(0, max(1, len(known.ids)), CHUNK):
            end = min(start + CHUNK, len(known.ids))
            doc: dict[str, Any] = {
                "_id": f"{generation}:{parts:06d}",
                "generation": generation,
                "part": parts,
                "count": end - start,
                "ids": "\n".join(known.ids[start:end]),
                "persons": "\n".join(known.persons[start:end]),
                "embeddings": Binary(np.ascontiguousarray(known.matrix[start:end], dtype="<f4").tobytes()),
            }
            coll.insert_one(doc)
            parts += 1
        lib.meta.replace_one(
            {"_id": META_ID},
            {"model": model, "state": state, "seq": seq, "generation": generation, "parts": parts,
             "faces": len(known.ids), "written_at": now_iso()},
            upsert=True,
        )
        coll.delete_many({"generation": {"$ne": generation}})
