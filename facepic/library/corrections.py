"""Corrections, recluster and undo: persons written, faces moved back, rejections, photos'
face lists refreshed; the pending changes (facepic.changes) and the undo log."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne

from facepic.documents import image_faces
from facepic.ledger import now_iso
from facepic.library import base
from facepic.library.base import (
    IN_BATCH,
    UNDO_KEPT,
    DatabaseError,
    LibraryBase,
)

ASKED_ALONE = 256  # faces of a person from which it is asked alone whether it has faces outside a batch


class Corrections(LibraryBase):
    """Corrections, recluster and undo: a room of `facepic.db.Library`."""

    def bump_revision(self) -> None:
        """Persons changed outside the index worker: its caches of them must be dropped."""
        with self.errors():
            self.meta.update_one({"_id": "library"}, {"$set": {"revision": uuid.uuid4().hex}}, upsert=True)

    def refresh_image_faces(self, image_ids: Iterable[str]) -> None:
        """Rewrite the redundant face list of each photo from the faces collection: one read
        and one bulk write per ``IN_BATCH`` photos."""
        wanted = sorted(set(image_ids))
        fields = {"person_id": 1, "box": 1, "score": 1, "image_id": 1, "index": 1}
        now = now_iso()
        for start in range(0, len(wanted), IN_BATCH):
            part = wanted[start : start + IN_BATCH]
            of: dict[str, list[dict[str, Any]]] = {i: [] for i in part}
            with self.errors():
                for f in self.faces.find({"image_id": {"$in": part}}, fields):
                    of[f["image_id"]].append(f)
                ops = [
                    UpdateOne(
                        {"_id": i},
                        {
                            "$set": {
                                "faces": image_faces(sorted(fs, key=lambda f: f.get("index", 0))),
                                "updated_at": now,
                            }
                        },
                    )
                    for i, fs in of.items()
                ]
                self.images.bulk_write(ops, ordered=False)

    def faces_by_person(self, person_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The faces of each of ``person_ids`` (id, quality, detection score), to count them and
        choose covers: one read per ``IN_BATCH`` persons."""
        wanted = sorted(set(person_ids))
        out: dict[str, list[dict[str, Any]]] = {}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"person_id": {"$in": wanted[start : start + IN_BATCH]}}
                for f in self.faces.find(query, {"person_id": 1, "quality": 1, "score": 1}):
                    out.setdefault(f["person_id"], []).append(f)
        return out

    def face_qualities(self, face_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of ``face_ids`` with their person, quality and detection score, by id."""
        wanted = sorted(set(face_ids))
        out: dict[str, dict[str, Any]] = {}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"_id": {"$in": wanted[start : start + IN_BATCH]}}
                out.update((f["_id"], f) for f in self.faces.find(query, {"person_id": 1, "quality": 1, "score": 1}))
        return out

    def set_person_fields_if(self, person_id: str, was: Mapping[str, Any], fields: dict[str, Any]) -> bool:
        """Set ``fields`` of the person only if it still has the values ``was`` (a compare and
        set); whether it did."""
        with self.errors():
            done = self.persons.update_one({"_id": person_id, **was}, {"$set": fields}).matched_count == 1
        if done:
            self._persons_changed([person_id])
        return done

    def persons_with_faces_outside(
        self, person_ids: Sequence[str], face_ids: set[str], holding: Mapping[str, int] | None = None
    ) -> set[str]:
        """Those of ``person_ids`` that have a face not in ``face_ids``. ``holding``: how many of
        ``face_ids`` each person holds (one not in it holds none), where known. Then a person of
        many faces (by its stored count, which only chooses how to ask) is asked alone for one
        face more than it holds there, which has to include one outside if it has any: the
        read is bounded by ``face_ids``, not by the person (a family's largest persons, read
        whole at each slice of a run, made each slice cost more than the last)."""
        wanted = sorted(set(person_ids))
        alone: set[str] = set()
        out: set[str] = set()
        with self.errors():
            if holding is not None:
                for start in range(0, len(wanted), IN_BATCH):
                    query = {"_id": {"$in": wanted[start : start + IN_BATCH]}, "face_count": {"$gte": ASKED_ALONE}}
                    alone.update(d["_id"] for d in self.persons.find(query, {"_id": 1}))
                for pid in sorted(alone):
                    faces = self.faces.find({"person_id": pid}, {"_id": 1}).limit(holding.get(pid, 0) + 1)
                    if any(f["_id"] not in face_ids for f in faces):
                        out.add(pid)
            together = [p for p in wanted if p not in alone]
            for start in range(0, len(together), IN_BATCH):
                query = {"person_id": {"$in": together[start : start + IN_BATCH]}}
                out.update(f["person_id"] for f in self.faces.find(query, {"person_id": 1}) if f["_id"] not in face_ids)
        return out

    def write_persons(
        self, changes: dict[str, tuple[dict[str, Any], dict[str, Any] | None]], gone: Sequence[str]
    ) -> None:
        """Set fields of persons (with the fields of a new one where it is missing: ``(set,
        insert)``) and delete ``gone``, in one bulk write each."""
        ops = [
            UpdateOne(
                {"_id": pid}, {"$set": fields, **({"$setOnInsert": insert} if insert else {})}, upsert=bool(insert)
            )
            for pid, (fields, insert) in sorted(changes.items())
        ]
        with self.errors():
            for start in range(0, len(ops), 1000):
                self.persons.bulk_write(ops[start : start + 1000], ordered=False)
            for start in range(0, len(gone), IN_BATCH):
                self.persons.delete_many({"_id": {"$in": list(gone[start : start + IN_BATCH])}})
        self._persons_changed([*changes, *gone])

    def new_person_if_missing(self, person_id: str, doc: dict[str, Any]) -> None:
        """Create the person with ``doc`` (from `documents.new_person`) unless it exists."""
        with self.errors():
            self.persons.update_one({"_id": person_id}, {"$setOnInsert": doc}, upsert=True)
        self._persons_changed([person_id])

    def set_person_fields(self, person_id: str, fields: dict[str, Any]) -> None:
        with self.errors():
            self.persons.update_one({"_id": person_id}, {"$set": fields})
        self._persons_changed([person_id])

    def set_persons_fields(self, person_ids: Sequence[str], fields: dict[str, Any]) -> None:
        with self.errors():
            self.persons.update_many({"_id": {"$in": list(person_ids)}}, {"$set": fields})
        self._persons_changed(person_ids)

    def delete_person(self, person_id: str) -> None:
        with self.errors():
            self.persons.delete_one({"_id": person_id})
        self._persons_changed([person_id])

    def reject_for(self, absorbed_ids: Sequence[str], target_id: str) -> None:
        """Every face that rejects one of ``absorbed_ids`` rejects ``target_id`` too (it took
        them in, by a merge or a recluster)."""
        self.reject_for_each({a: target_id for a in absorbed_ids})

    def reject_for_each(self, absorbed_by: dict[str, str]) -> None:
        """`reject_for` for many (absorbed -> target) at once, following a target absorbed in
        turn. A face answered "not the same" as an absorbed person (``not_same``) is answered
        so as the target too."""
        with self.errors():
            self._carry("rejected", lambda named: _taken_in_by(named, absorbed_by))
            self._carry("not_same", lambda named: sorted({absorbed_by[p] for p in named if p in absorbed_by}))

    def _carry(self, field: str, kept_of: Callable[[list[str]], list[str]]) -> None:
        """Add ``kept_of(named)`` to ``field`` of each face (nothing where it names no absorbed
        person): one read of the faces that have ``field`` (few: its sparse index holds them
        alone), then updates by id. The absorbed persons are matched here, not by ``$in``: the
        embedded server checks each face against the whole list (thousands of absorbed persons
        at the end of a large run: 51 s of a 97 s settle of 40,000 faces), and an update per
        absorbed person read every face, the square of the library."""
        ops = [
            UpdateOne({"_id": f["_id"]}, {"$addToSet": {field: {"$each": kept}}})
            for f in self.faces.find({field: {"$exists": True}}, {field: 1})
            if (kept := kept_of(f[field]))
        ]
        for start in range(0, len(ops), 1000):
            self.faces.bulk_write(ops[start : start + 1000], ordered=False)

    def add_not_same(self, face_ids: Sequence[str], person_id: str) -> None:
        """``face_ids`` were answered "not the same" as ``person_id``: they reject it."""
        wanted = list(face_ids)
        change = {"$addToSet": {"rejected": person_id, "not_same": person_id}}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                self.faces.update_many({"_id": {"$in": wanted[start : start + IN_BATCH]}}, change)

    def forget_rejections(self, face_ids: Sequence[str], person_ids: Sequence[str]) -> None:
        """``face_ids`` no longer reject any of ``person_ids`` (nor were answered "not the same")."""
        gone = {"$in": sorted(person_ids)}
        with self.errors():
            self.faces.update_many({"_id": {"$in": list(face_ids)}}, {"$pull": {"rejected": gone, "not_same": gone}})

    def restore_faces(self, faces: list[dict[str, Any]]) -> None:
        """Put faces back as they were, in the fields each face's document names: its person
        (through `set_persons`), ``locked``, ``rejected``, ``not_same``, ``ignored``,
        ``candidates`` (the persons an ambiguous face was between; entries older than it lack
        the field and leave it as it is)."""
        moves: dict[str | None, list[str]] = {}
        for f in faces:
            if "person_id" in f:
                moves.setdefault(f.get("person_id"), []).append(f["_id"])
        self.set_persons(moves)
        ops = []
        for f in faces:
            fields: dict[str, Any] = {k: bool(f[k]) for k in ("locked",) if k in f}
            fields.update({k: list(f[k] or []) for k in ("rejected", "not_same") if k in f})
            change: dict[str, Any] = {}
            gone: dict[str, str] = {}
            if f.get("ignored"):
                fields["ignored"] = True
            elif "ignored" in f:
                gone["ignored"] = ""
            if f.get("candidates"):
                fields["candidates"] = list(f["candidates"])
            elif "candidates" in f:
                gone["candidates"] = ""
            if gone:
                change["$unset"] = gone
            if fields:
                change["$set"] = fields
            if change:
                ops.append(UpdateOne({"_id": f["_id"]}, change))
        with self.errors():
            for start in range(0, len(ops), 1000):
                self.faces.bulk_write(ops[start : start + 1000], ordered=False)

    def faces_rejecting(self, person_ids: Sequence[str]) -> list[str]:
        """The faces that reject one of ``person_ids``."""
        with self.errors():
            return [d["_id"] for d in self.faces.find({"rejected": {"$in": sorted(person_ids)}}, {"_id": 1})]

    # --- pending changes (facepic.changes) --------------------------------------------------

    def store_change_part(self, change_id: str, n: int, body: str) -> None:
        with self.errors():
            self.change_part_docs.replace_one(
                {"_id": f"{change_id}:{n}"},
                {"change": change_id, "n": n, "body": body, "at": datetime.now(UTC)},
                upsert=True,
            )

    def store_change_head(self, head: dict[str, Any]) -> None:
        """The one write that makes a stored change pending."""
        with self.errors():
            self.changes.insert_one(head)

    def change_heads(self) -> list[dict[str, Any]]:
        with self.errors():
            return list(self.changes.find({}).sort("at", ASCENDING))

    def change_bodies(self, change_id: str, parts: int) -> list[str]:
        with self.errors():
            found = {d["n"]: d["body"] for d in self.change_part_docs.find({"change": change_id})}
        if sorted(found) != list(range(parts)):
            raise DatabaseError(f"the pending change {change_id} is missing parts (it cannot be finished)")
        return [found[n] for n in range(parts)]

    def drop_change(self, change_id: str) -> None:
        """The change is done: its head first (it is no longer pending), then its parts."""
        with self.errors():
            self.changes.delete_one({"_id": change_id})
            self.change_part_docs.delete_many({"change": change_id})

    def drop_orphan_change_parts(self, pending: set[str], older_than: datetime) -> None:
        """Parts of changes that never became pending (their maker died before the head)."""
        with self.errors():
            self.change_part_docs.delete_many({"change": {"$nin": sorted(pending)}, "at": {"$lt": older_than}})

    # --- the undo log (facepic.persons.undo_last) --------------------------------------------

    def log_correction(self, entry: dict[str, Any]) -> None:
        """Keep what a correction changes as it was before (ids sort by time); the oldest
        beyond UNDO_KEPT go. Its faces are stored in parts of UNDO_PART_FACES, before the
        entry itself, so an entry found is whole."""
        faces = entry["faces"]
        parts = [faces[i : i + base.UNDO_PART_FACES] for i in range(0, len(faces), base.UNDO_PART_FACES)]
        with self.errors():
            if len(parts) > 1:
                for n, part in enumerate(parts):
                    doc = {"_id": f"{entry['_id']}-{n:05d}", "entry": entry["_id"], "faces": part}
                    self.undo_parts.replace_one({"_id": doc["_id"]}, doc, upsert=True)
                entry = {**entry, "faces": [], "face_parts": len(parts)}
            self.undo_log.replace_one({"_id": entry["_id"]}, entry, upsert=True)
            old = [d["_id"] for d in self.undo_log.find({}, {"_id": 1}).sort("_id", -1).skip(UNDO_KEPT)]
            if old:
                self.undo_log.delete_many({"_id": {"$in": old}})
                self.undo_parts.delete_many({"entry": {"$in": old}})

    def last_correction(self) -> dict[str, Any] | None:
        """The latest correction not undone yet, its faces whole."""
        with self.errors():
            found = list(self.undo_log.find({"undone": {"$ne": True}}).sort("_id", -1).limit(1))
            if not found:
                return None
            entry = found[0]
            if entry.get("face_parts"):
                # Its parts' ids are the entry's and a number: a range of the _id index.
                ids = {"$gt": f"{entry['_id']}-", "$lt": f"{entry['_id']}."}
                parts = self.undo_parts.find({"_id": ids}).sort("_id", 1)
                entry["faces"] = [f for part in parts for f in part["faces"]]
        return entry

    def mark_undone(self, entry_id: str) -> None:
        with self.errors():
            self.undo_log.update_one({"_id": entry_id}, {"$set": {"undone": True}})


def _taken_in_by(rejected: Sequence[str], absorbed_by: dict[str, str]) -> list[str]:
    """The persons that took in those of ``rejected`` that were absorbed, following a person
    absorbed in turn (a -> b -> c gives b and c), not yet in ``rejected``."""
    taken: list[str] = []
    seen = set(rejected)
    todo = [p for p in rejected if p in absorbed_by]
    while todo:
        kept = absorbed_by[todo.pop()]
        if kept not in seen:
            seen.add(kept)
            taken.append(kept)
            if kept in absorbed_by:
                todo.append(kept)
    return sorted(taken)
