"""The page's screen-size rendition of a photo: made from the original on first view and kept
in the data folder (``DataFolder.display``); None when the original cannot be reached."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

from facepic import thumbnails
from facepic.context import Context
from facepic.datafolder import write_atomic
from facepic.errors import FacePicError
from facepic.web import originals


def rendition(ctx: Context, image: dict[str, Any]) -> Path | None:
    """The photo's rendition file, made now if it is not there yet."""
    path = ctx.folder.display(image["_id"])
    if path.is_file():
        return path
    source = _original(ctx, image)
    if source is None:
        return None
    with source:
        data = thumbnails.display(source)
    if data is None:
        return None
    write_atomic(path, data)
    return path


def _original(ctx: Context, image: dict[str, Any]) -> BinaryIO | None:
    """The original's bytes: from the store it was copied to, else at its path as imported."""
    key = (image.get("keys") or {}).get("original")
    if key and image.get("uploaded"):
        try:
            return io.BytesIO(ctx.store.get_bytes(key))
        except (FacePicError, OSError):
            pass  # the bucket is away: the path may still hold it
    if not (image.get("root") and image.get("path")):
        return None
    try:
        return originals.open_original(
            image["root"], image["path"], image.get("size"), image.get("sha256"), image.get("mtime_ns")
        )
    except originals.Changed:
        return None
