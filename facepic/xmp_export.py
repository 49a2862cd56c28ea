"""`facepic xmp export`: the names FacePic knows, into XMP sidecars beside the originals (never
into an original), for digiKam, Lightroom and others to read.

Every photo with a face in a named person gets ``<photo file name>.xmp`` (``IMG_0001.JPG.xmp``)
with MWG and Microsoft face regions. An existing sidecar keeps everything else it holds; of its
Face regions, FacePic replaces those whose names it knows (a named person's, or one it wrote
there before) and those over a face it writes; other regions stay. A photo FacePic wrote before
is written again, so a person renamed or merged since is renamed in its sidecars too. A photo
whose original is not on this machine (in the bucket only) has its sidecar written under
``to``, at its path relative to its import folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from facepic import xmp, xmp_sidecar
from facepic.datafolder import write_atomic
from facepic.db import Library
from facepic.report import counted
from facepic.scan import display


@dataclass
class ExportSummary:
    written: int = 0
    unchanged: int = 0
    elsewhere: int = 0  # originals not on this machine, and no ``to`` folder given
    failed: int = 0
    dry_run: bool = False

    def line(self) -> str:
        verb = "to write" if self.dry_run else "written"
        parts = [f"sidecars {verb} {self.written:,}", f"unchanged {self.unchanged:,}"]
        if self.elsewhere:
            parts.append(f"{counted(self.elsewhere, 'photo')} not on this machine (--to FOLDER writes theirs)")
        return ", ".join(parts) + f", failed {self.failed:,}"


def sidecar_path(image: dict[str, Any], to: Path | None) -> Path | None:
    """Where a photo's sidecar goes: beside its original, else under ``to``; None: neither."""
    original = Path(image["root"]) / image["path"]
    if original.is_file():
        return original.with_name(original.name + ".xmp")
    path = PurePosixPath(image["path"])
    if to is None or path.is_absolute() or ".." in path.parts:
        return None
    return to.joinpath(*path.parts[:-1], path.name + ".xmp")


def _regions(image: dict[str, Any], names: dict[str, str]) -> list[tuple[str, xmp.Box]]:
    """The photo's named faces as (name, box normalised to the stored image)."""
    orientation = int(image.get("orientation") or 1)
    width, height = int(image["width"]), int(image["height"])
    return [
        (names[f["person_id"]], xmp.stored(f["box"], orientation, width, height))
        for f in image.get("faces") or []
        if f.get("person_id") in names and f.get("box")
    ]


def _owned(names: set[str], faces: list[tuple[str, xmp.Box]]) -> xmp_sidecar.Dropper:
    """Whether a region of a sidecar is FacePic's to replace: a name it knows (``names``, lower
    case), or over one of the ``faces`` it writes."""

    def drop(name: str, box: xmp.Box | None) -> bool:
        return name.lower() in names or (box is not None and any(xmp.iou(box, b) >= xmp.MATCH_IOU for _, b in faces))

    return drop


def export(lib: Library, to: Path | None, dry_run: bool, report: Callable[[str], None]) -> ExportSummary:
    """Write (or with ``dry_run`` only tell) every sidecar that differs from what it should be."""
    summary = ExportSummary(dry_run=dry_run)
    names = lib.names_of_persons()
    known = {n.lower() for n in names.values()}
    for image in lib.images_with_named_faces():
        target = sidecar_path(image, to)
        if target is None:
            summary.elsewhere += 1
            continue
        faces = _regions(image, names)
        drop = _owned(known | {n.lower() for n in image.get("xmp_exported") or []}, faces)
        orientation = int(image.get("orientation") or 1)
        size = (image["width"], image["height"])
        stored_size = (size[1], size[0]) if orientation in (5, 6, 7, 8) else size
        try:
            existing = target.read_bytes() if target.is_file() else None
            data = xmp_sidecar.write(existing, faces, stored_size, drop)
        except (OSError, xmp.XmpError) as e:
            summary.failed += 1
            report(f"error: cannot write {display(target)}: {getattr(e, 'strerror', None) or e}")
            continue
        if data == existing:
            summary.unchanged += 1
            continue
        summary.written += 1
        listed = ", ".join(sorted({n for n, _ in faces})) or "no names now"
        report(f"{'would write' if dry_run else 'wrote'} {display(target)} ({listed})")
        if not dry_run:
            _write(target, data)
            lib.set_image_fields(image["_id"], {"xmp_exported": sorted({n for n, _ in faces})})
    return summary


def _write(path: Path, data: bytes) -> None:
    """Atomically, with the mode a file made by the user's tools would have."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    write_atomic(path, data)
    os.chmod(path, mode)
