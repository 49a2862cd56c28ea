"""Content-derived identifiers, so that every replayed step lands on the same ids and keys."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import uuid
from pathlib import Path

_NAMESPACE = uuid.UUID("6f1d4a52-6a0b-4f5e-9d3c-2b7f0e9a1c11")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The file's SHA-256. A FIFO or device put in a photo's place is refused, never read
    (O_NONBLOCK: opening a FIFO must not wait for a writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        h = hashlib.sha256()
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


def folder_id(root: str, folder_path: str) -> str:
    return "d" + hashlib.sha1(f"{root}\0{folder_path}".encode()).hexdigest()[:15]


def safe_extension(name: str) -> str:
    """The photo's extension for its object key: lower-case letters and digits only."""
    suffix = Path(name).suffix.lower().lstrip(".")
    cleaned = "".join(c for c in suffix if c.isascii() and c.isalnum())[:5]
    return {"jpeg": "jpg", "jpe": "jpg"}.get(cleaned, cleaned) or "bin"
