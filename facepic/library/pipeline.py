"""What the index stage writes: folders, photos, faces with their persons and sequence
numbers, the persons' counts and covers; and what it reads back to replay a photo."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, UpdateOne

from facepic.documents import new_person
from facepic.ledger import now_iso
from facepic.library.base import (
    IN_BATCH,
    LibraryBase,
)


class PipelineWrites(LibraryBase):
    """What the index stage writes: a room of `facepic.db.Library`."""

    def upsert_folders(self, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        with self.errors():
            self.folders.bulk_write(
                [UpdateOne({"_id": d["_id"]}, {"$setOnInsert": d}, upsert=True) for d in docs],
                ordered=False,
            )

    def upsert_images(self, docs: list[dict[str, Any]]) -> None:
        """Store photos' documents: inserted when new (the common case, and the cheaper write),
        else updated in place, keeping when they were first stored."""
        now = now_iso()
        with self.errors():
            self._insert_else(
                self.images,
                [{**d, "created_at": now, "updated_at": now} for d in docs],
                lambda d: UpdateOne(
                    {"_id": d["_id"]},
                    {"$set": {k: v for k, v in d.items() if k != "created_at"}, "$setOnInsert": {"created_at": now}},
                    upsert=True,
                ),
            )

    def set_image_fields(self, image_id: str, fields: dict[str, Any]) -> None:
        with self.errors():
            self.images.update_one({"_id": image_id}, {"$set": {**fields, "updated_at": now_iso()}})

    def image(self, image_id: str) -> dict[str, Any] | None:
        with self.errors():
            return self.images.find_one({"_id": image_id})

    def images_at(self, places: Sequence[tuple[str, str]], other_than: Sequence[str]) -> list[dict[str, Any]]:
        """The photos stored at these (root, path) places under an id not in ``other_than``:
        older versions of files whose content changed since."""
        # One root and a list of paths a read, on the (root, path) index: an $or of pairs with a
        # $nin made the embedded server scan every photo, for every batch the index stage stored
        # (0.9 s a batch at 2,000 photos, and growing with the library).
        by_root: dict[str, list[str]] = {}
        for root, path in places:
            by_root.setdefault(root, []).append(path)
        keep = set(other_than)
        found: list[dict[str, Any]] = []
        fields = {"root": 1, "path": 1, "sha256": 1, "keys": 1}
        with self.errors():
            for root, paths in sorted(by_root.items()):
                for start in range(0, len(paths), IN_BATCH):
                    query = {"root": root, "path": {"$in": paths[start : start + IN_BATCH]}}
                    found += (d for d in self.images.find(query, fields) if d["_id"] not in keep)
        return found

    def faces_of_images(self, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The faces of these photos, without embeddings."""
        with self.errors():
            return list(self.faces.find({"image_id": {"$in": list(image_ids)}}, {"embedding": 0}))

    def delete_images(self, image_ids: Sequence[str]) -> None:
        """Delete these photos and their faces; the faces first, so that a retry after a crash
        in between still finds the photo and finishes."""
        ids = list(image_ids)
        with self.errors():
            self.faces.delete_many({"image_id": {"$in": ids}})
            self.images.delete_many({"_id": {"$in": ids}})

    def upsert_faces(self, docs: list[dict[str, Any]], stored: Iterable[str] | None = None) -> None:
        """Store faces with their person and sequence number; a replay leaves a stored face's
        person and number alone. ``stored``: the ids of ``docs`` known to be stored already
        (the others are inserted, the cheaper write; None: any may be)."""
        if not docs:
            return

        def upsert(d: dict[str, Any]) -> UpdateOne:
            fields = {k: v for k, v in d.items() if k not in ("_id", "person_id", "seq")}
            return UpdateOne(
                {"_id": d["_id"]},
                {"$set": fields, "$setOnInsert": {"person_id": d.get("person_id"), "seq": d.get("seq")}},
                upsert=True,
            )

        with self.errors():
            if stored is None:
                self.faces.bulk_write([upsert(d) for d in docs], ordered=True)
                return
            known = set(stored)
            again = [upsert(d) for d in docs if d["_id"] in known]
            if again:
                self.faces.bulk_write(again, ordered=True)
            self._insert_else(self.faces, [d for d in docs if d["_id"] not in known], upsert)

    def set_person(
        self, face_ids: Sequence[str], person_id: str | None, update: dict[str, dict[str, Any]] | None = None
    ) -> None:
        """Put faces in a person (None: unassigned), with ``update``'s other changes."""
        self.set_persons({person_id: list(face_ids)}, update)

    def faces_of_image(self, image_id: str) -> list[dict[str, Any]]:
        with self.errors():
            return list(self.faces.find({"image_id": image_id}).sort("index", ASCENDING))

    def stored_persons(self, image_ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """The faces of these photos already stored (an earlier try), with their persons."""
        found: dict[str, dict[str, str | None]] = {}
        with self.errors():
            for i in range(0, len(image_ids), IN_BATCH):
                part = list(image_ids[i : i + IN_BATCH])
                for d in self.faces.find({"image_id": {"$in": part}}, {"image_id": 1, "person_id": 1}):
                    found.setdefault(d["image_id"], {})[d["_id"]] = d.get("person_id")
        return found

    def best_scores(self, person_ids: set[str]) -> dict[str, float]:
        """Cover quality of persons; a cover the user picked counts as unbeatable."""
        with self.errors():
            return {
                d["_id"]: math.inf if d.get("cover_locked") else float(d.get("best_score", -1.0))
                for d in self.persons.find({"_id": {"$in": sorted(person_ids)}}, {"best_score": 1, "cover_locked": 1})
            }

    def face_counts(self, person_ids: set[str]) -> dict[str, int]:
        """How many faces each of ``person_ids`` has (absent: none)."""
        with self.errors():
            return {
                d["_id"]: d["n"]
                for d in self.faces.aggregate(
                    [
                        {"$match": {"person_id": {"$in": sorted(person_ids)}}},
                        {"$group": {"_id": "$person_id", "n": {"$sum": 1}}},
                    ]
                )
            }

    def update_persons(
        self,
        model: str,
        founders: dict[str, str],
        covers: dict[str, dict[str, Any]],
        added: dict[str, int],
        recount: set[str],
    ) -> None:
        """Create new persons, set new covers, and count faces: ``added`` are faces inserted
        just now (counted by increment), ``recount`` persons whose faces a replayed photo
        touched (counted again from the faces, so that a replay cannot count twice)."""
        touched = set(added) | set(recount) | set(covers)
        if not touched:
            return
        counts = self.face_counts(recount) if recount else {}
        now = now_iso()
        ops: list[UpdateOne] = []
        bumps: dict[int, list[str]] = {}  # persons that only gain faces, by how many
        for pid in sorted(touched):
            fields: dict[str, Any] = {"updated_at": now}
            change: dict[str, Any] = {"$set": fields}
            if pid in recount:
                fields["face_count"] = counts.get(pid, 0)
            elif added.get(pid):
                if pid not in covers and pid not in founders:
                    bumps.setdefault(added[pid], []).append(pid)
                    continue
                change["$inc"] = {"face_count": added[pid]}
            if pid in covers:
                fields.update(
                    best_face_id=covers[pid]["_id"], best_score=covers[pid]["quality"]["value"], cover_uploaded=False
                )
            # A new person's fields, less those the count and cover set.
            change["$setOnInsert"] = {
                k: v for k, v in new_person(model, now, founders.get(pid)).items() if k not in fields
            }
            ops.append(UpdateOne({"_id": pid}, change, upsert=True))
        with self.errors():
            for n, pids in bumps.items():  # one write for all persons that gain n faces
                change = {"$inc": {"face_count": n}, "$set": {"updated_at": now}}
                if self.persons.update_many({"_id": {"$in": pids}}, change).matched_count < len(pids):
                    # A person gone meanwhile (merged, settled into another): made again, as an
                    # upsert would, so that no face points at nobody.
                    there = {d["_id"] for d in self.persons.find({"_id": {"$in": pids}}, {"_id": 1})}
                    again = {**change, "$setOnInsert": new_person(model, now, None)}
                    ops += [UpdateOne({"_id": pid}, again, upsert=True) for pid in sorted(set(pids) - there)]
            if ops:
                self.persons.bulk_write(ops, ordered=False)
        self._persons_changed(touched)

    def persons_without_uploaded_cover(self, person_ids: list[str]) -> list[str]:
        with self.errors():
            return [
                d["_id"]
                for d in self.persons.find(
                    {"_id": {"$in": list(person_ids)}, "cover_uploaded": {"$ne": True}}, {"_id": 1}
                )
            ]

    def mark_covers_uploaded(self, person_ids: list[str]) -> None:
        if person_ids:
            with self.errors():
                self.persons.update_many({"_id": {"$in": person_ids}}, {"$set": {"cover_uploaded": True}})
