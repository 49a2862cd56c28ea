"""Stage 3, upload: the original and its thumbnail to the bucket, at keys derived from the content."""

from __future__ import annotations

import os
from pathlib import Path

from facepic import storage
from facepic.context import Context
from facepic.pipeline.job import Job, extension, fail


def upload(ctx: Context, job: Job) -> Job:
    """Original and thumbnail to the bucket at keys derived from the content hash."""
    if job.get("error") or not job.get("upload"):
        return job
    image_id = job["image_id"]
    ext = extension(job)
    try:
        size = os.stat(job["file"]).st_size
    except OSError as e:
        return fail(job, "upload", f"cannot read file for upload ({e.strerror})")
    if job.get("size") is not None and size != job["size"]:
        return fail(job, "upload", "file changed since it was scanned")
    store = ctx.store
    store.put_file(
        storage.original_key(image_id, ext),
        Path(job["file"]),
        storage.CONTENT_TYPES.get(ext, "application/octet-stream"),
        sha256=job["sha256"],
    )
    store.put_file(storage.thumbnail_key(image_id), ctx.folder.thumbnail(image_id), "image/jpeg")
    return {**job, "uploaded": True, "upload_error": ""}


def not_uploaded(job: Job, reason: str) -> Job:
    """The bucket stayed out of reach: the photo goes on, processed but not uploaded
    (``--upload-only`` finishes it later)."""
    return {**job, "uploaded": False, "upload_error": reason}
