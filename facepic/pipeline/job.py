"""The job: the small JSON-able record of one photo that travels from stage to stage.

Image bytes and embeddings never travel in it: the detect stage keeps them in the photo's work
file (``facepic.pipeline.workfile``) and the index stage moves them into MongoDB. A photo that
cannot be processed carries ``error`` through the remaining stages to ``log``.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

from facepic import ids


class Replaced(TypedDict):
    """The old version of a photo (other content at its path) that the index stage removed."""

    image_id: str
    sha256: str
    faces: int
    corrected: int  # of those faces, how many the user had moved or rejected


class Job(TypedDict, total=False):
    image_id: str
    sha256: str
    file: str  # the photo file to read, absolute, as the scan saw it
    root: str  # the import folder, absolute
    path: str  # the photo relative to root, POSIX: as the ledger and MongoDB call it
    size: int | None
    mtime_ns: int | None
    model: str  # the model source: buffalo_l, buffalo_s or a folder
    upload: bool
    upload_only: bool
    ext: str  # the object key's extension, from the decoded format (not the file's name)
    upload_error: str
    faces: int
    companions: list[str]  # RAW files of a RAW+JPEG pair, relative to root
    uploaded: bool
    error: str
    failed_stage: str
    timings: dict[str, float]  # seconds per stage, for benchmarks and Flower
    replaced: Replaced  # the old version of this file (other content) the index stage removed
    warnings: list[str]  # what went wrong without failing the photo (XMP that cannot be read)
    xmp_names: int  # names of XMP face regions read (index stage)
    xmp_matched: int  # of those, the names given to a detected face
    # The person the index stage gave each face it stored, or the first it hesitated between
    # (None: neither): what `facepic run` counts to settle as it goes.
    persons: list[str | None]
    # The photo's faces from detect to the log stage, in place of its work file, under `facepic
    # run` alone (pool and main process: never on a queue, whose jobs are JSON).
    work: dict[str, Any]


def received(job: Job) -> Job:
    """A job as read from a queue. Jobs sent before the photo's path was named ``path`` carry
    it as ``rel``: those still in flight (in Redis) across an upgrade are read as they are now."""
    if "rel" not in job:
        return job
    old: dict[str, Any] = dict(job)
    old.setdefault("path", old.pop("rel"))
    return cast(Job, old)


def fail(job: Job, stage: str, reason: str) -> Job:
    """The job, marked failed at ``stage`` for ``reason`` (shown to the user)."""
    return {**job, "error": reason, "failed_stage": stage}


def extension(job: Job) -> str:
    """The extension of the original's object key: the decoded format's, else the name's."""
    return job.get("ext") or ids.safe_extension(job["path"])
