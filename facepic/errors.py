"""Errors a user can cause or cure: each is one line for the user, never a traceback."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class FacePicError(Exception):
    """Base of the errors FacePic reports as one line ("Error: ...")."""


class DatabaseError(FacePicError):
    """MongoDB refused the request; the message holds no secret. (Here, not in ``facepic.db``,
    so that the pool's processes, which never meet the database, need not import pymongo.)"""


class DatabaseUnavailable(DatabaseError):
    """MongoDB could not be reached: worth retrying."""

    setting = "mongodb_uri"  # what the user checks: the CLI names it and where it came from


class DataFolderError(FacePicError):
    """The data folder cannot be written: full, read-only, or not ours to write."""


def first_line(e: BaseException, limit: int = 160) -> str:
    """An error's first line, or its type's name when it says nothing: for one line to a user."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:limit]


def data_folder_error(e: OSError, data_dir: Path) -> DataFolderError:
    """One line for an OSError met while writing the data folder: what it is, and what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataFolderError(
            f"the data folder {data_dir} is full (no space left on its disk): free some space "
            "there, or set FACEPIC_DATA_DIR to a folder on another disk, then run again: it "
            "resumes where it stopped"
        )
    if e.errno == errno.EROFS:
        return DataFolderError(
            f"the data folder {data_dir} is on a read-only file system: set FACEPIC_DATA_DIR to a writable folder"
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return DataFolderError(
            f"the data folder {data_dir} cannot be written (permission denied on "
            f"{e.filename or data_dir}): fix its owner or permissions, or set FACEPIC_DATA_DIR"
        )
    return DataFolderError(f"cannot write the data folder {data_dir} ({e.strerror or type(e).__name__})")


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def is_disk_error(e: BaseException) -> bool:
    """A write refused by the disk itself (full, over quota, read-only): no photo's fault."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def disk_full(path: Path, margin: int = 1 << 20) -> bool:
    """Whether the disk holding ``path`` has less than ``margin`` bytes free."""
    for candidate in (Path(path), *Path(path).parents):
        try:
            return shutil.disk_usage(candidate).free < margin
        except OSError:
            continue
    return False
