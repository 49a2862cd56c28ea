"""The data folder: where every local file lives, and the one way to write one atomically.

<data>/processed_log.jsonl          the ledger
<data>/work/<image id>.work         a photo's faces between detect and index
<data>/work/<image id>.rgb.npy      its decoded pixels, for a thumbnails task elsewhere
<data>/thumbnails/thumb_<id>.jpg    photo thumbnails (the bucket's key, locally)
<data>/thumbnails/display_<id>.jpg  the page's screen-size rendition, made on first view
<data>/thumbnails/faces/face_<face id>.jpg, faces/person_<person id>.jpg
<data>/objects/                     the folder store (no bucket, FACEPIC_COPY_ORIGINALS)
<data>/db/                          the embedded database
<data>/persons.html                 the contact sheet
<data>/serving.json                 the embedded server's address while `facepic serve` or a lingering server runs
<data>/unsettled                    a run stored faces it has not settled yet (killed midway)
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class DataFolder:
    root: Path

    @property
    def ledger(self) -> Path:
        return self.root / "processed_log.jsonl"

    @property
    def thumbnails(self) -> Path:
        return self.root / "thumbnails"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def database(self) -> Path:
        return self.root / "db"

    @property
    def contact_sheet(self) -> Path:
        return self.root / "persons.html"

    @property
    def unsettled(self) -> Path:
        """There while a run processes photos, until its settle is done: the next run
        settles even with nothing new."""
        return self.root / "unsettled"

    @property
    def serving(self) -> Path:
        """There while `facepic serve` holds the embedded database: its pid and loopback port,
        so that the commands that may share the library use serve's server."""
        return self.root / "serving.json"

    def work_file(self, image_id: str) -> Path:
        return self.work / f"{image_id}.work"

    def pixels_file(self, image_id: str) -> Path:
        return self.work / f"{image_id}.rgb.npy"

    def thumbnail(self, image_id: str) -> Path:
        return self.thumbnails / f"thumb_{image_id}.jpg"

    def display(self, image_id: str) -> Path:
        """The page's screen-size rendition of a photo: made when first viewed, never uploaded."""
        return self.thumbnails / f"display_{image_id}.jpg"

    def face_crop(self, face_id: str) -> Path:
        return self.thumbnails / "faces" / f"face_{face_id}.jpg"

    def cover(self, person_id: str) -> Path:
        return self.thumbnails / "faces" / f"person_{person_id}.jpg"

    def wipeable(self) -> list[Path]:
        """What `cleanup` deletes here (the folder store's objects go key by key)."""
        return [self.ledger, self.thumbnails, self.work, self.contact_sheet, self.unsettled]


def replace_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it
    in place: a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def same_file_atomically(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content in one step (a reader sees the old file or the new):
    a hard link where the file system has them, else a copy. Neither file is ever written in
    place afterwards (each is replaced whole), so the two names never disturb each other."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        try:
            os.link(src, tmp)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOSPC, errno.EROFS, errno.EDQUOT):
                raise
            shutil.copyfile(src, tmp)  # no hard links here (another file system, FAT)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    replace_atomically(path, lambda f: f.write(data))
