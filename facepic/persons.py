"""Changing persons: the user's corrections, and `recluster`, on the library.

Every function here is what a CLI command (and later a UI) calls. Corrections are stored as
constraints that every later step respects:

- a named or merged person is ``user_locked``: never deleted, split or merged away;
- a face the user moved is ``locked`` where they put it;
- ``rejected`` on a face lists persons it must never join again;
- ``cover_locked`` on a person keeps the cover the user picked;
- ``hidden`` persons still take their faces (so they do not come back as new persons), but
  listings leave them out.

Each change bumps the library's revision, so the index worker reloads its persons within
seconds; ``images.faces`` (the redundant copy) is rewritten for every photo touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from facepic import clustering, documents, ids, storage
from facepic.db import Library
from facepic.detect import EMBEDDING_DIM
from facepic.documents import embeddings_from_bson
from facepic.errors import FacePicError
from facepic.ledger import now_iso
from facepic.matching import Rules
from facepic.report import counted

if TYPE_CHECKING:  # the pipeline's index stage uses this module: no import back
    from facepic.pipeline.context import Context


class PersonError(FacePicError):
    """A correction that cannot be made: the message says why, for the user."""


@dataclass
class ReclusterSummary:
    persons_before: int = 0
    persons_after: int = 0
    faces_moved: int = 0
    persons_created: int = 0
    persons_deleted: int = 0
    faces_assigned: int = 0  # unassigned before, a person now


# --- looking things up ---------------------------------------------------------------


LISTED = 20  # candidates an ambiguous reference lists


def _candidates(docs: list[dict[str, Any]], total: int) -> str:
    """One line per candidate person (id, name, face count), for an ambiguous reference."""
    lines = [
        f"  {d['_id']}  {d.get('name') or '(unnamed)'}  {counted(d.get('face_count', 0), 'face')}"
        for d in sorted(docs, key=lambda d: d["_id"])[:LISTED]
    ]
    if total > LISTED:
        lines.append(f"  ... and {total - LISTED} more")
    return "\n".join(lines)


def find_person(lib: Library, ref: str) -> dict[str, Any]:
    """A person by id, unique id prefix (4 characters or more), or name (case-insensitive).
    An ambiguous name or prefix is refused with the candidates listed."""
    doc = lib.person(ref)
    if doc:
        return doc
    named = lib.persons_named(ref)
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise PersonError(f"{len(named)} persons are named {ref!r} (give an id):\n" + _candidates(named, len(named)))
    prefixed = lib.persons_with_prefix(ref, LISTED) if len(ref) >= 4 else []
    total = lib.count_persons_with_prefix(ref) if len(prefixed) > 1 else len(prefixed)
    if total == 1:
        return prefixed[0]
    if total > 1:
        raise PersonError(
            f"{total} persons have ids starting {ref!r} (give more of the id):\n" + _candidates(prefixed, total)
        )
    raise PersonError(f"no person {ref!r} (give an id from `facepic persons`, or a name)")


def others_named(lib: Library, name: str, person_id: str) -> list[str]:
    """The ids of the other persons called ``name`` (case-insensitive)."""
    return sorted(d["_id"] for d in lib.persons_named(name.strip(), other_than=person_id))


def find_face(lib: Library, face_id: str) -> dict[str, Any]:
    doc = lib.face(face_id)
    if doc is None:
        raise PersonError(f"no face {face_id!r} (face ids are listed by `facepic persons --json`)")
    return doc


# --- keeping derived data right ---------------------------------------------------------


def bump_revision(lib: Library) -> None:
    lib.bump_revision()


def refresh_images(lib: Library, image_ids: Iterable[str]) -> None:
    """Rewrite the redundant face list of each photo from the faces collection."""
    lib.refresh_image_faces(image_ids)


class Covers:
    """Local cover files and their objects in the bucket (only the local files when uploads
    are off), at the paths the pipeline uses."""

    def __init__(self, ctx: Context) -> None:
        self.crop = ctx.folder.face_crop
        self.cover = ctx.folder.cover
        self.store: storage.ObjectStore | None = ctx.store if ctx.settings.stores_originals else None

    def set(self, lib: Library, person_id: str, face_id: str) -> None:
        src, dst = self.crop(face_id), self.cover(person_id)
        uploaded = False
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            if self.store is not None:
                self.store.put_file(storage.person_key(person_id), dst, "image/jpeg")
                uploaded = True
        lib.set_person_fields(person_id, {"cover_uploaded": uploaded})

    def remove(self, person_id: str) -> None:
        self.cover(person_id).unlink(missing_ok=True)
        if self.store is not None:
            self.store.delete_keys([storage.person_key(person_id)])


def settle(lib: Library, person_ids: Iterable[str], covers: Covers) -> tuple[int, int]:
    """Recount the faces of ``person_ids``; delete those left empty unless the user made
    them; choose covers again (best quality) unless the user picked one. Returns (created,
    deleted) persons."""
    wanted = sorted({p for p in person_ids if p})
    if not wanted:
        return 0, 0
    created = deleted = 0
    counts = lib.face_counts(set(wanted))
    existing = lib.persons_by_id(wanted)
    model = lib.library_model()
    for pid in wanted:
        doc = existing.get(pid)
        n = counts.get(pid, 0)
        if n == 0 and not (doc and doc.get("user_locked")):
            if doc:
                lib.delete_person(pid)
                covers.remove(pid)
                deleted += 1
            continue
        if doc is None:
            created += 1
            doc = documents.new_person(model, now_iso())
            lib.new_person_if_missing(pid, doc)
        lib.set_person_fields(pid, {"face_count": n, "updated_at": now_iso()})
        if doc.get("cover_locked") and doc.get("best_face_id"):
            if lib.face_in_person(doc["best_face_id"], pid):
                continue
            lib.set_person_fields(pid, {"cover_locked": False})
        best = _best_face(lib, pid)
        if best is None:
            lib.set_person_fields(pid, {"best_face_id": None, "best_score": -1.0})
            covers.remove(pid)
        elif best["_id"] != doc.get("best_face_id"):
            lib.set_person_fields(pid, {"best_face_id": best["_id"], "best_score": _quality(best)})
            covers.set(lib, pid, best["_id"])
    return created, deleted


def _quality(face: dict[str, Any]) -> float:
    return float((face.get("quality") or {}).get("value", face.get("score", 0.0)))


def _best_face(lib: Library, person_id: str) -> dict[str, Any] | None:
    faces = lib.face_qualities(person_id)
    return max(faces, key=lambda f: (_quality(f), f["_id"])) if faces else None


# --- corrections -------------------------------------------------------------------------


def name_person(lib: Library, ref: str, name: str) -> dict[str, Any]:
    person = find_person(lib, ref)
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise PersonError("a name is 1 to 200 printable characters")
    lib.set_person_fields(person["_id"], {"name": name, "user_locked": True, "updated_at": now_iso()})
    bump_revision(lib)
    return {**person, "name": name}


def hide_person(lib: Library, ref: str, hidden: bool = True) -> dict[str, Any]:
    person = find_person(lib, ref)
    lib.set_person_fields(person["_id"], {"hidden": hidden, "updated_at": now_iso()})
    bump_revision(lib)
    return person


def merge_persons(lib: Library, target_ref: str, source_refs: list[str], covers: Covers) -> dict[str, Any]:
    """Every face of the sources joins the target; the sources are gone, the target is the
    user's (never split or merged away later). A face that rejected any of them leaves, unless
    the user placed it (a move): their placement and this merge are their latest word."""
    target = find_person(lib, target_ref)
    sources = [find_person(lib, r) for r in source_refs]
    if any(s["_id"] == target["_id"] for s in sources):
        raise PersonError("a person cannot be merged into itself")
    source_ids = [s["_id"] for s in sources]
    one = {target["_id"], *source_ids}
    # The sources' faces, and those of the target's that reject one of them.
    faces = lib.faces_for_merge(target["_id"], source_ids)
    clash = [f for f in faces if one & set(f.get("rejected") or [])]
    out = {f["_id"] for f in clash if not f.get("locked")}
    moving = [f for f in faces if f["person_id"] != target["_id"] and f["_id"] not in out]
    lib.set_person([f["_id"] for f in moving], target["_id"])
    lib.set_person(sorted(out), None, {"$set": {"locked": False}})
    lib.forget_rejections(sorted(f["_id"] for f in clash if f.get("locked")), sorted(one))
    # A face that had rejected a source must not meet it again under the target's name:
    # the target absorbed the source, so rejecting the source means rejecting the target.
    lib.reject_for(source_ids, target["_id"])
    name = target.get("name") or next((s.get("name") for s in sources if s.get("name")), "")
    lib.set_person_fields(target["_id"], {"user_locked": True, "name": name, "updated_at": now_iso()})
    lib.set_persons_fields(source_ids, {"user_locked": False})
    settle(lib, [target["_id"], *source_ids], covers)
    refresh_images(lib, [f["image_id"] for f in faces])
    bump_revision(lib)
    return {**target, "name": name}


def move_face(lib: Library, face_id: str, target_ref: str | None, covers: Covers) -> str:
    """Put a face in a person (``None``: a new person of its own); it stays there, and never
    joins the person it left again (unless moved back). Returns the person's id."""
    face = find_face(lib, face_id)
    old = face.get("person_id")
    if target_ref is None:
        target_id = ids.person_id(face_id + ":moved")
    else:
        target_id = find_person(lib, target_ref)["_id"]
    if target_id == old:
        raise PersonError(f"face {face_id} is already in person {old}")
    clash = lib.person_face_in_image(face["image_id"], target_id, other_than=face_id)
    if clash:
        raise PersonError(f"person {target_id} already has a face in this photo ({clash['_id']})")
    # Moving a face out of a person says it is not that person, as a reject does: without it
    # recluster would fold the rest of the old person into the new one (or the target).
    rejected = [r for r in face.get("rejected") or [] if r != target_id]
    if old and old not in rejected:
        rejected.append(old)
    lib.set_person([face_id], target_id, {"$set": {"locked": True, "rejected": rejected}, "$unset": {"candidates": ""}})
    settle(lib, [target_id, old] if old else [target_id], covers)
    if target_ref is None:
        lib.set_person_fields(target_id, {"user_locked": True})
    refresh_images(lib, [face["image_id"]])
    bump_revision(lib)
    return target_id


