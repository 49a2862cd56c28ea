"""Changing persons: the user's corrections, and `recluster`, on the library.

Every function here is what a CLI command (and later a UI) calls. Corrections are stored as
constraints that every later step respects:

- a named or merged person is ``user_locked``: never deleted, split or merged away;
- a face the user moved is ``locked`` where they put it;
- ``rejected`` on a face lists persons it must never join again;
- ``cover_locked`` on a person keeps the cover the user picked;
- ``not_same`` on a face lists the persons its person was answered "not the same" as (a "no"
  to "same person?"): each is in its ``rejected`` too;
- ``hidden`` persons still take their faces (so they do not come back as new persons), but
  listings leave them out.

Each change bumps the library's revision, so the index worker reloads its persons within
seconds; ``images.faces`` (the redundant copy) is rewritten for every photo touched.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from facepic import documents, ids
from facepic.changes import Change
from facepic.db import Library
from facepic.derived import Covers, quality_of
from facepic.documents import embeddings_from_bson
from facepic.errors import FacePicError
from facepic.ledger import now_iso
from facepic.models import EMBEDDING_DIM
from facepic.report import counted

if TYPE_CHECKING:  # the pipeline's index stage uses this module: no import back
    from facepic import clustering
    from facepic.matching import Rules


class PersonError(FacePicError):
    """A correction that cannot be made: the message says why, for the user."""


class NoSuchPerson(PersonError):
    """A reference that names no person (the page answers 404 where it reads one)."""


MIN_PREFIX = 4  # characters of an id a prefix must give: fewer match half the library


@dataclass
class ReclusterSummary:
    persons_before: int = 0
    persons_after: int = 0
    faces_moved: int = 0
    persons_created: int = 0
    persons_deleted: int = 0
    faces_assigned: int = 0  # unassigned before, a person now
    more: bool = False  # a settle in slices: faces stored since remain to be settled

    def then(self, later: ReclusterSummary) -> ReclusterSummary:
        """This settle and a ``later`` one as one: the persons before this and after that."""
        return ReclusterSummary(
            self.persons_before,
            later.persons_after,
            self.faces_moved + later.faces_moved,
            self.persons_created + later.persons_created,
            self.persons_deleted + later.persons_deleted,
            self.faces_assigned + later.faces_assigned,
            later.more,
        )


# --- looking things up ---------------------------------------------------------------


LISTED = 20  # candidates an ambiguous reference lists
ID_PREFIX = re.compile(r"^p[0-9a-f]*$")  # what the start of a person's id looks like


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
    An ambiguous name or prefix is refused with the candidates listed; no person is a
    ``NoSuchPerson``."""
    doc = lib.person(ref)
    if doc:
        return doc
    named = lib.persons_named(ref)
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise PersonError(f"{len(named)} persons are named {ref!r} (give an id):\n" + _candidates(named, len(named)))
    if len(ref) < MIN_PREFIX and ID_PREFIX.match(ref):
        raise NoSuchPerson(
            f"no person {ref!r}: give at least {MIN_PREFIX} characters of an id (`facepic persons` lists them), or a name"
        )
    prefixed = lib.persons_with_prefix(ref, LISTED) if len(ref) >= MIN_PREFIX else []
    total = lib.count_persons_with_prefix(ref) if len(prefixed) > 1 else len(prefixed)
    if total == 1:
        return prefixed[0]
    if total > 1:
        raise PersonError(
            f"{total} persons have ids starting {ref!r} (give more of the id):\n" + _candidates(prefixed, total)
        )
    raise NoSuchPerson(f"no person {ref!r} (give an id from `facepic persons`, or a name)")


def others_named(lib: Library, name: str, person_id: str) -> list[str]:
    """The ids of the other persons called ``name`` (case-insensitive)."""
    return sorted(d["_id"] for d in lib.persons_named(name.strip(), other_than=person_id))


def find_face(lib: Library, face_id: str) -> dict[str, Any]:
    doc = lib.face(face_id)
    if doc is None:
        raise PersonError(f"no face {face_id!r} (face ids are listed by `facepic persons --json`)")
    return doc


# --- keeping derived data right ---------------------------------------------------------


# --- the undo log ---------------------------------------------------------------------------

