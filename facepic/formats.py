"""Which files are photos, by name, and the object key extension of each decoded format.

The scanner decides by name (it must not open every file); ``facepic.decode`` then decodes
by content, so a PNG named ``.jpg`` still decodes and is stored as ``.png``.
"""

from __future__ import annotations

import os
from typing import Literal

# Decoded by Pillow (HEIC/HEIF through pillow-heif, AVIF natively since Pillow 11.2).
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".webp",
        ".heic",
        ".heif",
        ".avif",
        ".tif",
        ".tiff",
        ".gif",
        ".bmp",
    }
)
# Camera RAW: FacePic decodes the preview JPEG the camera embeds, never the sensor data.
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})
PHOTO_EXTENSIONS = IMAGE_EXTENSIONS | RAW_EXTENSIONS

# Files that sit beside photos in every camera roll and export; skipped without a report.
NOT_PHOTO_EXTENSIONS = frozenset(
    {
        ".mov",
        ".mp4",
        ".m4v",
        ".avi",
        ".3gp",
        ".mkv",
        ".mts",  # videos (and Live Photo halves)
        ".xmp",
        ".aae",
        ".json",
        ".thm",  # sidecars: edits, Google Takeout metadata, video thumbnails
        ".txt",
        ".md",
        ".csv",
        ".log",
        ".nfo",
        ".ini",
        ".db",  # text and catalogue files
    }
)
NOT_PHOTO_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})  # compared lower-case

# Pillow's format names, for Image.open(formats=...): decoding by content stays within these,
# so a file named .jpg cannot reach a plugin FacePic never meant to run (EPS calls Ghostscript).
PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "AVIF", "TIFF", "GIF", "BMP")

# Decoded format -> extension of the original's object key. A RAW keeps its own extension:
# the original is stored as it came, and its format name is that extension (see decode).
FORMAT_EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "HEIF": "heic",
    "AVIF": "avif",
    "TIFF": "tif",
    "GIF": "gif",
    "BMP": "bmp",
    **{ext[1:].upper(): ext[1:] for ext in RAW_EXTENSIONS},
}

Kind = Literal["photo", "raw", "skip", "other"]


def classify(name: str) -> Kind:
    """What the scanner does with a file named ``name`` (a base name or a path).

    "photo" and "raw": decode it; "skip": a known non-photo, ignored without a report;
    "other": an unknown kind of file, which the scanner may report as not a photo.
    """
    base = os.path.basename(name)
    if base.lower() in NOT_PHOTO_NAMES or base.startswith("._"):
        # "._IMG_1.jpg" is macOS's AppleDouble metadata for IMG_1.jpg on non-Mac disks, not a photo.
        return "skip"
    ext = os.path.splitext(base)[1].lower()
    if ext in RAW_EXTENSIONS:
        return "raw"
    if ext in IMAGE_EXTENSIONS:
        return "photo"
    if ext in NOT_PHOTO_EXTENSIONS:
        return "skip"
    return "other"


def is_photo_name(name: str) -> bool:
    """True when the scanner should decode the file named ``name`` (photo or RAW)."""
    return classify(name) in ("photo", "raw")


# The first bytes of the photo formats a file without an extension is taken for (some phone
# backups and app exports name photos IMG_0001). TIFF is left out: RAW files begin alike.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
_ISO_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def photo_signature(head: bytes) -> bool:
    """True when a file's first bytes ``head`` (16 or more) are those of a JPEG, PNG, GIF, WebP,
    HEIF or AVIF."""
    return (
        head.startswith(_SIGNATURES)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS)
    )


def raw_format(name: str) -> str | None:
    """The RAW format name (``"DNG"``, ``"CR2"``...) a file's extension claims, or None."""
    ext = os.path.splitext(name)[1].lower()
    return ext[1:].upper() if ext in RAW_EXTENSIONS else None
