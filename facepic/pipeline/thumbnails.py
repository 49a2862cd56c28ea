"""Stage 2, thumbnails: the 300x300 thumbnail and one square crop per face, in the data folder."""

from __future__ import annotations

from facepic import ids, thumbnails
from facepic.context import Context
from facepic.datafolder import write_atomic
from facepic.decode import PhotoError, time_limit
from facepic.pipeline import workfile
from facepic.pipeline.detect import LastDecoded, decode_photo
from facepic.pipeline.job import Job, fail


def make_thumbnails(ctx: Context, job: Job) -> Job:
    """The 300x300 thumbnail and one square crop per face, under the data folder."""
    if job.get("error"):
        return job
    last = ctx.state(LastDecoded)
    cached, last.photo = last.photo, None
    hit = cached is not None and cached[0] == job["image_id"]
    try:
        work = workfile.held(ctx.folder, job, pixels=not hit)
    except workfile.WorkFileError as e:
        return fail(job, "thumbnails", str(e))
    if work is None:  # already indexed: its thumbnails exist
        return job
    rgb = work.pop("rgb", None)
    scale = float(work.pop("scale", 0.0))
    if hit:
        rgb, scale = cached[1].rgb, cached[1].scale  # type: ignore[index]
    elif rgb is None:  # a work file from before pixels were kept in it
        try:
            with time_limit(ctx.settings.photo_timeout):
                decoded = decode_photo(ctx, job)
        except PhotoError as e:
            return fail(job, "thumbnails", str(e))
        rgb, scale = decoded.rgb, decoded.scale
    boxes = work["boxes"] * scale
    write_atomic(ctx.folder.thumbnail(job["image_id"]), thumbnails.thumbnail(rgb, boxes))
    for i, box in enumerate(boxes):
        crop = thumbnails.face_crop(rgb, box)
        write_atomic(ctx.folder.face_crop(ids.face_id(job["image_id"], i)), crop)
    ctx.folder.pixels_file(job["image_id"]).unlink(missing_ok=True)  # the pixels have served
    return job