# A person's fields that only the user sets, as `undo_last` puts them back (with their defaults).
USER_FIELDS = {"name": "", "user_locked": False, "hidden": False, "cover_locked": False, "best_face_id": None}
FACE_FIELDS = ("person_id", "locked", "rejected", "not_same", "ignored", "candidates")


def _log(
    lib: Library,
    change: Change,
    kind: str,
    face_ids: list[str],
    person_ids: list[str | None],
    face_fields: tuple[str, ...] = FACE_FIELDS,
) -> None:
    """Add to ``change`` the undo log's entry of it: the faces (their ``face_fields``, those it
    changes) and persons it changes, as they are now (a person not there yet is one it makes)."""
    faces = lib.faces_to_correct(sorted(set(face_ids)))
    wanted = sorted({p for p in person_ids if p})
    persons = lib.persons_by_id(wanted)
    change.log_correction(
        {
            # Sorts by time; the random tail tells apart two in one nanosecond.
            "_id": f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}",
            "at": now_iso(),
            "kind": kind,
            "faces": [{"_id": fid, **{k: f.get(k) for k in face_fields}} for fid, f in sorted(faces.items())],
            "persons": [
                {
                    "_id": pid,
                    "existed": pid in persons,
                    **{k: persons.get(pid, {}).get(k, d) for k, d in USER_FIELDS.items()},
                }
                for pid in wanted
            ],
        }
    )


def undo_last(lib: Library, covers: Covers | None) -> dict[str, Any]:
    """Put back the faces and persons of the latest correction not undone yet, as they were
    before it, in one change; the log's entry of it. A face gone since (its photo replaced)
    is left out; a person the correction made goes when it holds no face again."""
    entry = lib.last_correction()
    if entry is None:
        raise PersonError("nothing to undo (the last 100 corrections are kept)")
    now = lib.faces_to_correct([f["_id"] for f in entry["faces"]])
    faces = [f for f in entry["faces"] if f["_id"] in now]
    change = Change("undo")
    model = lib.library_model()
    for p in entry["persons"]:
        if p["existed"]:
            change.new_person_if_missing(p["_id"], documents.new_person(model, now_iso()))
            change.set_person_fields(
                p["_id"], {**{k: p.get(k, d) for k, d in USER_FIELDS.items()}, "updated_at": now_iso()}
            )
        else:
            change.set_persons_fields([p["_id"]], {"user_locked": False, "cover_locked": False})
    change.restore_faces(faces)
    change.mark_undone(entry["_id"])
    change.touch(
        [p["_id"] for p in entry["persons"]]
        + [f.get("person_id") for f in faces]
        + [f.get("person_id") for f in now.values()],
        [f["image_id"] for f in now.values()],
    )
    change.commit(lib, covers)
    return entry


# --- corrections -------------------------------------------------------------------------


def name_person(lib: Library, ref: str, name: str, covers: Covers | None = None) -> dict[str, Any]:
    person = find_person(lib, ref)
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise PersonError("a name is 1 to 200 printable characters")
    change = Change("name")
    _log(lib, change, "name", [], [person["_id"]])
    change.set_person_fields(person["_id"], {"name": name, "user_locked": True, "updated_at": now_iso()})
    change.commit(lib, covers)
    return {**person, "name": name}


def hide_person(lib: Library, ref: str, hidden: bool = True, covers: Covers | None = None) -> dict[str, Any]:
    person = find_person(lib, ref)
    change = Change("hide")
    _log(lib, change, "hide", [], [person["_id"]])
    change.set_person_fields(person["_id"], {"hidden": hidden, "updated_at": now_iso()})
    change.commit(lib, covers)
    return person


def merge_persons(lib: Library, target_ref: str, source_refs: list[str], covers: Covers) -> dict[str, Any]:
    """Every face of the sources joins the target; the sources are gone, the target is the
    user's (never split or merged away later) and keeps its name (an unnamed one takes the
    first source's); ``dropped_names`` lists the sources' other names. A face that rejected any of them leaves, unless
    the user placed it (a move): their placement and this merge are their latest word."""
    target = find_person(lib, target_ref)
    sources = list({s["_id"]: s for s in (find_person(lib, r) for r in dict.fromkeys(source_refs))}.values())
    if any(s["_id"] == target["_id"] for s in sources):
        raise PersonError("a person cannot be merged into itself")
    change = Change("merge")
    source_ids = [s["_id"] for s in sources]
    touched = [f["_id"] for f in lib.faces_for_merge(target["_id"], source_ids)] + lib.faces_rejecting(source_ids)
    _log(lib, change, "merge", touched, [target["_id"], *source_ids])
    name, dropped = _merge_into(lib, change, target, sources)
    change.commit(lib, covers)
    return {**target, "name": name, "dropped_names": dropped}


