"""Content-derived identifiers, so that every replayed step lands on the same ids and keys."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

_NAMESPACE = uuid.UUID("6f1d4a52-6a0b-4f5e-9d3c-2b7f0e9a1c11")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def image_id(sha256: str) -> str:
    """The image's uuid: derived from its content hash, the same on every machine."""
    return str(uuid.uuid5(_NAMESPACE, sha256))


def face_id(image_id: str, index: int) -> str:
    return f"{image_id}-f{index}"


def person_id(founding_face_id: str) -> str:
    """A new person's id, derived from the face that founded it: a replay makes no second one."""
    return "p" + hashlib.sha1(founding_face_id.encode()).hexdigest()[:15]


def folder_id(root: str, rel_folder: str) -> str:
    return "d" + hashlib.sha1(f"{root}\0{rel_folder}".encode()).hexdigest()[:15]


def safe_extension(name: str) -> str:
    """The photo's extension for its object key: lower-case letters and digits only."""
    suffix = Path(name).suffix.lower().lstrip(".")
    cleaned = "".join(c for c in suffix if c.isascii() and c.isalnum())[:5]
    return {"jpeg": "jpg", "jpe": "jpg"}.get(cleaned, cleaned) or "bin"
