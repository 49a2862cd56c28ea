"""Persons, faces and photos looked up by id, name or relation: what corrections, recluster,
the XMP import and export, and the reports read."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from pymongo import ASCENDING

from facepic.library.base import (
    IN_BATCH,
    LibraryBase,
)


class Lookups(LibraryBase):
    """Persons, faces and photos looked up by id, name or relation: a room of `facepic.db.Library`."""

    def person(self, person_id: str) -> dict[str, Any] | None:
        with self.errors():
            return self.persons.find_one({"_id": person_id})

    def persons_by_id(self, person_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of ``person_ids``, by id (``IN_BATCH`` ids a read)."""
        wanted = list(person_ids)
        out: dict[str, dict[str, Any]] = {}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                out.update((d["_id"], d) for d in self.persons.find({"_id": {"$in": wanted[start : start + IN_BATCH]}}))
        return out

    def persons_named(self, name: str, other_than: str | None = None) -> list[dict[str, Any]]:
        """Persons called ``name`` (case-insensitive), less ``other_than``."""
        query: dict[str, Any] = {"name": {"$ne": ""}}
        if other_than is not None:
            query["_id"] = {"$ne": other_than}
        with self.errors():
            return [d for d in self.persons.find(query) if d.get("name", "").lower() == name.lower()]

    def persons_with_prefix(self, prefix: str, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` persons (by id) whose id starts with ``prefix``."""
        with self.errors():
            return list(self.persons.find(self._id_prefix(prefix)).sort("_id", ASCENDING).limit(limit))

    def count_persons_with_prefix(self, prefix: str) -> int:
        with self.errors():
            return self.persons.count_documents(self._id_prefix(prefix))

    @staticmethod
    def _id_prefix(prefix: str) -> dict[str, Any]:
        return {"_id": {"$regex": "^" + re.escape(prefix)}}

    def images_of_faces(self, face_ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        with self.errors():
            for start in range(0, len(face_ids), IN_BATCH):
                part = list(face_ids[start : start + IN_BATCH])
                out.update(f["image_id"] for f in self.faces.find({"_id": {"$in": part}}, {"image_id": 1}))
        return out

    def faces_with_images(self, person_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The ids, persons and photos of the faces of ``person_ids``."""
        wanted = sorted(set(person_ids))
        out: list[dict[str, Any]] = []
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"person_id": {"$in": wanted[start : start + IN_BATCH]}}
                out += self.faces.find(query, {"_id": 1, "image_id": 1, "person_id": 1})
        return out

    def faces_to_name(self, face_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of ``face_ids`` with their photo, person and constraints, by id."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(face_ids)
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"_id": {"$in": wanted[start : start + IN_BATCH]}}
                projection = {"image_id": 1, "person_id": 1, "rejected": 1, "locked": 1}
                found.update((d["_id"], d) for d in self.faces.find(query, projection))
        return found

    def faces_to_correct(self, face_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of ``face_ids`` with what a correction changes and keeps, by id."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(face_ids)
        projection = {
            "image_id": 1,
            "person_id": 1,
            "rejected": 1,
            "not_same": 1,
            "locked": 1,
            "ignored": 1,
            "candidates": 1,
        }
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                found.update(
                    (d["_id"], d)
                    for d in self.faces.find({"_id": {"$in": wanted[start : start + IN_BATCH]}}, projection)
                )
        return found

    def person_faces_in_images(self, person_id: str, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The faces of ``person_id`` in these photos (id and photo)."""
        wanted = sorted(set(image_ids))
        out: list[dict[str, Any]] = []
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"person_id": person_id, "image_id": {"$in": wanted[start : start + IN_BATCH]}}
                out += self.faces.find(query, {"image_id": 1})
        return out

    def images_with_names_to_apply(self) -> list[dict[str, Any]]:
        """Photos whose imported (XMP) names are not yet applied: their ids and ``xmp_names``."""
        with self.errors():
            return list(self.images.find({"xmp_pending": True}, {"xmp_names": 1}).sort("_id", ASCENDING))

    def set_names_applied(self, image_ids: Sequence[str]) -> None:
        """The photos' imported names are applied (corrections now)."""
        with self.errors():
            for start in range(0, len(image_ids), IN_BATCH):
                part = list(image_ids[start : start + IN_BATCH])
                self.images.update_many({"_id": {"$in": part}}, {"$set": {"xmp_pending": False}})

    def images_with_named_faces(self) -> Iterator[dict[str, Any]]:
        """Photos with a face in a named person, or whose XMP sidecar FacePic wrote before
        (``xmp_exported``), with their faces: what `facepic xmp export` writes."""
        with self.errors():
            named = [d["_id"] for d in self.persons.find({"name": {"$nin": ["", None]}}, {"_id": 1})]
            image_ids: set[str] = set()
            for start in range(0, len(named), IN_BATCH):
                query = {"person_id": {"$in": named[start : start + IN_BATCH]}}
                image_ids.update(f["image_id"] for f in self.faces.find(query, {"image_id": 1}))
            image_ids.update(
                d["_id"] for d in self.images.find({"xmp_exported": {"$exists": True, "$ne": []}}, {"_id": 1})
            )
            ordered = sorted(image_ids)
            for start in range(0, len(ordered), IN_BATCH):
                yield from self.images.find({"_id": {"$in": ordered[start : start + IN_BATCH]}}).sort("_id", ASCENDING)

    def names_of_persons(self) -> dict[str, str]:
        """Every named person's name, by id."""
        with self.errors():
            return {d["_id"]: d["name"] for d in self.persons.find({"name": {"$nin": ["", None]}}, {"name": 1})}

    def user_locked_person_ids(self) -> set[str]:
        """Persons the user made or named: never deleted, split or merged away."""
        with self.errors():
            return {d["_id"] for d in self.persons.find({"user_locked": True}, {"_id": 1})}

    def person_count(self) -> int:
        with self.errors():
            return self.persons.count_documents({})

    def recurring_person_count(self) -> int:
        """Persons of two faces or more (settling's floor follows them)."""
        with self.errors():
            return self.persons.count_documents({"face_count": {"$gte": 2}})

    def all_persons(self) -> Iterator[dict[str, Any]]:
        with self.errors():
            yield from self.persons.find({})

    def face(self, face_id: str) -> dict[str, Any] | None:
        """A face without its embedding."""
        with self.errors():
            return self.faces.find_one({"_id": face_id}, {"embedding": 0})

    def person_face_in_image(self, image_id: str, person_id: str, other_than: str) -> dict[str, Any] | None:
        """A face of ``person_id`` in the photo, other than the face ``other_than``."""
        with self.errors():
            return self.faces.find_one({"image_id": image_id, "person_id": person_id, "_id": {"$ne": other_than}})

    def faces_for_merge(self, target_id: str, source_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The sources' faces, and those of the target that reject the target or a source."""
        one = sorted({target_id, *source_ids})
        with self.errors():
            return list(
                self.faces.find(
                    {
                        "$or": [
                            {"person_id": {"$in": list(source_ids)}},
                            {"person_id": target_id, "rejected": {"$in": one}},
                        ]
                    },
                    {"image_id": 1, "rejected": 1, "not_same": 1, "locked": 1, "person_id": 1},
                )
            )

    def faces_of_model(self, model: str) -> Iterator[dict[str, Any]]:
        """Every face of ``model`` by id, without landmarks and box (what recluster reads); not
        those the user called not a face."""
        with self.errors():
            for d in self.faces.find({"model": model}, {"landmarks": 0, "box": 0}).sort("_id", ASCENDING):
                if not d.get("ignored"):
                    yield d

    def assigned_faces(self) -> Iterator[dict[str, Any]]:
        """Every face in a person: its photo, person, box and score (what `facepic persons`
        lists). Every face is read and those of nobody left out here: the embedded server
        reads them all for ``person_id: {$ne: null}`` too, and more slowly (1.7 s against 1.35
        for 37,000 faces)."""
        with self.errors():
            for d in self.faces.find({}, {"image_id": 1, "person_id": 1, "box": 1, "score": 1}):
                if d.get("person_id") is not None:
                    yield d

    def image_places(self) -> dict[str, dict[str, Any]]:
        """Every photo's path and import root, by id."""
        with self.errors():
            return {d["_id"]: d for d in self.images.find({}, {"path": 1, "root": 1})}