def _merge_into(
    lib: Library, change: Change, target: dict[str, Any], sources: list[dict[str, Any]]
) -> tuple[str, list[str]]:
    """The writes of merging ``sources`` into ``target`` (person documents), added to
    ``change``: the target's name after it, and the sources' names dropped."""
    source_ids = [s["_id"] for s in sources]
    one = {target["_id"], *source_ids}
    # The sources' faces, and those of the target's that reject one of them.
    faces = lib.faces_for_merge(target["_id"], source_ids)
    clash = [f for f in faces if one & set(f.get("rejected") or [])]
    # A face rejecting them only as the user's "not the same" stays: the merge is the user's
    # latest word about those persons, as a move is about a face.
    overruled = {f["_id"] for f in clash if one & set(f.get("rejected") or []) <= set(f.get("not_same") or [])}
    out = {f["_id"] for f in clash if not f.get("locked") and f["_id"] not in overruled}
    moving = [f for f in faces if f["person_id"] != target["_id"] and f["_id"] not in out]
    change.set_person([f["_id"] for f in moving], target["_id"])
    change.set_person(sorted(out), None, {"$set": {"locked": False}})
    change.forget_rejections(sorted(f["_id"] for f in clash if f.get("locked") or f["_id"] in overruled), sorted(one))
    # A face that had rejected a source must not meet it again under the target's name:
    # the target absorbed the source, so rejecting the source means rejecting the target.
    change.reject_for(source_ids, target["_id"])
    name: str = target.get("name") or next((s["name"] for s in sources if s.get("name")), "")
    dropped = list(dict.fromkeys(s["name"] for s in sources if s.get("name") and s["name"].lower() != name.lower()))
    change.set_person_fields(target["_id"], {"user_locked": True, "name": name, "updated_at": now_iso()})
    change.set_persons_fields(source_ids, {"user_locked": False})
    change.touch([target["_id"], *source_ids], [f["image_id"] for f in faces])
    return name, dropped


def not_same(lib: Library, first_ref: str, second_ref: str, covers: Covers | None) -> tuple[str, str]:
    """ "Not the same person" (the answer no to "same person?"): every face of each rejects the
    other (``not_same`` says why), so settling and `recluster` never put them together, nor
    either with whoever absorbs the other, and the pair is not suggested again; `undo_last`
    takes it back, a later merge of the two overrules it. Returns both persons' ids."""
    first, second = find_person(lib, first_ref), find_person(lib, second_ref)
    a, b = first["_id"], second["_id"]
    if a == b:
        raise PersonError(f"{first_ref!r} and {second_ref!r} are one person ({a})")
    faces: dict[str, list[str]] = {a: [], b: []}
    for f in lib.faces_with_images([a, b]):
        faces[f["person_id"]].append(f["_id"])
    change = Change("not same")
    # Undo puts back what this writes, and leaves each face in the person it is in by then.
    _log(lib, change, "not same", faces[a] + faces[b], [], face_fields=("rejected", "not_same"))
    change.add_not_same(sorted(faces[a]), b)
    change.add_not_same(sorted(faces[b]), a)
    change.set_persons_fields([a, b], {"updated_at": now_iso()})
    change.touch([a, b])
    change.commit(lib, covers)
    return a, b


def _name_target(lib: Library, change: Change, name: str, clean: list[dict[str, Any]], first_face: str) -> str:
    """The person the faces imported as ``name`` go to: one of ``clean`` (persons holding only
    faces of that name, largest first) already of that name, else the library's largest of that
    name, else the first of ``clean``, else a new person (created in ``change``)."""
    for person in clean:
        if person.get("name"):
            return str(person["_id"])
    elsewhere = sorted(lib.persons_named(name), key=lambda d: (-d.get("face_count", 0), d["_id"]))
    if elsewhere:
        return str(elsewhere[0]["_id"])
    if clean:
        return str(clean[0]["_id"])
    pid = ids.person_id(first_face + ":xmp")
    change.new_person_if_missing(pid, {**documents.new_person(lib.library_model(), now_iso()), "user_locked": True})
    return pid


