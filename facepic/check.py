"""`facepic check`: read the whole library and report every place where what is derived has
drifted from what it is derived from, one line each; ``repair`` makes it true again.

Faces are the source of truth for persons (their face counts and covers) and for each photo's
list of its faces; the ledger is the truth of what a run finished; the library's records name
the files and objects that should exist. Repair recomputes the derived fields from the faces
and the user's corrections (`facepic.derived.recount`: a person the user made stays even when
empty, a cover the user picked stays while it is theirs), finishes pending changes first, and
deletes what nothing names (faces of a photo that is gone, files no record names). What the
library cannot rebuild (a photo the ledger calls done that is not stored, an object that is
missing) is reported with what to run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facepic import changes, ids, storage
from facepic.db import Library
from facepic.derived import Covers, recount
from facepic.documents import image_faces
from facepic.ledger import Ledger
from facepic.report import counted
from facepic.statuses import Status

SHOWN = 20  # lines of one kind listed before "... and N more"


@dataclass
class Report:
    """The problems found, by kind: each a list of one-line descriptions."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)

    def add(self, kind: str, line: str) -> None:
        self.problems.setdefault(kind, []).append(line)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.problems.values())

    def lines(self) -> Iterator[str]:
        for kind in sorted(self.problems):
            found = self.problems[kind]
            for line in found[:SHOWN]:
                yield f"{kind}: {line}"
            if len(found) > SHOWN:
                yield f"{kind}: ... and {len(found) - SHOWN:,} more"


def check(lib: Library, folder: Any, store: storage.ObjectStore | None = None) -> Report:
    """Every inconsistency of the library, its ledger, its data folder and (``store``) its bucket."""
    report = Report()
    for head in lib.change_heads():
        report.add("pending change", f"a {head.get('kind')} change was not finished (its process stopped midway)")
    faces = list(lib.faces_for_check())
    persons = {p["_id"]: p for p in lib.all_persons()}
    images = {i["_id"]: i for i in lib.images_for_check()}
    of_person: dict[str, list[dict[str, Any]]] = {}
    for f in faces:
        if f.get("person_id"):
            of_person.setdefault(f["person_id"], []).append(f)
        if f.get("person_id") and f["person_id"] not in persons:
            report.add("missing person", f"face {f['_id']} is in person {f['person_id']}, which does not exist")
        if f["image_id"] not in images:
            report.add("missing photo", f"face {f['_id']} is of photo {f['image_id']}, which does not exist")
    for pid, p in sorted(persons.items()):
        mine = of_person.get(pid, [])
        if p.get("face_count", 0) != len(mine):
            report.add("face count", f"person {pid} is listed with {p.get('face_count', 0)} faces and has {len(mine)}")
        if not mine and not p.get("user_locked"):
            report.add("empty person", f"person {pid} has no faces")
        cover = p.get("best_face_id")
        if cover is not None and all(f["_id"] != cover for f in mine):
            report.add("cover", f"person {pid}'s cover is face {cover}, which is not one of its faces")
        if mine and cover is None:
            report.add("cover", f"person {pid} has faces and no cover")
    for iid in _stale_photos(images, faces):
        report.add("photo's faces", f"photo {iid} ({images[iid].get('path')}) lists faces that are not its faces")
    _check_ledger(lib, folder, images, report)
    _check_files(folder, images, faces, persons, report)
    if store is not None:
        _check_bucket(lib, store, report)
    return report


def _check_ledger(lib: Library, folder: Any, images: dict[str, dict[str, Any]], report: Report) -> None:
    state = Ledger(folder.ledger).read()
    done: dict[str, dict[str, Any]] = {}
    for entry in state.entries(Status.DONE):
        image_id = entry.get("image_id") or (ids.image_id(entry["sha256"]) if entry.get("sha256") else None)
        if image_id:
            done[image_id] = entry
            if image_id not in images:
                report.add(
                    "ledger", f"{entry.get('path')} is done in the ledger and not stored (run facepic run again)"
                )
    model = lib.library_model()
    for iid, image in images.items():
        if iid not in done and image.get("model") == model:
            report.add("ledger", f"{image.get('path')} is stored and not done in the ledger")


