"""The shapes of FacePic's MongoDB documents, built here and only here.

Every writer (the index stage, corrections, recluster, reembed) takes its documents from
these functions, so a field is named, rounded and defaulted in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bson.binary import Binary

from facepic.quality import FaceQuality

if TYPE_CHECKING:
    import numpy as np


def embedding_to_bson(vector: np.ndarray) -> Binary:
    """A 512-d embedding as little-endian float32 bytes (2 KiB), not a list of doubles."""
    import numpy as np  # reading the library needs none (a command's start)

    return Binary(np.asarray(vector, dtype="<f4").tobytes())


def embedding_from_bson(data: bytes) -> np.ndarray:
    import numpy as np

    return np.frombuffer(bytes(data), dtype="<f4")


def embeddings_from_bson(rows: Sequence[bytes], dim: int = 512) -> np.ndarray:
    """Many stored embeddings as one N x dim matrix."""
    import numpy as np

    return np.frombuffer(b"".join(bytes(r) for r in rows), dtype="<f4").reshape(len(rows), dim)


def face_geometry(box: Sequence[float] | np.ndarray, landmarks: np.ndarray, score: float) -> dict[str, Any]:
    """A face's box, five landmarks (pixels of the full-size upright photo) and detection score."""
    return {
        "box": [round(float(v), 2) for v in box],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in landmarks],
        "score": round(float(score), 5),
    }


def face_fields(
    model: str,
    embedding: np.ndarray,
    box: Sequence[float] | np.ndarray,
    landmarks: np.ndarray,
    score: float,
    quality: FaceQuality,
    can_found: bool,
) -> dict[str, Any]:
    """What a model computed about one face: the part reembed stages and switches."""
    return {
        "model": model,
        "embedding": embedding_to_bson(embedding),
        **face_geometry(box, landmarks, score),
        "quality": quality.as_dict(),
        "can_found": can_found,
    }


def face(
    face_id: str, image_id: str, index: int, fields: Mapping[str, Any], person_id: str | None, seq: int | None
) -> dict[str, Any]:
    """A face document: its model's fields, its photo, its person and its sequence number."""
    return {"_id": face_id, "image_id": image_id, "index": index, **fields, "person_id": person_id, "seq": seq}


def image_faces(faces: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The photo's redundant list of its faces, in index order."""
    return [
        {"face_id": f["_id"], "person_id": f.get("person_id"), "box": f.get("box"), "score": f.get("score")}
        for f in faces
    ]


def image(
    image_id: str,
    job: Mapping[str, Any],
    info: Mapping[str, Any],
    folder_id: str,
    ext: str,
    keys: Mapping[str, str] | None,
    faces: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A photo's document: where it is, what it is (EXIF and GPS), where its objects are, its faces."""
    meta = info["metadata"]
    return {
        "_id": image_id,
        "sha256": job["sha256"],
        "filename": os.path.basename(job["path"]),
        "path": job["path"],
        "root": job["root"],
        "folder_id": folder_id,
        "ext": ext,
        "size": job.get("size"),
        "mtime_ns": job.get("mtime_ns"),  # with size: the page serves the file unchanged without hashing it
        "width": info["width"],
        "height": info["height"],
        "format": info["format"],
        "orientation": meta.get("orientation", 1),
        "taken_at": meta.get("taken_at"),
        "file_time": file_time(job.get("mtime_ns")),
        "camera": meta.get("camera"),
        "gps": meta.get("gps"),
        "model": info["model"],
        "companions": list(job.get("companions") or []),
        "uploaded": keys is not None,
        "keys": dict(keys) if keys else None,
        "faces": image_faces(faces),
    }


def file_time(mtime_ns: int | None) -> str | None:
    """A file's modification time as ``taken_at`` is written (ISO, to the second, UTC)."""
    if mtime_ns is None:
        return None
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def photo_date(image: Mapping[str, Any]) -> tuple[str | None, str]:
    """When a photo was taken, as well as FacePic knows: its EXIF time, else its file's
    time when recorded; and where the date came from ("taken", "file" or "")."""
    for field, source in (("taken_at", "taken"), ("file_time", "file")):
        value = image.get(field)
        if isinstance(value, datetime):  # written by another client as a date, not text
            value = value.replace(tzinfo=None).isoformat(timespec="seconds")
        if value:
            return str(value), source
    return None, ""


def new_person(model: str | None, now: str, founded_by: str | None = None) -> dict[str, Any]:
    """A person's fields when it is created (a recount and a cover come after)."""
    return {
        "model": model,
        "name": "",
        "created_at": now,
        "founded_by": founded_by,
        "best_face_id": None,
        "best_score": -1.0,
        "cover_uploaded": False,
    }


def folder(folder_id: str, root: str, folder_path: str, name: str, parent_id: str | None) -> dict[str, Any]:
    return {"_id": folder_id, "root": root, "path": folder_path, "name": name, "parent_id": parent_id}
