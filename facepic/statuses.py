"""What the ledger says of a file: its status, and why the scan skipped it.

`StrEnum`s: a member equals its string and is written to JSON as that string, so the ledger's
lines are the same as when these were spelt out. A leaf: it imports nothing of FacePic."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A file's status in the ledger (`processed_log.jsonl`); a file's state is its last line."""

    QUEUED = "queued"  # handed to the pipeline, its outcome not logged yet
    DONE = "done"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # the content of a photo stored under another path
    SKIPPED = "skipped"  # not processed at all; its ``category`` (a SkipKind) says why


class SkipKind(StrEnum):
    """Why the scan skipped a file or folder (the ledger's ``category``)."""

    NOT_A_PHOTO = "not a photo"
    HIDDEN = "hidden"
    RAW_JPEG_PAIR = "RAW+JPEG pair"  # the RAW file of a pair, processed as its JPEG
    SIDECAR = "sidecar"  # an XMP sidecar of a photo
    LINK = "link"  # a symbolic link not followed (broken, a loop)
    FOLDER = "folder"  # an unreadable folder
    SPECIAL = "special"  # a device, FIFO or socket, never opened; or a file that cannot be read
    SEEN = "seen"  # a folder scanned already under another path
