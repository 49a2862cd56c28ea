"""Which files are photos: the one list of extensions FacePic reads, and what it skips quietly."""

from __future__ import annotations

import os
from typing import Literal

RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})
PHOTO_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".heic", ".heif", ".avif", ".tif", ".tiff", ".gif", ".bmp",
}) | RAW_EXTENSIONS

Kind = Literal["photo", "raw", "other"]


def classify(name: str) -> Kind:
    """``photo`` (decoded as it is), ``raw`` (decoded through its embedded preview) or
    ``other`` (a video, a sidecar, a system file: skipped quietly)."""
    ext = os.path.splitext(name)[1].lower()
    if ext in RAW_EXTENSIONS:
        return "raw"
    return "photo" if ext in PHOTO_EXTENSIONS else "other"
