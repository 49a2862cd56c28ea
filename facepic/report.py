"""Looking at the result: every person with its faces, and an HTML contact sheet."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from facepic import storage
from facepic.db import Library
from facepic.settings import Settings


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
        people.append(
            {
                "id": doc["_id"],
                "name": doc.get("name", ""),
                "hidden": bool(doc.get("hidden")),
                "face_count": len(faces),
                "best_face_id": doc.get("best_face_id"),
                "cover": storage.person_key(doc["_id"]),
                "faces": faces,
            }
        )
    people.sort(key=lambda p: (not p["name"], -p["face_count"], p["id"]))
    return people


def write_contact_sheet(people: list[dict[str, Any]], settings: Settings) -> Path:
    """``<data>/persons.html``: each person's cover and a strip of its face crops."""
    out = settings.folder.contact_sheet
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = settings.folder

    def rel(path: Path) -> str:
        return html.escape(os.path.relpath(path, out.parent))

    rows = []
    for n, person in enumerate(people, 1):
        title = html.escape(person["name"] or f"Person {n}")
        cover = rel(folder.cover(person["id"]))
        strip = "".join(
            f'<img src="{rel(folder.face_crop(f["face_id"]))}" '
            f'title="{html.escape(f["photo"] or "")}" width="64" height="64">'
            for f in person["faces"][:40]
        )
        rows.append(
            f'<section><img class="cover" src="{cover}" width="128" height="128">'
            f'<div><h2>{title}</h2><p>{person["face_count"]} faces &middot; {html.escape(person["id"])}</p>'
            f"<div>{strip}</div></div></section>"
        )
    out.write_text(
        "<!doctype html><meta charset=utf-8><title>FacePic persons</title>"
        "<style>body{font-family:sans-serif;margin:2em}section{display:flex;gap:1em;margin:1em 0}"
        "img{border-radius:6px;margin:2px}h2{margin:0}</style>"
        f"<h1>{len(people)} persons</h1>" + "".join(rows),
        encoding="utf-8",
    )
    return out