@dataclass
class NamesApplied:
    """What `apply_imported_names` did."""

    faces: int = 0  # faces given the person of their name
    persons: int = 0  # persons named
    merged: int = 0  # persons merged into another of the same name
    kept: int = 0  # faces the user placed (moved) before: left where they are


def apply_imported_names(lib: Library, covers: Covers | None) -> NamesApplied:
    """The names read from photos' XMP (``images.xmp_names``, waiting as ``xmp_pending``), as
    the user's corrections, in one change: each named face is ``locked`` in a person of that
    name (``user_locked``), and the persons holding faces of one name are merged into one, as
    `name`, `move` and `merge` do. The person kept is one already of that name (holding such a
    face, else the library's largest), else the largest holding only faces of that name, else a
    new one; a person holding faces of other names too keeps its other faces, the named face
    leaves it (as a move: it never joins that person again). A face the user moved is left."""
    images = lib.images_with_names_to_apply()
    named = {n["face_id"]: n["name"] for image in images for n in image.get("xmp_names") or []}
    summary = NamesApplied()
    if not images:
        return summary
    names = _ImportedNames.of(named, lib.faces_to_name(list(named)))
    persons = lib.persons_by_id(sorted(names.names_in))
    change = Change("xmp names")
    for key, fids in sorted(names.groups.items()):
        free = sorted(f for f in fids if not names.faces[f].get("locked"))
        summary.kept += len(fids) - len(free)
        if free:
            summary.merged += _apply_name(lib, change, names, key, free, persons)
            summary.faces += len(free)
            summary.persons += 1
    change.set_names_applied([image["_id"] for image in images])
    change.commit(lib, covers)
    return summary


@dataclass
class _ImportedNames:
    """The imported names of the faces still in the library, by name in lower case."""

    faces: dict[str, dict[str, Any]]  # face id -> its document
    groups: dict[str, list[str]] = field(default_factory=dict)  # name -> the faces of that name
    spelling: dict[str, str] = field(default_factory=dict)  # name -> as first written
    names_in: dict[str, set[str]] = field(default_factory=dict)  # person -> the names its imported faces carry

    @classmethod
    def of(cls, named: dict[str, str], faces: dict[str, dict[str, Any]]) -> _ImportedNames:
        names = cls(faces)
        for fid, name in named.items():
            if fid not in faces:
                continue  # gone since (its photo replaced)
            key = name.lower()
            names.spelling.setdefault(key, name)
            names.groups.setdefault(key, []).append(fid)
            pid = faces[fid].get("person_id")
            if pid:
                names.names_in.setdefault(pid, set()).add(key)
        return names


def _apply_name(
    lib: Library,
    change: Change,
    names: _ImportedNames,
    key: str,
    free: list[str],
    persons: dict[str, dict[str, Any]],
) -> int:
    """The writes that give the faces ``free`` (not placed by the user) of the name ``key``
    one person of that name, merging into it the persons holding only faces of that name;
    how many persons were merged."""
    faces = names.faces
    # Persons holding these faces and no face of another name, largest first.
    holding = sorted({p for f in free if (p := faces[f].get("person_id")) and p in persons})
    clean = sorted(
        (p for p in holding if names.names_in.get(p) == {key} and (persons[p].get("name") or key).lower() == key),
        key=lambda p: (-persons[p].get("face_count", 0), p),
    )
    target = _name_target(lib, change, names.spelling[key], [persons[p] for p in clean], free[0])
    sources = [persons[p] for p in clean if p != target]
    if sources:
        _merge_into(lib, change, persons.get(target) or lib.person(target) or {"_id": target}, sources)
    one = {target, *(p["_id"] for p in sources)}
    for fid in free:
        old = faces[fid].get("person_id")
        rejected = [r for r in faces[fid].get("rejected") or [] if r not in one]
        if old and old not in one:
            rejected.append(old)  # as a move: the face was not that person
        change.set_person([fid], target, {"$set": {"locked": True, "rejected": rejected}, "$unset": {"candidates": ""}})
        change.touch([old], [faces[fid]["image_id"]])
    change.set_person_fields(target, {"name": names.spelling[key], "user_locked": True, "updated_at": now_iso()})
    change.touch([target])
    return len(sources)


MAX_FACES = 1_000  # faces one correction takes: the change lock is held while it is written


