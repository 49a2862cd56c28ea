"""Stage 1, detect: decode the photo at reduced size, find its faces, keep them in its work file
(under `facepic run`, in its job)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facepic import ids, quality, xmp
from facepic.context import Context
from facepic.decode import FORMAT_EXTENSIONS, Decoded, PhotoError, decode, read_photo, time_limit
from facepic.models import EMBEDDING_DIM
from facepic.pipeline import workfile
from facepic.pipeline.job import Job, fail


@dataclass
class LastDecoded:
    """The photo detect decoded last in this process, for thumbnails when it runs next here."""

    photo: tuple[str, Decoded] | None = None  # image id, decoded


def decode_photo(ctx: Context, job: Job, with_xmp: bool = False) -> Decoded:
    """The photo decoded from bytes read once and found to be the ones its scan hashed (its id
    is that hash): PhotoError, failing the photo alone, when it changed since. ``with_xmp``:
    its metadata holds its XMP face regions too (``xmp``), where the settings import them."""
    path = Path(job["file"])
    data = read_photo(path, job["sha256"])
    decoded = decode(path, ctx.settings.detect_size, ctx.settings.max_pixels, data)
    if with_xmp and ctx.settings.import_xmp_names:
        decoded.metadata["xmp"] = _xmp_regions(path, data, decoded)
    return decoded


def _xmp_regions(path: Path, data: bytes, decoded: Decoded) -> dict:
    """The photo's named XMP face regions (upright pixels) and why any XMP could not be read:
    bad XMP is a warning, never a failed photo."""
    try:
        found, problems = xmp.photo_regions(
            path, data, int(decoded.metadata.get("orientation", 1)), decoded.width, decoded.height
        )
    except Exception as e:  # noqa: BLE001 - whatever a hostile packet does, the photo goes on
        found, problems = [], [f"XMP not read ({type(e).__name__})"]
    return {"regions": [{"name": r.name, "box": list(r.box)} for r in found], "problems": problems}


def detect(ctx: Context, job: Job) -> Job:
    """Decode at reduced size, find faces, and keep them in the photo's work file (in its job
    where the next stages run in this process and the index stage in the run's)."""
    if job.get("error"):
        return job
    engine = ctx.engine(job["model"])
    try:
        with time_limit(ctx.settings.photo_timeout):
            decoded = decode_photo(ctx, job, with_xmp=True)
            faces = engine.detect(decoded.rgb)
    except PhotoError as e:
        return fail(job, "detect", str(e))
    ctx.state(LastDecoded).photo = (job["image_id"], decoded)
    n = len(faces)
    boxes = np.array([decoded.to_full(f.box) for f in faces], dtype=np.float64).reshape(n, 4)
    marks = np.array([decoded.to_full(f.landmarks) for f in faces], dtype=np.float64).reshape(n, 5, 2)
    assessed = [quality.assess(decoded.rgb, f.box, boxes[i], marks[i], f.score) for i, f in enumerate(faces)]
    info = {
        "width": decoded.width,
        "height": decoded.height,
        "format": decoded.format,
        "metadata": decoded.metadata,
        "model": engine.model,
    }
    arrays: dict[str, np.ndarray] = {
        "boxes": boxes,
        "landmarks": marks,
        "scores": np.array([f_.score for f_ in faces], dtype=np.float64),
        "embeddings": np.array([f_.embedding for f_ in faces], dtype=np.float32).reshape(n, EMBEDDING_DIM),
        "quality": np.array([[q.size, q.sharpness, q.frontal] for q in assessed], dtype=np.float64).reshape(n, 3),
        "info": np.frombuffer(json.dumps(info).encode(), dtype=np.uint8),
    }
    if not ctx.stages_together:
        # The decoded pixels, for a thumbnails task that lands in another process (a Celery
        # chain's next task may): reading 2 MB back beats decoding the photo again. The
        # thumbnails stage deletes the file.
        workfile.save_pixels(ctx.folder, job["image_id"], decoded.rgb)
        arrays["scale"] = np.array(decoded.scale)
    ext = FORMAT_EXTENSIONS.get(decoded.format, ids.safe_extension(job["path"]))
    out: Job = {**job, "faces": n, "ext": ext}
    if ctx.stages_together:  # the rest of the chain is this process's and the run's: no file
        out["work"] = workfile.kept(arrays)
    else:
        workfile.save(ctx.folder, job["image_id"], arrays)
    problems = decoded.metadata.get("xmp", {}).get("problems")
    if problems:
        out["warnings"] = list(problems)
    return out
