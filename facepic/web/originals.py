"""Opening a photo in the import folder for the page: the file that was imported, or nothing.

The page serves what the database says is at ``root/path``; by the time someone asks, that
path may be a link to another file (``/etc/shadow``, another user's folder) or other bytes.
So no component below the import folder is followed if it is a link, the file must be a
regular one, and its size and modification time (else its SHA-256) must still be those
recorded at import.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import PurePosixPath
from typing import BinaryIO

CHANGED = "changed since it was imported: run facepic run"


class Changed(Exception):
    """The path no longer holds the photo that was imported (a link, other bytes, not a file)."""


def open_original(
    root: str, path: str, size: int | None, sha256: str | None, mtime_ns: int | None = None
) -> BinaryIO | None:
    """The imported photo at ``root``/``path``, opened at its start; None when nothing is there
    (a drive not mounted, the file gone); Changed when something else is. A file of the size
    and modification time recorded at import is served as it is; any other is hashed first
    (a photo imported before the time was recorded, or one only touched since)."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in (".", "..") for p in parts):
        raise Changed(CHANGED)
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        # O_NONBLOCK: a FIFO put in the photo's place must not hang the request.
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link, or a file where a folder was
            raise Changed(CHANGED) from None
        return None
    finally:
        os.close(folder)
    f = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size) or not sha256:
            raise Changed(CHANGED)
        if mtime_ns is not None and st.st_mtime_ns == mtime_ns:
            return f
        # The bytes are hashed from the descriptor that is then served: no swap in between.
        if hashlib.file_digest(f, "sha256").hexdigest() != sha256:
            raise Changed(CHANGED)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f
