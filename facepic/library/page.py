"""The web page's reads (facepic.web): pages of persons, faces and photos, and the persons'
changes the page follows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from facepic.documents import photo_date
from facepic.library.base import (
    IN_BATCH,
    LibraryBase,
)


class PageReads(LibraryBase):
    """The web page's reads (facepic.web): a room of `facepic.db.Library`."""

    def persons_changes(self) -> dict[str, Any]:
        """The persons' version, changed whenever a person is created, changed or deleted, and
        the last CHANGES_KEPT changes (``version``, ``ids``: the persons it touched, None for
        more than CHANGES_LISTED): the page reads only those persons again (``web.roster``)."""
        with self.errors():
            doc = self.meta.find_one({"_id": "persons"}, {"version": 1, "log": 1})
        return {"version": str((doc or {}).get("version") or ""), "log": list((doc or {}).get("log") or [])}

    def web_person_keys(self, person_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The sort and filter keys (name, face count, last change, hidden) of every person, or
        of those of ``person_ids`` that are stored (``IN_BATCH`` ids a read)."""
        return self._persons_with({"name": 1, "face_count": 1, "updated_at": 1, "hidden": 1}, person_ids)

    def suggestion_persons(self, person_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """What "same person?" suggestions need of every person (or of those of ``person_ids``
        that are stored): name and hidden."""
        return self._persons_with({"name": 1, "hidden": 1}, person_ids)

    def _persons_with(self, fields: dict[str, int], person_ids: Sequence[str] | None) -> list[dict[str, Any]]:
        """``fields`` of every person, or of those of ``person_ids`` that are stored (``IN_BATCH``
        ids a read)."""
        with self.errors():
            if person_ids is None:
                return list(self.persons.find({}, fields))
            wanted = sorted(set(person_ids))
            return [
                d
                for i in range(0, len(wanted), IN_BATCH)
                for d in self.persons.find({"_id": {"$in": wanted[i : i + IN_BATCH]}}, fields)
            ]

    def suggestion_faces(self, person_ids: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """The person, photo, rejections and embedding of every face in a person (or in one of
        ``person_ids``)."""
        fields = {"person_id": 1, "image_id": 1, "rejected": 1, "embedding": 1}
        with self.errors():
            if person_ids is None:
                yield from self.faces.find({"person_id": {"$ne": None}}, fields, batch_size=10_000)
                return
            wanted = sorted(set(person_ids))
            for i in range(0, len(wanted), IN_BATCH):
                yield from self.faces.find({"person_id": {"$in": wanted[i : i + IN_BATCH]}}, fields)

    def web_person(self, person_id: str) -> dict[str, Any] | None:
        with self.errors():
            return self.persons.find_one({"_id": person_id})

    def web_persons_by_id(self, person_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted({p for p in person_ids if p})
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                for doc in self.persons.find(
                    {"_id": {"$in": wanted[i : i + IN_BATCH]}},
                    {"name": 1, "face_count": 1, "hidden": 1, "best_face_id": 1},
                ):
                    found[doc["_id"]] = doc
        return found

    def web_face_photos(self, person_id: str) -> list[dict[str, Any]]:
        """Every face of a person: its id and its photo's, nothing more (to order them by date)."""
        with self.errors():
            return list(self.faces.find({"person_id": person_id}, {"image_id": 1}))

    def web_photo_dates(self, image_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The photos' ``taken_at``, ``file_time`` and ``path``, by id."""
        wanted = sorted(set(image_ids))
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                for doc in self.images.find(
                    {"_id": {"$in": wanted[i : i + IN_BATCH]}}, {"taken_at": 1, "file_time": 1, "path": 1}
                ):
                    found[doc["_id"]] = doc
        return found

    def web_faces(self, face_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The faces (without embeddings) in the order given; those not stored left out."""
        wanted = sorted(set(face_ids))
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                query = {"_id": {"$in": wanted[i : i + IN_BATCH]}}
                found.update((d["_id"], d) for d in self.faces.find(query, {"embedding": 0, "landmarks": 0}))
        return [found[f] for f in face_ids if f in found]

    def web_unassigned(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the faces that belong to nobody, ambiguous ones (with candidates) first."""
        # Their ids and candidates in one read, counted and ordered here, then the page's
        # faces by id: the embedded server counted, then sorted, every whole face (with its
        # embedding) again for each page (260 ms for 2,000 faces; this takes 70).
        rows = list(self.unassigned({"candidates": 1, "ignored": 1}))
        rows.sort(key=lambda d: d["_id"])
        rows.sort(key=lambda d: max((c for c in d.get("candidates") or [] if c), default=""), reverse=True)
        return self.web_faces([d["_id"] for d in rows[skip : skip + limit]]), len(rows)

    def web_images(self, image_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted(set(image_ids))
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                for doc in self.images.find({"_id": {"$in": wanted[i : i + IN_BATCH]}}, {"faces": 0}):
                    found[doc["_id"]] = doc
        return found

    def web_photos_with(
        self,
        person_ids: Sequence[str],
        skip: int,
        limit: int,
        since: str | None = None,
        until: str | None = None,
        folder: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the photos holding every one of ``person_ids``, newest first, and how many;
        only those dated (``photo_date``: taken, else the file's time) from ``since`` through
        ``until`` (YYYY-MM-DD), and under ``folder`` (a path relative to the import root)."""
        # Each person's photos from the faces, intersected here: the embedded database
        # (SecantusDB) uses an index only for a lone equality, and scanned every photo for
        # an $and of two (400 ms at 21,000 photos; this takes a few).
        common: set[str] | None = None
        with self.errors():
            for pid in sorted(set(person_ids)):
                mine = {f["image_id"] for f in self.faces.find({"person_id": pid}, {"image_id": 1})}
                common = mine if common is None else common & mine
                if not common:
                    return [], 0
        prefix = (folder or "").strip("/")
        keyed = []
        for image_id, doc in self.web_photo_dates(sorted(common or ())).items():
            date = (photo_date(doc)[0] or "")[:10]
            path = doc.get("path") or ""
            if since and not (date and date >= since):
                continue
            if until and not (date and date <= until):
                continue
            if prefix and not path.startswith(prefix + "/"):
                continue
            keyed.append((date, path, image_id))
        keyed.sort(key=lambda k: (k[1], k[2]))
        keyed.sort(key=lambda k: k[0], reverse=True)  # stable: one date's photos stay by path
        page = [k[2] for k in keyed[skip : skip + limit]]
        found = self.web_images(page)
        return [found[i] for i in page if i in found], len(keyed)
