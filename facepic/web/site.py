"""What the page and its JSON API read and change: plain dicts, the same for both.

Every change calls the function of ``facepic.persons`` that the CLI command calls, so a
correction made here is the same constraint, kept by new photos, `recluster` and re-runs,
and seen by a running index worker (each bumps the library's revision).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from facepic import persons as corrections
from facepic.context import Context
from facepic.db import Library
from facepic.derived import Covers
from facepic.documents import photo_date
from facepic.errors import FacePicError
from facepic.report import person_summary
from facepic.settle import Linkage
from facepic.suggest import keeper_rank
from facepic.thumbnails import square_window
from facepic.web.roster import Roster, Suggested

PER_PAGE = 60  # persons or faces on one page
PAIRS_PER_PAGE = 24  # "same person?" pairs on one page
SORTS = ("most", "name", "recent")  # the people page's orders, the first the default
SEARCH_LIMIT = 20
MAX_QUERY = 200  # characters of a name search
MAX_WANTED = 50  # persons a photo search asks for at once
VIEW_SIDE = 1000  # the photo view's drawing: its longest side, in units of about a screen pixel

IMAGE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FACE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-f[0-9]{1,5}$")
PERSON_ID = re.compile(r"^p[0-9a-f]{15}$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class NotFound(FacePicError):
    """No such person, face or photo: the page answers 404."""


class BadQuery(FacePicError):
    """A search the page will not ask the database: it answers 400."""


@dataclass(frozen=True)
class Page:
    number: int
    per_page: int
    total: int

    @property
    def skip(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def as_dict(self) -> dict[str, int]:
        return {"page": self.number, "per_page": self.per_page, "total": self.total, "pages": self.pages}


def page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or 1), 1_000_000))
    except ValueError:
        return 1


def photo_summary(doc: dict[str, Any]) -> dict[str, Any]:
    path = doc.get("path") or ""
    return {
        "id": doc["_id"],
        "path": path,
        "folder": os.path.dirname(path),
        "root": doc.get("root"),
        "taken_at": doc.get("taken_at"),
        "date": photo_date(doc)[0],  # taken, else the file's time: what the search's dates ask
        "camera": doc.get("camera"),
        "gps": doc.get("gps"),
        "width": doc.get("width"),
        "height": doc.get("height"),
    }


class Site:
    """The library as the page sees it; changes are made one at a time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.covers = Covers(ctx)
        self.roster = Roster(ctx.library)
        self.suggested = Suggested(ctx.library, Linkage.from_settings(ctx.settings))
        self._lock = threading.Lock()

    @property
    def lib(self) -> Library:
        return self.ctx.library

    # --- reads ------------------------------------------------------------------------

    def people(self, page: int, hidden: bool, sort: str = "most", name: str = "") -> dict[str, Any]:
        """A page of persons in ``sort`` order (SORTS), only those whose name holds ``name``."""
        if sort not in SORTS:
            raise BadQuery(f"sort is one of {', '.join(SORTS)} (not {sort[:40]!r})")
        if len(name) > MAX_QUERY:
            raise BadQuery(f"a name filter is at most {MAX_QUERY} characters (this one has {len(name):,})")
        docs, total = self.roster.page(hidden, (page - 1) * PER_PAGE, PER_PAGE, sort, name.strip())
        return {
            "persons": [person_summary(d) for d in docs],
            **Page(page, PER_PAGE, total).as_dict(),
            "hidden_included": hidden,
            "sort": sort,
            "name": name.strip(),
        }

    def find(self, text: str) -> list[dict[str, Any]]:
        if len(text) > MAX_QUERY:
            raise BadQuery(f"a name search is at most {MAX_QUERY} characters (this one has {len(text):,})")
        if not text.strip():
            return []
        return [person_summary(d) for d in self.roster.find(text, SEARCH_LIMIT)]

    def person(self, ref: str, page: int) -> dict[str, Any]:
        """A person by id, unique id prefix or name, as the changes take it, with a page of its faces."""
        try:
            doc = corrections.find_person(self.lib, ref)
        except corrections.NoSuchPerson as e:
            raise NotFound(str(e)) from None
        ordered = self._faces_by_date(doc["_id"])
        total = len(ordered)
        faces = self.lib.web_faces(ordered[(page - 1) * PER_PAGE : page * PER_PAGE])
        images = self.lib.web_images([f["image_id"] for f in faces])
        return {
            **person_summary(doc),
            "face_count": total,
            **Page(page, PER_PAGE, total).as_dict(),
            "faces": [self._face(f, images.get(f["image_id"])) for f in faces],
            "suggested": len(self.suggested.pairs(doc["_id"])),
        }

    def same(self, page: int, ref: str | None = None) -> dict[str, Any]:
        """A page of the "same person?" pairs (``ref``: only those of that person), nearest to a
        merge first: ``a`` is asked about, ``b`` keeps on a "yes"."""
        person = None
        if ref:
            try:
                person = corrections.find_person(self.lib, ref)
            except corrections.NoSuchPerson as e:
                raise NotFound(str(e)) from None
        pairs = self.suggested.pairs(person["_id"] if person else None)
        shown = pairs[(page - 1) * PAIRS_PER_PAGE : page * PAIRS_PER_PAGE]
        people = self.lib.web_persons_by_id([p for pair in shown for p in (pair.a, pair.b)])
        return {
            "pairs": [
                {
                    "a": person_summary(people[pair.a]),
                    "b": person_summary(people[pair.b]),
                    "similarity": round(pair.similarity, 4),
                    "needed": round(pair.needed, 4),
                }
                for pair in shown
                if pair.a in people and pair.b in people
            ],
            **Page(page, PAIRS_PER_PAGE, len(pairs)).as_dict(),
            "person": person_summary(person) if person else None,
        }

    def photo(self, image_id: str, person: str | None = None) -> dict[str, Any]:
        """A photo with its faces: each box on the square thumbnail (percent) and on the whole
        photo (``view``: its size scaled to VIEW_SIDE); with ``person`` (an id), the previous
        and next photos of that person, in the order of the person's page."""
        doc = self.lib.web_images([image_id]).get(image_id) if IMAGE_ID.match(image_id) else None
        if doc is None:
            raise NotFound(f"no photo {image_id!r}")
        faces = [f for f in self.lib.faces_of_image(image_id) if not f.get("ignored")]
        people = self.lib.web_persons_by_id([f["person_id"] for f in faces if f.get("person_id")])
        width, height = int(doc.get("width") or 1), int(doc.get("height") or 1)
        left, top, side = square_window(width, height, [f["box"] for f in faces if f.get("box") is not None])
        scale = VIEW_SIDE / max(width, height)
        out = []
        for f in faces:
            pid = f.get("person_id")
            x1, y1, x2, y2 = (float(v) for v in f.get("box") or (0, 0, 0, 0))
            # Where the box lies on the square thumbnail, in percent (clipped to it).
            on_thumb = [
                max(0.0, min(100.0, 100 * (v - o) / side)) for v, o in ((x1, left), (y1, top), (x2, left), (y2, top))
            ]
            out.append(
                {
                    "face_id": f["_id"],
                    "box": f.get("box"),
                    "on_thumbnail": [round(v, 2) for v in on_thumb],
                    "on_view": [round(v * scale, 1) for v in (x1, y1, x2, y2)],
                    "person": person_summary(people[pid]) if pid in people else None,
                    "candidates": [c for c in f.get("candidates") or [] if c],
                    "rejected": list(f.get("rejected") or []),
                    "locked": bool(f.get("locked")),
                }
            )
        view = {"width": round(width * scale), "height": round(height * scale)}
        return {**photo_summary(doc), "faces": out, "view": view, "nav": self._nav(image_id, person)}

    def _nav(self, image_id: str, person: str | None) -> dict[str, Any] | None:
        """Where the photo stands among ``person``'s photos (newest first): None when it is not one."""
        doc = self.lib.web_person(person) if person and PERSON_ID.match(person) else None
        if doc is None:
            return None
        photos = list(dict.fromkeys(self._faces_by_date(doc["_id"], images=True)))
        if image_id not in photos:
            return None
        at = photos.index(image_id)
        return {
            "person": person_summary(doc),
            "position": at + 1,
            "total": len(photos),
            "prev": photos[at - 1] if at > 0 else None,
            "next": photos[at + 1] if at + 1 < len(photos) else None,
        }

    def unassigned(self, page: int) -> dict[str, Any]:
        faces, total = self.lib.web_unassigned((page - 1) * PER_PAGE, PER_PAGE)
        images = self.lib.web_images([f["image_id"] for f in faces])
        people = self.lib.web_persons_by_id([c for f in faces for c in f.get("candidates") or [] if c])
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for f in faces:
            key = tuple(c for c in f.get("candidates") or [] if c in people)
            groups.setdefault(key, []).append(self._face(f, images.get(f["image_id"])))
        ordered = sorted(groups.items(), key=lambda kv: (not kv[0], -len(kv[1]), kv[0]))
        return {
            "groups": [
                {"candidates": [person_summary(people[c]) for c in key], "faces": group} for key, group in ordered
            ],
            **Page(page, PER_PAGE, total).as_dict(),
        }

    def search(
        self, refs: Sequence[str], page: int, since: str = "", until: str = "", folder: str = ""
    ) -> dict[str, Any]:
        """A page of the photos with every one of the persons ``refs`` (ids or names), dated
        ``since`` through ``until`` (YYYY-MM-DD, either may be empty), under ``folder``."""
        refs = [r.strip() for r in dict.fromkeys(refs) if r.strip()]
        if len(refs) > MAX_WANTED:
            raise BadQuery(f"a photo search names at most {MAX_WANTED} persons (this one names {len(refs):,})")
        for date in (since, until):
            if date and not DATE.match(date):
                raise BadQuery(f"a date is YYYY-MM-DD (not {date[:40]!r})")
        if len(folder) > MAX_QUERY:
            raise BadQuery(f"a folder is at most {MAX_QUERY} characters (this one has {len(folder):,})")
        wanted = list(dict.fromkeys(self._person_id(r) for r in refs))
        chosen = self.lib.web_persons_by_id(wanted)
        asked = {"since": since, "until": until, "folder": folder}
        if not wanted:
            return {"persons": [], "photos": [], **asked, **Page(page, PER_PAGE, 0).as_dict()}
        docs, total = self.lib.web_photos_with(
            wanted, (page - 1) * PER_PAGE, PER_PAGE, since or None, until or None, folder or None
        )
        return {
            "persons": [person_summary(chosen[p]) for p in wanted if p in chosen],
            "photos": [photo_summary(d) for d in docs],
            **asked,
            **Page(page, PER_PAGE, total).as_dict(),
        }

    def _person_id(self, ref: str) -> str:
        """A person's id from an id, a name or a unique id prefix, as the changes take them."""
        if PERSON_ID.match(ref):
            return ref
        named = self.roster.named(ref)
        if len(named) == 1:
            return named[0]
        try:
            return str(corrections.find_person(self.lib, ref)["_id"])
        except corrections.PersonError as e:
            raise BadQuery(str(e)) from None

    def image(self, image_id: str) -> dict[str, Any] | None:
        return self.lib.web_images([image_id]).get(image_id) if IMAGE_ID.match(image_id) else None

    def face_doc(self, face_id: str) -> dict[str, Any] | None:
        if not FACE_ID.match(face_id):
            return None
        try:
            return corrections.find_face(self.lib, face_id)
        except corrections.PersonError:
            return None

    def person_doc(self, person_id: str) -> dict[str, Any] | None:
        return self.lib.web_person(person_id) if PERSON_ID.match(person_id) else None

    def _faces_by_date(self, person_id: str, images: bool = False) -> list[str]:
        """A person's face ids (with ``images``: their photos' ids), newest photo first
        (``photo_date``); undated ones last, by path."""
        rows = self.lib.web_face_photos(person_id)
        photos = self.lib.web_photo_dates([r["image_id"] for r in rows])
        keyed = []
        for r in rows:
            photo = photos.get(r["image_id"], {})
            keyed.append((photo_date(photo)[0] or "", photo.get("path") or "", r["_id"], r["image_id"]))
        keyed.sort(key=lambda k: (k[1], k[2]))
        keyed.sort(key=lambda k: k[0], reverse=True)  # stable: a date's faces stay by path
        return [k[3] if images else k[2] for k in keyed]

    @staticmethod
    def _face(face: dict[str, Any], image: dict[str, Any] | None) -> dict[str, Any]:
        date, source = photo_date(image or {})
        return {
            "face_id": face["_id"],
            "image_id": face["image_id"],
            "box": face.get("box"),
            "photo": (image or {}).get("path"),
            "date": date,
            "date_source": source,
            "person_id": face.get("person_id"),
            "candidates": [c for c in face.get("candidates") or [] if c],
        }

    # --- changes: the CLI's functions ---------------------------------------------------

    def _change(self, fn: Callable[[], Any]) -> Any:
        with self._lock:  # one change at a time: each reads, then writes, several documents
            return fn()

    def rename(self, ref: str, name: str) -> dict[str, Any]:
        doc = self._change(lambda: corrections.name_person(self.lib, ref, name))
        return {
            "id": doc["_id"],
            "name": doc["name"],
            "others_named": corrections.others_named(self.lib, doc["name"], doc["_id"]),
        }

    def merge(self, target: str, sources: Sequence[str]) -> dict[str, Any]:
        doc = self._change(lambda: corrections.merge_persons(self.lib, target, list(sources), self.covers))
        return {"id": doc["_id"], "name": doc.get("name", ""), "dropped_names": doc["dropped_names"]}

    def move(self, face_id: str, target: str | None) -> dict[str, Any]:
        pid = self._change(lambda: corrections.move_face(self.lib, face_id, target, self.covers))
        return {"face_id": face_id, "person_id": pid}

    def reject(self, face_id: str) -> dict[str, Any]:
        left = self._change(lambda: corrections.reject_face(self.lib, face_id, self.covers))
        return {"face_id": face_id, "left": left}

    def move_many(self, face_ids: list[str], target: str | None) -> dict[str, Any]:
        pid = self._change(lambda: corrections.move_faces(self.lib, face_ids, target, self.covers))
        return {"faces": len(set(face_ids)), "person_id": pid}

    def reject_many(self, face_ids: list[str]) -> dict[str, Any]:
        left = self._change(lambda: corrections.reject_faces(self.lib, face_ids, self.covers))
        return {"faces": len(set(face_ids)), "left": left}

    def ignore_many(self, face_ids: list[str]) -> dict[str, Any]:
        left = self._change(lambda: corrections.ignore_faces(self.lib, face_ids, self.covers))
        return {"faces": len(set(face_ids)), "left": left}

    def answer(self, first: str, second: str, same: bool) -> dict[str, Any]:
        """The answer to "same person?": yes merges the two (the named one keeps, else the one
        with more faces), no keeps them apart for good."""

        def answer() -> dict[str, Any]:
            a, b = corrections.find_person(self.lib, first), corrections.find_person(self.lib, second)
            if not same:
                corrections.not_same(self.lib, a["_id"], b["_id"], self.covers)
                return {"same": False, "persons": [a["_id"], b["_id"]]}
            kept, gone = sorted(
                (a, b), key=lambda p: keeper_rank(bool(p.get("name")), p.get("face_count", 0), p["_id"])
            )
            doc = corrections.merge_persons(self.lib, kept["_id"], [gone["_id"]], self.covers)
            return {"same": True, "id": doc["_id"], "name": doc.get("name", ""), "dropped_names": doc["dropped_names"]}

        return self._change(answer)

    def undo(self) -> dict[str, Any]:
        entry = self._change(lambda: corrections.undo_last(self.lib, self.covers))
        return {"undone": entry["kind"], "at": entry["at"], "faces": len(entry["faces"])}

    def cover(self, ref: str, face_id: str) -> dict[str, Any]:
        self._change(lambda: corrections.pick_cover(self.lib, ref, face_id, self.covers))
        return {"id": corrections.find_person(self.lib, ref)["_id"], "cover_face_id": face_id}

    def hide(self, ref: str, hidden: bool) -> dict[str, Any]:
        doc = self._change(lambda: corrections.hide_person(self.lib, ref, hidden))
        return {"id": doc["_id"], "hidden": hidden}
