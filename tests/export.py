"""A folder laid out the way a phone and a camera leave an export, built from the labelled
test photos and scikit-image's sample photos (which have no face).

``build(root)`` returns the ``Export`` it made: what each file must become, the identity of
each photo with a face, and the exact summary line a first run must print.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import skimage
from PIL import Image

from tests.conftest import PHOTOS
from tests.test_formats import dng

SAMPLES = Path(skimage.__file__).parent / "data"


@dataclass
class Export:
    photos: dict[str, str] = field(default_factory=dict)  # path -> identity ("" for no face)
    duplicates: dict[str, str] = field(default_factory=dict)  # path -> path of the original
    pairs: dict[str, str] = field(default_factory=dict)  # RAW path -> the JPEG processed for it
    skipped: dict[str, str] = field(default_factory=dict)  # path -> category

    def summary(self) -> str:
        faces = sum(1 for identity in self.photos.values() if identity)
        no_face = len(self.photos) - faces
        not_photos = sum(1 for c in self.skipped.values() if c == "not a photo")
        hidden = sum(1 for c in self.skipped.values() if c == "hidden")
        return (
            f"photos {len(self.photos) + len(self.duplicates)}: done {len(self.photos)} (faces {faces}, "
            f"no face {no_face}), already done 0, duplicates {len(self.duplicates)}, failed 0; skipped "
            f"{not_photos} files that are not photos, {hidden} hidden files or folders, "
            f"{len(self.pairs)} RAW file paired with its JPEG, "
            f"{sum(1 for c in self.skipped.values() if c == 'sidecar')} XMP sidecar of a photo"
        )


def face(identity: str, name: str) -> Image.Image:
    return Image.open(PHOTOS / identity / name).convert("RGB")


def _save(path: Path, im: Image.Image, fmt: str, **kw: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)


def build(root: Path) -> Export:
    ex = Export()

    def photo(path: str, identity: str, im: Image.Image, fmt: str, **kw: object) -> None:
        _save(root / path, im, fmt, **kw)
        ex.photos[path] = identity

    def other(path: str, data: bytes, category: str = "not a photo") -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        ex.skipped[path] = category

    phone = "DCIM/100APPLE"
    photo(f"{phone}/IMG_0001.JPG", "tom_hanks", face("tom_hanks", "07.jpg"), "JPEG", quality=92)
    photo(f"{phone}/IMG_0002.HEIC", "tom_hanks", face("tom_hanks", "08.jpg"), "HEIF", quality=90)
    other(f"{phone}/IMG_0003.MOV", b"\x00\x00\x00\x18ftypqt  " + b"\x00" * 2000)
    other(f"{phone}/IMG_0003.AAE", b"<?xml version='1.0'?><plist/>")
    photo(f"{phone}/IMG_0004.PNG", "", Image.open(SAMPLES / "coffee.png").convert("RGB"), "PNG")  # a screenshot
    # Held sideways: stored rotated, EXIF orientation 6 turns it upright again.
    sideways = Image.Exif()
    sideways[0x0112] = 6
    photo(
        f"{phone}/IMG_0005.JPG",
        "keanu_reeves",
        face("keanu_reeves", "00.jpg").transpose(Image.Transpose.ROTATE_90),
        "JPEG",
        quality=92,
        exif=sideways.tobytes(),
    )
    photo("DCIM/101APPLE/IMG_0101.AVIF", "keanu_reeves", face("keanu_reeves", "05.jpg"), "AVIF", quality=90)
    photo("DCIM/101APPLE/IMG_0102.JPG", "", Image.open(SAMPLES / "rocket.jpg").convert("RGB"), "JPEG", quality=90)
    photo("DCIM/101APPLE/IMG_0103.WEBP", "", Image.open(SAMPLES / "chelsea.png").convert("RGB"), "WEBP")
    other("DCIM/101APPLE/IMG_0101.AVIF.xmp", b"<x:xmpmeta/>", "sidecar")  # not XML (a prefix unbound): a warning
    # A camera shooting RAW+JPEG, and a RAW alone.
    camera = "Camera/2024-07-04"
    photo(f"{camera}/DSC_0001.JPG", "jessica_alba", face("jessica_alba", "00.jpg"), "JPEG", quality=95)
    (root / camera / "DSC_0001.DNG").write_bytes(dng(face("jessica_alba", "00.jpg")))
    ex.pairs[f"{camera}/DSC_0001.DNG"] = f"{camera}/DSC_0001.JPG"
    (root / camera / "DSC_0002.DNG").write_bytes(dng(face("jessica_alba", "05.jpg")))
    ex.photos[f"{camera}/DSC_0002.DNG"] = "jessica_alba"
    other(f"{camera}/DSC_0003.MP4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000)
    # Scans and odds and ends.
    photo("Scans/grandpa.tif", "tom_hanks", face("tom_hanks", "09.jpg"), "TIFF", compression="tiff_lzw")
    photo("Scans/moon.bmp", "", Image.open(SAMPLES / "moon.png").convert("L"), "BMP")
    photo("Scans/party.gif", "jessica_alba", face("jessica_alba", "09.jpg").quantize(256), "GIF")
    other("Scans/notes.txt", b"box 3, attic")
    # An app's backup that names its photos without an extension, beside a file that is no photo.
    photo("Backups/attachment_0001", "keanu_reeves", face("keanu_reeves", "05.jpg"), "JPEG", quality=85)
    other("Backups/LICENSE", b"Copyright the app's makers")
    other("metadata.json", b"{}")
    other("Thumbs.db", b"\x00" * 64)
    other("desktop.ini", b"[.ShellClassInfo]")
    other(".DS_Store", b"\x00" * 64, "hidden")
    other("DCIM/.thumbnails/IMG_0001.jpg", b"\xff\xd8 tiny", "hidden")
    ex.skipped.pop("DCIM/.thumbnails/IMG_0001.jpg")
    ex.skipped["DCIM/.thumbnails"] = "hidden"
    # A backup of the phone: byte-identical copies.
    (root / "Phone backup").mkdir()
    shutil.copy(root / phone / "IMG_0001.JPG", root / "Phone backup" / "IMG_0001.JPG")
    ex.duplicates["Phone backup/IMG_0001.JPG"] = f"{phone}/IMG_0001.JPG"
    return ex


def identities(ex: Export) -> dict[str, list[str]]:
    """identity -> its photos (RAW+JPEG pairs once, duplicates not at all)."""
    out: dict[str, list[str]] = {}
    for path, identity in ex.photos.items():
        if identity:
            out.setdefault(identity, []).append(path)
    return out


__all__ = ["Export", "build", "identities", "io"]
