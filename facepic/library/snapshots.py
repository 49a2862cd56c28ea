"""The index worker's face snapshot (its format: facepic/snapshot.py): its parts, the face
moves noted since, and the faces read after it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from facepic.library.base import (
    IN_BATCH,
    SNAPSHOT_META_ID,
    LibraryBase,
)


class Snapshots(LibraryBase):
    """The index worker's face snapshot: a room of `facepic.db.Library`."""

    def epoch_alone(self) -> str | None:
        """The library's epoch alone (changes only when it is wiped and begun again)."""
        with self.errors():
            doc = self.meta.find_one({"_id": "library"}, {"epoch": 1})
        return doc.get("epoch") if doc else None

    def snapshot_meta(self) -> dict[str, Any] | None:
        with self.errors():
            return self.meta.find_one({"_id": SNAPSHOT_META_ID})

    def snapshot_parts(self, generation: str) -> list[dict[str, Any]]:
        """The parts of one snapshot, in order."""
        with self.errors():
            return list(self.db["face_snapshots"].find({"generation": generation}).sort("part", ASCENDING))

    def add_snapshot_part(self, doc: dict[str, Any]) -> None:
        with self.errors():
            self.db["face_snapshots"].insert_one(doc)

    def commit_snapshot(self, meta: dict[str, Any]) -> None:
        """Make the snapshot ``meta`` describes (its parts all stored) the one in use, and drop
        the parts of every other."""
        with self.errors():
            self.meta.replace_one({"_id": SNAPSHOT_META_ID}, meta, upsert=True)
            self.db["face_snapshots"].delete_many({"generation": {"$ne": meta["generation"]}})

    def forget_snapshot(self) -> None:
        with self.errors():
            self.meta.delete_one({"_id": SNAPSHOT_META_ID})
            self.db["face_snapshots"].drop()

    def face_moves_since(self, seq: int, since: datetime) -> list[str]:
        """Faces noted as changing person after sequence number ``seq`` or at ``since`` or later."""
        with self.errors():
            notes = self.face_moves.find({"$or": [{"_id": {"$gt": seq}}, {"at": {"$gte": since}}]}, {"faces": 1})
            return list(dict.fromkeys(fid for note in notes for fid in note["faces"]))

    def drop_face_moves(self, through_seq: int, before: datetime) -> None:
        """Forget the notes numbered up to ``through_seq`` and made before ``before``."""
        with self.errors():
            self.face_moves.delete_many({"_id": {"$lte": through_seq}, "at": {"$lt": before}})

    def face_persons(self, face_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The person of each of ``face_ids`` (documents with ``person_id``), by id."""
        found: dict[str, dict[str, Any]] = {}
        ids = list(face_ids)
        with self.errors():
            for start in range(0, len(ids), IN_BATCH):
                part = ids[start : start + IN_BATCH]
                found.update((d["_id"], d) for d in self.faces.find({"_id": {"$in": part}}, {"person_id": 1}))
        return found

    def face_embeddings(self, model: str, after_seq: int | None = None) -> Iterator[dict[str, Any]]:
        """Id, person and embedding of the faces of ``model`` (numbered after ``after_seq``).
        The person is no condition here: one makes some servers scan the whole collection
        instead of the (model, seq) index."""
        query: dict[str, Any] = {"model": model}
        if after_seq is not None:
            query["seq"] = {"$gt": after_seq}
        with self.errors():
            yield from self.faces.find(query, {"_id": 1, "person_id": 1, "embedding": 1}, batch_size=10_000)
