"""What follows from the faces: each person's face count and cover, each photo's list of its
faces. Faces are the source of truth; these fields are derived from them here, in bulk, by
settling, corrections, pending changes (`facepic.changes`) and `facepic check --repair`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from facepic import documents, storage
from facepic.datafolder import same_file_atomically
from facepic.db import Library
from facepic.ledger import now_iso
from facepic.library.corrections import ASKED_ALONE

if TYPE_CHECKING:  # the pipeline imports this module: no import back at run time
    from facepic.context import Context


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

    def place(self, person_id: str, face_id: str) -> bool:
        """The face's crop as the person's cover file (and object); whether it is in the bucket."""
        src, dst = self.crop(face_id), self.cover(person_id)
        if not src.exists():
            return False
        same_file_atomically(src, dst)
        if self.store is None:
            return False
        self.store.put_file(storage.person_key(person_id), dst, "image/jpeg")
        return True

    def remove(self, person_id: str) -> None:
        self.remove_many([person_id])

    def remove_many(self, person_ids: list[str]) -> None:
        for pid in person_ids:
            self.cover(pid).unlink(missing_ok=True)
        if self.store is not None and person_ids:
            self.store.delete_keys([storage.person_key(pid) for pid in person_ids])


# A person of this many faces or more is counted from a change's moves where it can be: reading
# all of its faces at each settle of a run made each settle cost more than the last (the size
# from which a settle also asks alone whether it has faces outside its batch).
COUNTED_FROM_MOVES = ASKED_ALONE


def recount(
    lib: Library,
    person_ids: Iterable[str],
    covers: Covers | None,
    place_all: bool = False,
    moved: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, int]:
    """Recount the faces of ``person_ids``; delete those left empty unless the user made
    them; choose covers again (best quality) unless the user picked one, and place the cover
    file where ``cover_of`` (the face the file was cut from) says it is another face. Returns
    (created, deleted) persons. ``place_all``: also place cover files that are missing.
    ``moved``: for some persons, the faces that joined and left them in the change, and the
    count and time of their document before it (`counted_moves`): each is counted from them
    with a compare and set, read whole only where its document is no longer what the change
    saw (a replay, another writer) or its cover left it. Reads and writes in bulk: a few round
    trips per hundred persons, whatever their number."""
    wanted = sorted({p for p in person_ids if p})
    if not wanted:
        return 0, 0
    existing = lib.persons_by_id(wanted)
    plan = _Recount(lib.library_model(), now_iso())
    counted = _count_moves(lib, existing, moved or {}, plan) if moved else set()
    faces = lib.faces_by_person([p for p in wanted if p not in counted])
    for pid in wanted:
        if pid not in counted:
            plan.person(pid, existing.get(pid), faces.get(pid, []), covers if place_all else None)
    for pid, face_id in plan.placing.items():
        uploaded = covers.place(pid, face_id) if covers is not None else False
        plan.changes.setdefault(pid, ({}, None))[0].update(cover_uploaded=uploaded, cover_of=face_id)
    if covers is not None:
        covers.remove_many(plan.removing)
    lib.write_persons(plan.changes, plan.gone)
    return plan.created, len(plan.gone)


def counted_moves(lib: Library, joined: dict[str, list[str]], left: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """What `recount` needs to count the large persons among ``joined`` and ``left`` (the faces
    a change puts in and takes out of each) from the moves alone: read before the change."""
    touched = sorted(set(joined) | set(left))
    out: dict[str, dict[str, Any]] = {}
    for pid, doc in lib.persons_by_id(touched).items():
        if int(doc.get("face_count") or 0) >= COUNTED_FROM_MOVES and "updated_at" in doc:
            out[pid] = {
                "was": {"face_count": doc["face_count"], "updated_at": doc["updated_at"]},
                "joined": sorted(joined.get(pid, [])),
                "left": sorted(left.get(pid, [])),
            }
    return out


def _count_moves(
    lib: Library, existing: dict[str, dict[str, Any]], moved: dict[str, dict[str, Any]], plan: _Recount
) -> set[str]:
    """Count the persons of ``moved`` whose faces are as the moves say, each by a compare and
    set on what its document was before the change; those counted (the rest are read whole)."""
    ready = {pid: m for pid, m in moved.items() if _countable(existing.get(pid), m)}
    faces = lib.face_qualities(
        [f for m in ready.values() for f in m["joined"]] + [existing[pid]["best_face_id"] for pid in ready]
    )
    done: set[str] = set()
    for pid, m in sorted(ready.items()):
        doc = existing[pid]
        if not _as_recorded(pid, doc, m, faces):
            continue
        fields: dict[str, Any] = {
            "face_count": m["was"]["face_count"] + len(m["joined"]) - len(m["left"]),
            "updated_at": plan.now,
        }
        cover = doc["best_face_id"]
        if not doc.get("cover_locked"):
            best = max(((quality_of(faces[f]), f) for f in m["joined"]), default=None)
            if best is not None and best > (float(doc.get("best_score", -1.0)), cover):
                cover = best[1]
                fields.update(best_face_id=cover, best_score=best[0])
        if lib.set_person_fields_if(pid, m["was"], fields):
            done.add(pid)
            if cover != doc.get("cover_of"):
                plan.placing[pid] = cover
    return done


def _as_recorded(pid: str, doc: dict[str, Any], m: dict[str, Any], faces: dict[str, dict[str, Any]]) -> bool:
    """Whether the faces are as the moves say: each face that joined is the person's (not
    deleted or moved on by another process), and so is its cover, with the quality its
    document gives it (a new model's qualities, `reembed`, leave the stored one stale)."""
    if any(faces.get(f, {}).get("person_id") != pid for f in [*m["joined"], doc["best_face_id"]]):
        return False
    return bool(doc.get("cover_locked")) or quality_of(faces[doc["best_face_id"]]) == float(doc.get("best_score", -1.0))


def _countable(doc: dict[str, Any] | None, m: dict[str, Any]) -> bool:
    """Whether a person may be counted from its moves: it has a document and a cover, and keeps
    a face (the compare and set, and `_as_recorded`, tell whether the moves still hold)."""
    if doc is None or not doc.get("best_face_id"):
        return False
    return bool(m["was"]["face_count"] + len(m["joined"]) - len(m["left"]) > 0)


@dataclass
class _Recount:
    """What `recount` writes: each person's fields (and the document of a new one), the
    persons gone, and the cover files to place and to remove."""

    model: str | None
    now: str
    changes: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    placing: dict[str, str] = field(default_factory=dict)  # person -> the face its cover is cut from
    removing: list[str] = field(default_factory=list)
    created: int = 0

    def person(
        self, pid: str, doc: dict[str, Any] | None, mine: list[dict[str, Any]], check_files: Covers | None
    ) -> None:
        """Person ``pid`` (``doc``, None where it has none yet) holding the faces ``mine``;
        ``check_files``: a missing cover file is placed again."""
        if not mine and not (doc and doc.get("user_locked")):
            if doc:
                self.gone.append(pid)
                self.removing.append(pid)
            return
        fields: dict[str, Any] = {"face_count": len(mine), "updated_at": self.now}
        insert = None
        if doc is None:
            self.created += 1
            doc = documents.new_person(self.model, self.now)
            insert = {k: v for k, v in doc.items() if k not in ("best_face_id", "best_score", "cover_uploaded")}
        self.changes[pid] = (fields, insert)
        cover = _choose_cover(doc, mine, fields)
        if cover is None:
            fields.update(cover_uploaded=False, cover_of=None)
            self.removing.append(pid)
        elif cover != doc.get("cover_of") or insert is not None:
            self.placing[pid] = cover
        elif check_files is not None and not check_files.cover(pid).exists():
            self.placing[pid] = cover  # its file is gone (`facepic check --repair`)


def _choose_cover(doc: dict[str, Any], mine: list[dict[str, Any]], fields: dict[str, Any]) -> str | None:
    """The face of a person's cover: the one the user picked while it is still the person's,
    else the best (``fields`` get the change)."""
    cover = doc.get("best_face_id")
    if not (doc.get("cover_locked") and cover and any(f["_id"] == cover for f in mine)):
        if doc.get("cover_locked"):
            fields["cover_locked"] = False
        best = max(mine, key=lambda f: (quality_of(f), f["_id"])) if mine else None
        cover = best["_id"] if best else None
        fields.update(best_face_id=cover, best_score=quality_of(best) if best else -1.0)
    return cover


def quality_of(face: dict[str, Any]) -> float:
    return float((face.get("quality") or {}).get("value", face.get("score", 0.0)))
