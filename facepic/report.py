"""Looking at the result: every person with its faces, and an HTML contact sheet."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facepic import storage
from facepic.db import Library
from facepic.settings import Settings

if TYPE_CHECKING:
    from facepic.datafolder import DataFolder


def counted(n: int, noun: str, verb: tuple[str, str] | None = None) -> str:
    """``1 face``, ``3 faces``; with ``verb`` (singular, plural) ``1 face belongs``."""
    words = noun if n == 1 else noun + "s"
    if verb:
        words += " " + verb[n != 1]
    return f"{n:,} {words}"


def person_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """A person as every reader outside gets it (`persons --json`, the page's API, its search):
    ``id``, ``name`` ("" when unnamed), ``face_count``, ``hidden``, ``cover_face_id``."""
    return {
        "id": doc["_id"],
        "name": doc.get("name") or "",
        "face_count": int(doc.get("face_count") or 0),
        "hidden": bool(doc.get("hidden")),
        "cover_face_id": doc.get("best_face_id"),
    }


def persons(library: Library, hidden: bool = False) -> list[dict[str, Any]]:
    """Persons, named first, then most faces first; each face with its photo (relative to
    its import root) and box. Hidden persons only with ``hidden``."""
    images = library.image_places()
    faces_by_person: dict[str, list[dict[str, Any]]] = {}
    for face in library.assigned_faces():
        image = images.get(face["image_id"], {})
        faces_by_person.setdefault(face["person_id"], []).append(
            {
                "face_id": face["_id"],
                "photo": image.get("path"),
                "root": image.get("root"),
                "box": face.get("box"),
                "score": face.get("score"),
            }
        )
    people = []
    for doc in library.all_persons():
        if doc.get("hidden") and not hidden:
            continue
        faces = sorted(faces_by_person.get(doc["_id"], []), key=lambda f: (f["photo"] or "", f["face_id"]))
        summary = person_summary(doc)
        people.append(
            {
                **summary,
                "face_count": len(faces),
                # Kept for scripts written before the shape was one: the cover face's id under
                # its old name, and the cover image's object key.
                "best_face_id": summary["cover_face_id"],
                "cover": storage.person_key(doc["_id"]),
                "faces": faces,
            }
        )
    people.sort(key=lambda p: (not p["name"], -p["face_count"], p["id"]))
    return people


SHOWN = 40  # faces of a person in view; the rest open behind "more"


def write_contact_sheet(
    people: list[dict[str, Any]],
    settings: Settings,
    unassigned: list[dict[str, Any]] | None = None,
    unassigned_total: int = 0,
) -> Path:
    """``<data>/persons.html``, to share: each person (by name, else by its id, as the
    commands take it) with its cover and every face (past 40 behind "more"), each face linking
    to its photo's thumbnail; then the faces that belong to nobody."""
    out = settings.folder.contact_sheet
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = _Sheet(settings.folder, out)
    rows = [sheet.person(person) for person in people]
    if unassigned_total:
        rows.append(sheet.unassigned(list(unassigned or []), unassigned_total))
    out.write_text(
        "<!doctype html><meta charset=utf-8><title>FacePic persons</title>"
        "<style>body{font-family:sans-serif;margin:2em}section{display:flex;gap:1em;margin:1em 0}"
        "img{border-radius:6px;margin:2px}h2{margin:0}summary{cursor:pointer;color:#555}</style>"
        f"<h1>{counted(len(people), 'person')}</h1>" + "".join(rows),
        encoding="utf-8",
    )
    return out


class _Sheet:
    """The contact sheet's HTML pieces, linking to files relative to the sheet at ``out``."""

    def __init__(self, folder: DataFolder, out: Path) -> None:
        self.folder = folder
        self.out = out

    def rel(self, path: Path) -> str:
        return html.escape(os.path.relpath(path, self.out.parent))

    def tile(self, face: dict[str, Any]) -> str:
        image_id = str(face.get("image_id") or face["face_id"].rpartition("-f")[0])
        title = html.escape(f"{face.get('photo') or ''} ({face['face_id']})")
        return (
            f'<a href="{self.rel(self.folder.thumbnail(image_id))}"><img src="{self.rel(self.folder.face_crop(face["face_id"]))}" '
            f'title="{title}" alt="" width="64" height="64" loading="lazy"></a>'
        )

    def strip(self, faces: list[dict[str, Any]]) -> str:
        shown = "".join(self.tile(f) for f in faces[:SHOWN])
        if len(faces) > SHOWN:
            shown += (
                f"<details><summary>{len(faces) - SHOWN} more</summary>"
                + "".join(self.tile(f) for f in faces[SHOWN:])
                + "</details>"
            )
        return shown

    def person(self, person: dict[str, Any]) -> str:
        title = html.escape(person["name"] or person["id"])
        flag = " &middot; hidden" if person.get("hidden") else ""
        return (
            f'<section><img class="cover" src="{self.rel(self.folder.cover(person["id"]))}" alt="" width="128" height="128">'
            f"<div><h2>{title}</h2><p>{counted(person['face_count'], 'face')} &middot; <code>{html.escape(person['id'])}</code>"
            f"{flag}</p><div>{self.strip(person['faces'])}</div></div></section>"
        )

    def unassigned(self, faces: list[dict[str, Any]], total: int) -> str:
        listed = f" (the first {len(faces)})" if len(faces) < total else ""
        return f"<h1>{counted(total, 'face', ('belongs', 'belong'))} to nobody yet{listed}</h1><div>{self.strip(faces)}</div>"