def _faces(lib: Library, face_ids: list[str]) -> list[dict[str, Any]]:
    """The faces a correction acts on, each once, in the order given; a missing one refused."""
    wanted = list(dict.fromkeys(face_ids))
    if not wanted:
        raise PersonError("choose at least one face")
    if len(wanted) > MAX_FACES:
        raise PersonError(f"{len(wanted):,} faces chosen: correct at most {MAX_FACES:,} at a time")
    found = lib.faces_to_correct(wanted)
    missing = [f for f in wanted if f not in found]
    if missing:
        raise PersonError(f"no face {missing[0]!r} (face ids are listed by `facepic persons --json`)")
    return [found[f] for f in wanted]


def move_face(lib: Library, face_id: str, target_ref: str | None, covers: Covers) -> str:
    """Put a face in a person (``None``: a new person of its own); it stays there, and never
    joins the person it left again (unless moved back). Returns the person's id."""
    return move_faces(lib, [face_id], target_ref, covers)


def move_faces(lib: Library, face_ids: list[str], target_ref: str | None, covers: Covers) -> str:
    """`move_face` for many faces at once, in one change (``None``: all into one new person);
    those already in the person are left. Returns the person's id."""
    faces = _faces(lib, face_ids)
    target_id = ids.person_id(faces[0]["_id"] + ":moved") if target_ref is None else find_person(lib, target_ref)["_id"]
    moving = [f for f in faces if f.get("person_id") != target_id]
    if not moving:
        what = f"face {faces[0]['_id']} is" if len(faces) == 1 else "the faces are"
        raise PersonError(f"{what} already in person {target_id}")
    photos: dict[str, str] = {}
    for f in moving:
        if f["image_id"] in photos:
            raise PersonError(
                f"faces {photos[f['image_id']]} and {f['_id']} are of one photo: one person cannot take both"
            )
        photos[f["image_id"]] = f["_id"]
    clash = lib.person_faces_in_images(target_id, list(photos))
    if clash:
        raise PersonError(f"person {target_id} already has a face in this photo ({clash[0]['_id']})")
    change = Change("move")
    _log(lib, change, "move", [f["_id"] for f in moving], [target_id, *(f.get("person_id") for f in moving)])
    if target_ref is None:
        new = documents.new_person(lib.library_model(), now_iso())
        change.new_person_if_missing(target_id, {**new, "user_locked": True})
    for face in moving:
        # Moving a face out of a person says it is not that person, as a reject does: without
        # it recluster would fold the rest of the old person into the new one (or the target).
        old = face.get("person_id")
        rejected = [r for r in face.get("rejected") or [] if r != target_id]
        if old and old not in rejected:
            rejected.append(old)
        change.set_person(
            [face["_id"]],
            target_id,
            {"$set": {"locked": True, "rejected": rejected}, "$unset": {"candidates": "", "ignored": ""}},
        )
        change.touch([target_id, old], [face["image_id"]])
    change.commit(lib, covers)
    return target_id


def reject_face(lib: Library, face_id: str, covers: Covers) -> str:
    """ "Not this person": the face leaves its person and never joins it again. It waits
    unassigned until `recluster` finds where it belongs. Returns the person it left."""
    return reject_faces(lib, [face_id], covers)[0]


def reject_faces(lib: Library, face_ids: list[str], covers: Covers) -> list[str]:
    """`reject_face` for many faces at once, in one change. Returns the persons they left."""
    faces = _faces(lib, face_ids)
    lonely = [f["_id"] for f in faces if not f.get("person_id")]
    if lonely:
        raise PersonError(f"face {lonely[0]} has no person")
    leaving: dict[str, list[str]] = {}
    for f in faces:
        leaving.setdefault(f["person_id"], []).append(f["_id"])
    change = Change("reject")
    _log(lib, change, "reject", [f["_id"] for f in faces], list(leaving))
    for old, fids in sorted(leaving.items()):
        change.set_person(fids, None, {"$set": {"locked": False}, "$addToSet": {"rejected": old}})
    change.touch(leaving, [f["image_id"] for f in faces])
    change.commit(lib, covers)
    return list(leaving)