def reject_face(lib: Library, face_id: str, covers: Covers) -> str:
    """ "Not this person": the face leaves its person and never joins it again. It waits
    unassigned until `recluster` finds where it belongs. Returns the person it left."""
    face = find_face(lib, face_id)
    old = face.get("person_id")
    if not old:
        raise PersonError(f"face {face_id} has no person")
    lib.set_person([face_id], None, {"$set": {"locked": False}, "$addToSet": {"rejected": old}})
    settle(lib, [old], covers)
    refresh_images(lib, [face["image_id"]])
    bump_revision(lib)
    return old


def pick_cover(lib: Library, ref: str, face_id: str, covers: Covers) -> None:
    person = find_person(lib, ref)
    face = find_face(lib, face_id)
    if face.get("person_id") != person["_id"]:
        raise PersonError(f"face {face_id} is not a face of person {person['_id']}")
    lib.set_person_fields(
        person["_id"],
        {"best_face_id": face_id, "best_score": _quality(face), "cover_locked": True, "updated_at": now_iso()},
    )
    covers.set(lib, person["_id"], face_id)
    bump_revision(lib)


# --- recluster ------------------------------------------------------------------------------


def recluster_library(lib: Library, rules: Rules, covers: Covers) -> ReclusterSummary:
    """Run `facepic.clustering.recluster` over the library's faces and write the result."""
    model = lib.library_model()
    summary = ReclusterSummary()
    if model is None:
        return summary
    face_ids: list[str] = []
    rows: list[bytes] = []
    person: list[str | None] = []
    photo: list[str] = []
    locked: list[bool] = []
    rejected: list[frozenset[str]] = []
    can_found: list[bool] = []
    for doc in lib.faces_of_model(model):
        face_ids.append(doc["_id"])
        rows.append(bytes(doc["embedding"]))
        person.append(doc.get("person_id"))
        photo.append(doc["image_id"])
        locked.append(bool(doc.get("locked")))
        rejected.append(frozenset(doc.get("rejected") or ()))
        can_found.append(bool(doc.get("can_found", True)))
    locked_persons = lib.user_locked_person_ids()
    summary.persons_before = lib.person_count()
    if not face_ids:
        return summary
    embeddings = embeddings_from_bson(rows, EMBEDDING_DIM)
    faces = clustering.Faces(face_ids, embeddings, person, photo, locked, rejected, can_found)

    def new_id(face_id: str, taken: set[str]) -> str:
        n = 0
        while True:
            pid = ids.person_id(f"{face_id}:recluster:{n}")
            if pid not in taken:
                return pid
            n += 1

    merged_into: dict[str, str] = {}
    result = clustering.recluster(faces, locked_persons, rules, new_id, merged_into)
    # As after a user's merge: a face rejected from a person merged away rejects the person
    # that absorbed it, so that new photos, re-runs and the next recluster keep it out too.
    for gone, kept in sorted(merged_into.items()):
        lib.reject_for([gone], kept)
    changed = [i for i in range(len(face_ids)) if result[i] != person[i]]
    touched: set[str] = set()
    joining: dict[str | None, list[str]] = {}
    for i in changed:
        joining.setdefault(result[i], []).append(face_ids[i])
    for pid, moved in joining.items():
        lib.set_person(moved, pid, {"$unset": {"candidates": ""}} if pid is not None else None)
    for i in changed:
        touched.update(p for p in (person[i], result[i]) if p)
    summary.faces_moved = sum(1 for i in changed if person[i] is not None and result[i] is not None)
    summary.faces_assigned = sum(1 for i in changed if person[i] is None)
    summary.persons_created, summary.persons_deleted = settle(lib, touched, covers)
    refresh_images(lib, {photo[i] for i in changed})
    summary.persons_after = lib.person_count()
    bump_revision(lib)
    return summary
