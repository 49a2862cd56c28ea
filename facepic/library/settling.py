"""What settling (facepic.settle) and recluster read and mark: the settle and recluster
marks, the faces to settle and those that constrain a merge."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from facepic.library.base import (
    IN_BATCH,
    RECLUSTER_META_ID,
    SETTLE_META_ID,
    LibraryBase,
)


class Settling(LibraryBase):
    """What settling (facepic.settle) and recluster read and mark: a room of `facepic.db.Library`."""

    def settle_mark(self) -> dict[str, Any]:
        """Up to which face number the library was settled, and on which model."""
        with self.errors():
            return self.meta.find_one({"_id": SETTLE_META_ID}) or {}

    def set_settle_mark(self, model: str, seq: int) -> None:
        with self.errors():
            self.meta.replace_one({"_id": SETTLE_META_ID}, {"model": model, "seq": seq}, upsert=True)

    def unassigned_faces(self) -> int:
        """Faces that belong to nobody yet (those the user called not a face aside)."""
        return sum(1 for _ in self.unassigned({"ignored": 1}))

    def unassigned_state(self) -> dict[str, Any]:
        """What the unassigned faces are, as far as a later look needs to tell whether they
        changed: the library's epoch (every change bumps it), its last face number, their count."""
        return {"epoch": self.epoch_and_revision(), "seq": self.current_seq(), "unassigned": self.unassigned_faces()}

    def recluster_mark(self) -> dict[str, Any]:
        """What the last `recluster` left (``unassigned_state``) and how many faces it placed."""
        with self.errors():
            return self.meta.find_one({"_id": RECLUSTER_META_ID}, {"_id": 0}) or {}

    def set_recluster_mark(self, placed: int) -> None:
        mark = {**self.unassigned_state(), "placed": placed}
        with self.errors():
            self.meta.replace_one({"_id": RECLUSTER_META_ID}, mark, upsert=True)

    def faces_to_settle(
        self, model: str, after_seq: int | None, upto_seq: int, unassigned: bool = True
    ) -> list[dict[str, Any]]:
        """Faces of ``model`` numbered in (after_seq, upto_seq] (None: every face), then (with
        ``unassigned``) the unassigned ones not among them, each without box, landmarks or quality.
        Faces the user called not a face (``ignored``) are never settled. (``ignored`` is left
        out here rather than by ``$ne``: with it the embedded server reads every face instead of
        the seq or person index, the whole library at each slice of a settle.)"""
        fields = {"landmarks": 0, "box": 0, "quality": 0}
        query: dict[str, Any] = {"model": model}
        if after_seq is not None:
            query["seq"] = {"$gt": after_seq, "$lte": upto_seq}
        with self.errors():
            docs = _settled_order(self.faces.find(query, fields))
            if after_seq is not None and docs and unassigned:
                fresh = {d["_id"] for d in docs}
                docs += sorted(
                    (d for d in self.unassigned(fields, {"model": model}) if d["_id"] not in fresh),
                    key=lambda d: d["_id"],
                )
        return docs

    def persons_of_the_user(self) -> set[str]:
        """Persons the user made, named, merged, picked a cover for or hid."""
        with self.errors():
            return {
                d["_id"]
                for d in self.persons.find(
                    {"$or": [{"user_locked": True}, {"cover_locked": True}, {"hidden": True}]}, {"_id": 1}
                )
            }

    def constraining_faces(self, person_ids: Sequence[str], image_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Faces of ``person_ids`` that constrain a merge: in one of ``image_ids``, rejecting
        someone, or placed by the user. Read by what bounds them, not by the persons (a
        family's largest persons, read whole at every slice of a run, made each slice cost more
        than the last): the faces of the photos, in parts (the embedded server checks each face
        against the whole ``$in`` list), and the few the user made (indexed)."""
        wanted = set(person_ids)
        if not wanted:
            return []  # a library's first settle: no settled person near its faces
        in_photos = set(image_ids)
        photos = sorted(in_photos)
        projection = {"image_id": 1, "person_id": 1, "rejected": 1, "locked": 1}
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for start in range(0, len(photos), IN_BATCH):
                found.update(
                    (f["_id"], f)
                    for f in self.faces.find({"image_id": {"$in": photos[start : start + IN_BATCH]}}, projection)
                )
            for query in ({"rejected": {"$exists": True}}, {"locked": True}):
                found.update((f["_id"], f) for f in self.faces.find(query, projection))
        return [
            f
            for f in found.values()
            if f.get("person_id") in wanted and (f["image_id"] in in_photos or f.get("rejected") or f.get("locked"))
        ]

    def faces_of_persons(self, person_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Every face of ``person_ids`` with its embedding (no box, landmarks or quality), in
        face id order. Asked in parts: the embedded server checks each face it finds against
        the whole ``$in`` list (thousands of small persons near a new drive's faces)."""
        ids = list(person_ids)
        out: list[dict[str, Any]] = []
        with self.errors():
            for start in range(0, len(ids), IN_BATCH):
                out += self.faces.find(
                    {"person_id": {"$in": ids[start : start + IN_BATCH]}}, {"landmarks": 0, "box": 0, "quality": 0}
                )
        return sorted(out, key=lambda d: d["_id"])

    def holds_faces(self, total: int) -> bool:
        """Whether the library holds exactly ``total`` faces: counted (a settle whose batch
        holds that many of them knows then that no face is elsewhere), the exact count asked
        only where the server's estimate agrees."""
        with self.errors():
            return self.faces.estimated_document_count() == total and self.faces.count_documents({}) == total

    def count_faces_of_model(self, model: str) -> int:
        with self.errors():
            return self.faces.count_documents({"model": model})


def _settled_order(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The faces a settle decides, by id, without those the user called not a face."""
    return sorted((d for d in docs if not d.get("ignored")), key=lambda d: d["_id"])