def _named_files(
    folder: Any, images: Iterable[str], faces: list[dict[str, Any]], persons: dict[str, dict[str, Any]]
) -> tuple[set[Path], set[Path]]:
    """The thumbnails and crops the library names; the covers and the page's screen-size
    renditions (made when a photo is first viewed), which it names without needing them."""
    images = list(images)
    named = {folder.thumbnail(i) for i in images} | {folder.face_crop(f["_id"]) for f in faces}
    covers = {folder.cover(p) for p, d in persons.items() if d.get("best_face_id")}
    return named, covers | {folder.display(i) for i in images}


def _check_files(
    folder: Any,
    images: dict[str, dict[str, Any]],
    faces: list[dict[str, Any]],
    persons: dict[str, dict[str, Any]],
    report: Report,
) -> None:
    named, optional = _named_files(folder, images, faces, persons)
    for path in _files(folder.thumbnails):
        if path not in named and path not in optional:
            report.add("unnamed file", f"{path} belongs to nothing in the library")
    for path in sorted(p for p in optional if p.name.startswith("person_")):
        if not path.exists():
            report.add("missing file", f"{path} (a person's cover) is missing")
    missing = Counter("thumbnail" if p.name.startswith("thumb_") else "face crop" for p in named if not p.exists())
    for what, n in sorted(missing.items()):
        report.add("missing file", f"{n:,} {what}{'s' if n != 1 else ''} named by the library are missing")


def _check_bucket(lib: Library, store: storage.ObjectStore, report: Report) -> None:
    named = lib.object_keys()
    there = {k for k in store.list_keys() if storage.is_facepic_key(k)}
    for key in sorted(there - named):
        report.add("unnamed object", f"{key} in the bucket belongs to nothing in the library")
    covers = {k for k in named if k.startswith("faces/")}
    for key in sorted(named - there - covers):
        report.add("missing object", f"{key} is named by the library and not in the bucket (facepic run --upload-only)")


def _files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from (p for p in sorted(folder.rglob("*.jpg")) if p.is_file())


def repair(lib: Library, folder: Any, covers: Covers) -> list[str]:
    """Make every derived field true again; returns what was changed, one line each."""
    done: list[str] = []
    for kind in changes.finish_pending(lib, covers):
        done.append(f"finished a {kind} change its process left midway")
    images = {i["_id"]: i for i in lib.images_for_check()}
    faces = list(lib.faces_for_check())
    orphans = [f["_id"] for f in faces if f["image_id"] not in images]
    if orphans:
        lib.delete_faces(orphans)
        faces = [f for f in faces if f["image_id"] in images]
        done.append(f"deleted {counted(len(orphans), 'face')} of photos that are gone")
    before = {p["_id"]: p for p in lib.all_persons()}
    wanted = set(before) | {f["person_id"] for f in faces if f.get("person_id")}
    created, deleted = recount(lib, wanted, covers, place_all=True)  # changes persons, not faces
    after = {p["_id"]: p for p in lib.all_persons()}
    shown = ("face_count", "best_face_id")
    fixed = sum(1 for p, d in after.items() if p in before and any(before[p].get(k) != d.get(k) for k in shown))
    if created:
        done.append(f"made {counted(created, 'person')} that faces were in")
    if deleted:
        done.append(f"deleted {counted(deleted, 'person')} with no faces")
    if fixed:
        done.append(f"recounted or gave a cover to {counted(fixed, 'person')}")
    named, covered = _named_files(folder, images, faces, after)
    stray = [p for p in _files(folder.thumbnails) if p not in named and p not in covered]
    for path in stray:
        path.unlink(missing_ok=True)
    if stray:
        done.append(f"deleted {counted(len(stray), 'file')} in {folder.thumbnails} that nothing named")
    stale = _stale_photos(images, faces)
    if stale:
        lib.refresh_image_faces(stale)
        done.append(f"rewrote the face list of {counted(len(stale), 'photo')}")
    lib.bump_revision()
    return done


def _stale_photos(images: dict[str, dict[str, Any]], faces: list[dict[str, Any]]) -> list[str]:
    """The photos whose face list is not their faces (ids and persons, in index order)."""
    of_image: dict[str, list[dict[str, Any]]] = {}
    for f in faces:
        of_image.setdefault(f["image_id"], []).append(f)
    stale = []
    for iid, image in sorted(images.items()):
        stored = image_faces(sorted(of_image.get(iid, []), key=lambda f: f.get("index", 0)))
        listed = image.get("faces") or []
        if [(f["face_id"], f.get("person_id")) for f in listed] != [(f["face_id"], f["person_id"]) for f in stored]:
            stale.append(iid)
    return stale