def ignore_faces(lib: Library, face_ids: list[str], covers: Covers) -> list[str]:
    """ "Not a face": the faces leave their persons and are ``ignored`` from then on: shown
    nowhere, never settled or reclustered (an undo brings them back). Returns the persons left."""
    faces = _faces(lib, face_ids)
    change = Change("ignore")
    _log(lib, change, "ignore", [f["_id"] for f in faces], [f.get("person_id") for f in faces])
    change.set_person(
        [f["_id"] for f in faces], None, {"$set": {"ignored": True, "locked": False}, "$unset": {"candidates": ""}}
    )
    left = sorted({f["person_id"] for f in faces if f.get("person_id")})
    change.touch(left, [f["image_id"] for f in faces])
    change.commit(lib, covers)
    return left


def pick_cover(lib: Library, ref: str, face_id: str, covers: Covers) -> None:
    person = find_person(lib, ref)
    face = find_face(lib, face_id)
    if face.get("person_id") != person["_id"]:
        raise PersonError(f"face {face_id} is not a face of person {person['_id']}")
    change = Change("cover")
    _log(lib, change, "cover", [], [person["_id"]])
    # The recount that finishes the change keeps a cover the user picked and places its file.
    change.set_person_fields(
        person["_id"],
        {
            "best_face_id": face_id,
            "best_score": quality_of(face),
            "cover_locked": True,
            "updated_at": now_iso(),
        },
    )
    change.touch([person["_id"]])
    change.commit(lib, covers)


# --- recluster ------------------------------------------------------------------------------


def recluster_library(lib: Library, rules: Rules, covers: Covers) -> ReclusterSummary:
    """Run `facepic.clustering.recluster` over the library's faces and write the result."""
    from facepic import clustering  # NumPy's: the commands that only read start without it

    model = lib.library_model()
    summary = ReclusterSummary()
    if model is None:
        return summary
    faces = _faces_to_recluster(lib, model)
    locked_persons = lib.user_locked_person_ids()
    summary.persons_before = lib.person_count()
    if faces is None:
        return summary
    merged_into: dict[str, str] = {}
    result = clustering.recluster(faces, locked_persons, rules, _recluster_person_id, merged_into)
    # As after a user's merge: a face rejected from a person merged away rejects the person
    # that absorbed it, so that new photos, re-runs and the next recluster keep it out too.
    change = Change("recluster")
    change.reject_for_each(merged_into)
    changed = [i for i in range(len(faces.ids)) if result[i] != faces.person[i]]
    _move_faces(change, faces, result, changed)
    summary.faces_moved = sum(1 for i in changed if faces.person[i] is not None and result[i] is not None)
    summary.faces_assigned = sum(1 for i in changed if faces.person[i] is None)
    summary.persons_created, summary.persons_deleted = change.commit(lib, covers)
    summary.persons_after = lib.person_count()
    lib.set_recluster_mark(summary.faces_assigned)
    return summary


def _faces_to_recluster(lib: Library, model: str) -> clustering.Faces | None:
    """The faces of ``model`` as `recluster` takes them; None when there are none."""
    from facepic import clustering

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
    if not face_ids:
        return None
    embeddings = embeddings_from_bson(rows, EMBEDDING_DIM)
    return clustering.Faces(face_ids, embeddings, person, photo, locked, rejected, can_found)


def _recluster_person_id(face_id: str, taken: set[str]) -> str:
    """A new person's id, derived from its founding face, not in ``taken``."""
    n = 0
    while True:
        pid = ids.person_id(f"{face_id}:recluster:{n}")
        if pid not in taken:
            return pid
        n += 1


def _move_faces(change: Change, faces: clustering.Faces, result: list[str | None], changed: list[int]) -> None:
    """The writes that move the faces ``changed`` to their person in ``result``."""
    joining: dict[str | None, list[str]] = {}
    for i in changed:
        joining.setdefault(result[i], []).append(faces.ids[i])
    change.set_persons(
        {pid: moved for pid, moved in joining.items() if pid is not None}, {"$unset": {"candidates": ""}}
    )
    if None in joining:
        change.set_person(joining[None], None)
    change.touch((p for i in changed for p in (faces.person[i], result[i])), {faces.photo[i] for i in changed})


def recluster_may_place(lib: Library) -> bool:
    """False when the last recluster placed none of the unassigned faces and nothing changed
    since: running it again would place none either."""
    mark = lib.recluster_mark()
    if not mark or mark.get("placed"):
        return True
    now = lib.unassigned_state()
    return any(mark.get(k) != v for k, v in now.items())
