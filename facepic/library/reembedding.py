"""Changing the model (facepic.reembed): faces staged for the new model, then switched."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, UpdateOne

from facepic.ledger import now_iso
from facepic.library.base import (
    LibraryBase,
)


class Reembedding(LibraryBase):
    """Changing the model (facepic.reembed): a room of `facepic.db.Library`."""

    def images_pending_reembed(self, model: str) -> list[dict[str, Any]]:
        """Photos not staged for ``model`` yet, by id."""
        with self.errors():
            return list(self.images.find({"reembed": {"$ne": model}}).sort("_id", ASCENDING))

    def face_boxes(self, image_id: str) -> list[dict[str, Any]]:
        """The photo's faces (id, box, index) in index order."""
        with self.errors():
            return list(self.faces.find({"image_id": image_id}, {"box": 1, "index": 1}).sort("index", ASCENDING))

    def stage_reembedding(
        self, image_id: str, model: str, staged: dict[str, dict[str, Any] | None], new_faces: list[dict[str, Any]]
    ) -> None:
        """Stage ``model``'s fields on the photo's faces (None: it does not find that face) and
        its new faces in `faces_next`; then mark the photo staged."""
        with self.errors():
            if staged:
                self.faces.bulk_write(
                    [UpdateOne({"_id": fid}, {"$set": {"next": fields}}) for fid, fields in staged.items()],
                    ordered=False,
                )
            for doc in new_faces:
                self.db["faces_next"].replace_one({"_id": doc["_id"]}, doc, upsert=True)
            self.images.update_one({"_id": image_id}, {"$set": {"reembed": model}})

    def switch_model(self, model: str, old_model: str | None) -> set[str]:
        """Make the staged faces the library's and ``model`` its model; the ids of the photos
        whose faces changed."""
        with self.errors():
            staged = list(self.faces.find({"next": {"$exists": True}}, {"next": 1, "image_id": 1}))
            ops = []
            for face in staged:
                nxt = face["next"]
                if nxt is None:  # the new model does not find it: keep its person, stop comparing it
                    ops.append(UpdateOne({"_id": face["_id"]}, {"$unset": {"next": ""}}))
                else:
                    ops.append(UpdateOne({"_id": face["_id"]}, {"$set": nxt, "$unset": {"next": "", "candidates": ""}}))
            for start in range(0, len(ops), 1000):
                self.faces.bulk_write(ops[start : start + 1000], ordered=False)
            extra = list(self.db["faces_next"].find({}))
            for doc in extra:
                self.faces.update_one({"_id": doc["_id"]}, {"$setOnInsert": {**doc, "person_id": None}}, upsert=True)
            self.meta.update_one(
                {"_id": "library"}, {"$set": {"model": model, "model_before": old_model, "reembedded_at": now_iso()}}
            )
            self.persons.update_many({}, {"$set": {"model": model}})
            self.images.update_many({}, {"$set": {"model": model}})
            self.db["faces_next"].drop()
            everyone = [d["_id"] for d in self.persons.find({}, {"_id": 1})]
        self._persons_changed(everyone)  # every person's faces have new embeddings
        return {f["image_id"] for f in staged} | {d["image_id"] for d in extra}
