"""A file whose content changed at the same path: its new version replaces the old one.

The index stage calls ``retire`` before it stores a batch of photos: any photo the database
holds at one of their (root, path) places under another id (other content) is an older
version of that file. Its faces leave their persons (recounted, and deleted when left empty
unless the user made them), then it and its faces are deleted with their thumbnails, crops
and bucket objects; the user's corrections on those faces go with them, and the new version
says so (``note``). So one file is never stored twice.

A file at a new path with the same content as a photo already done stays a duplicate (the
planner's rule): the content is what is stored, once, wherever it lies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from facepic import storage
from facepic.changes import Change
from facepic.derived import Covers
from facepic.report import counted

if TYPE_CHECKING:  # the index stage imports this module: no import back
    from facepic.context import Context
    from facepic.pipeline.job import Replaced

logger = logging.getLogger(__name__)


def retire(ctx: Context, places: Sequence[tuple[str, str]], keep: Sequence[str]) -> dict[tuple[str, str], Replaced]:
    """Remove the photos stored at ``places`` (root, path) under ids not in ``keep``; returns
    what was removed, by place."""
    lib = ctx.library
    old = lib.images_at(places, keep)
    if not old:
        return {}
    old_ids = [doc["_id"] for doc in old]
    faces = lib.faces_of_images(old_ids)
    persons = {f["person_id"] for f in faces if f.get("person_id")}
    # Noted as leaving their persons before they go, so a start from the face snapshot
    # does not count them in those persons again.
    # One change, all or nothing: a crash midway is finished by the next process to open the
    # library (facepic.changes).
    change = Change("replace")
    change.set_person([f["_id"] for f in faces], None)
    change.delete_images(old_ids)
    change.touch(persons)
    change.commit(lib, Covers(ctx))
    ctx.forget_library()  # this process's matcher still holds the faces
    _remove_files(ctx, old, faces)
    replaced: dict[tuple[str, str], Replaced] = {}
    for doc in old:
        mine = [f for f in faces if f["image_id"] == doc["_id"]]
        replaced[(doc["root"], doc["path"])] = {
            "image_id": doc["_id"],
            "sha256": doc.get("sha256", ""),
            "faces": len(mine),
            "corrected": sum(1 for f in mine if f.get("locked") or f.get("rejected")),
        }
        logger.info("%s", note(doc["path"], replaced[(doc["root"], doc["path"])]))
    return replaced


def retire_one(ctx: Context, root: str, path: str) -> Replaced | None:
    """Remove the photo stored at ``path`` (its file now holds a duplicate of another photo)."""
    return retire(ctx, [(root, path)], []).get((root, path))


def _remove_files(ctx: Context, old: list[dict[str, Any]], faces: list[dict[str, Any]]) -> None:
    """The old versions' thumbnails and crops in the data folder, and their bucket objects."""
    for doc in old:
        ctx.folder.thumbnail(doc["_id"]).unlink(missing_ok=True)
    for face in faces:
        ctx.folder.face_crop(face["_id"]).unlink(missing_ok=True)
    keys = [k for doc in old for k in (doc.get("keys") or {}).values() if isinstance(k, str)]
    if keys and ctx.settings.stores_originals:
        ctx.store.delete_keys([k for k in keys if storage.is_facepic_key(k)])


def note(path: str, replaced: Replaced) -> str:
    """The one line that tells the user a photo's old version was replaced."""
    line = f"note: {path} changed since it was imported: its old version ({counted(replaced['faces'], 'face')}) was replaced"
    if replaced["corrected"]:
        line += f", and your corrections of {replaced['corrected']:,} of them were dropped"
    return line
