"""The library's counts for `facepic status`, its object keys and `drop_all` for
`facepic cleanup`, and the whole-library reads of `facepic check`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from facepic import storage as storage_keys
from facepic.library.base import (
    COLLECTIONS,
    IN_BATCH,
    LibraryBase,
)


class Upkeep(LibraryBase):
    """Counts, check and cleanup: a room of `facepic.db.Library`."""

    def counts(self) -> dict[str, int]:
        with self.errors():
            return {
                "images": self.images.estimated_document_count(),
                "faces": self.faces.estimated_document_count(),
                "persons": self.persons.estimated_document_count(),
                "folders": self.folders.estimated_document_count(),
            }

    def drop_all(self) -> None:
        """Drop every collection FacePic makes (staged re-embedding data included), and no other."""
        with self.errors():
            for name in COLLECTIONS:
                self.db[name].drop()

    def images_to_reembed(self, model: str) -> int:
        """Photos not staged for ``model`` yet."""
        with self.errors():
            return self.images.count_documents({"reembed": {"$ne": model}})

    def staged_faces(self) -> int:
        """Faces staged by `reembed --no-switch` and not switched yet."""
        with self.errors():
            return self.db["faces_next"].estimated_document_count() + self.faces.count_documents(
                {"next": {"$exists": True}}
            )

    def object_keys(self) -> set[str]:
        """Every bucket key this library recorded: originals, thumbnails, person covers."""
        keys: set[str] = set()
        with self.errors():
            for doc in self.images.find({"keys": {"$ne": None}}, {"keys": 1}):
                keys.update(v for v in (doc.get("keys") or {}).values() if isinstance(v, str))
            for doc in self.persons.find({}, {"_id": 1}):
                keys.add(storage_keys.person_key(doc["_id"]))
        return keys

    # --- facepic check ---------------------------------------------------------------------

    def faces_for_check(self) -> Iterator[dict[str, Any]]:
        """Every face's links and order, without embedding, box or landmarks."""
        with self.errors():
            yield from self.faces.find({}, {"person_id": 1, "image_id": 1, "index": 1, "box": 1, "score": 1})

    def images_for_check(self) -> Iterator[dict[str, Any]]:
        """Every photo's path, model and face list."""
        with self.errors():
            yield from self.images.find({}, {"path": 1, "root": 1, "model": 1, "faces": 1})

    def delete_faces(self, face_ids: Sequence[str]) -> None:
        with self.errors():
            for start in range(0, len(face_ids), IN_BATCH):
                self.faces.delete_many({"_id": {"$in": list(face_ids[start : start + IN_BATCH])}})
