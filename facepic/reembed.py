"""Changing the face model of a library: `facepic reembed --model NAME`.

Two phases, so the library keeps working on its old model until the new one is complete:

1. Stage (resumable, can take hours): every photo is decoded again (from its import folder,
   or from the bucket when the drive is gone) and its faces found with the new model. Each
   new face is matched to the photo's old face by box overlap and staged on it (``next``);
   a face only the new model finds is staged in ``faces_next``. Photos are marked when
   staged, so an interrupted run goes on where it stopped. Nothing the pipeline reads changes.
2. Switch (seconds to minutes): photos added meanwhile are staged too; then every staged
   face takes its new embedding, box and model, the new faces are added unassigned, the
   library records the new model, and `recluster` rebuilds persons from the new embeddings.
   Faces keep their ids and persons, so names, merges, moves, rejections, covers and hidden
   persons all carry over. An old face the new model does not find keeps its person but is
   no longer compared (it stays on the old model).

Workers still running the old model get a clear "library was built with ..." error after the
switch: restart them with ``FACEPIC_MODEL`` set to the new model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facepic import documents, ids, quality, snapshot, storage, thumbnails
from facepic.datafolder import write_atomic
from facepic.db import Library
from facepic.decode import PhotoError, decode, time_limit
from facepic.derived import Covers, bump_revision, refresh_images
from facepic.detect import FaceEngine
from facepic.matching import Rules
from facepic.persons import ReclusterSummary, recluster_library
from facepic.quality import Limits
from facepic.settings import Settings

MIN_OVERLAP = 0.3  # intersection over union for a new face to be an old face again


@dataclass
class Progress:
    staged: int = 0
    missing: int = 0  # neither the file nor the bucket has the original
    faces_matched: int = 0
    faces_new: int = 0
    faces_lost: int = 0
    switched: bool = False
    recluster: ReclusterSummary | None = None


def _iou(a: list[float], b: list[float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _original(image: dict[str, Any], store: storage.ObjectStore | None) -> Iterator[Path]:
    """The photo's original file: at its import path if it is still there, else from the bucket."""
    path = Path(image.get("root", "")) / image.get("path", "")
    if image.get("root") and path.is_file():
        yield path
        return
    keys = image.get("keys") or {}
    if store is not None and keys.get("original"):
        data = store.get_bytes(keys["original"])
        with tempfile.NamedTemporaryFile(suffix="." + image.get("ext", "jpg")) as f:
            f.write(data)
            f.flush()
            yield Path(f.name)
        return
    raise FileNotFoundError(path)


def _stage_image(
    lib: Library, engine: FaceEngine, settings: Settings, image: dict[str, Any], covers: Covers, progress: Progress
) -> None:
    try:
        with time_limit(settings.photo_timeout):
            for path in _original(image, covers.store):
                decoded = decode(path, settings.detect_size, settings.max_pixels)
                found = engine.detect(decoded.rgb)
    except (FileNotFoundError, PhotoError, storage.StorageError):
        progress.missing += 1
        return
    old = lib.face_boxes(image["_id"])
    staged: dict[str, dict[str, Any] | None] = {}  # face id: the new model's fields (None: not found)
    extra: list[dict[str, Any]] = []
    taken: set[str] = set()
    next_index = max([f["index"] for f in old], default=-1) + 1
    for face in sorted(found, key=lambda f: -f.score):
        box_full = decoded.to_full(face.box)
        marks = decoded.to_full(face.landmarks)
        q = quality.assess(decoded.rgb, face.box, box_full, marks, face.score)
        fields = documents.face_fields(
            engine.model, face.embedding, box_full, marks, face.score, q, q.can_found(Limits.from_settings(settings))
        )
        overlaps = [(_iou(fields["box"], f["box"]), str(f["_id"])) for f in old if f["_id"] not in taken]
        best_iou, best_id = max(overlaps, default=(0.0, ""))
        if best_iou >= MIN_OVERLAP:
            taken.add(best_id)
            staged[best_id] = fields
            progress.faces_matched += 1
        else:
            fid = ids.face_id(image["_id"], next_index)
            next_index += 1
            write_atomic(covers.crop(fid), thumbnails.face_crop(decoded.rgb, face.box))
            extra.append({"_id": fid, "image_id": image["_id"], "index": next_index - 1, **fields})  # no person yet
            progress.faces_new += 1
    lost = [f["_id"] for f in old if f["_id"] not in taken]
    staged.update((fid, None) for fid in lost)
    progress.faces_lost += len(lost)
    lib.stage_reembedding(image["_id"], engine.model, staged, extra)
    progress.staged += 1


def stage(
    lib: Library,
    engine: FaceEngine,
    settings: Settings,
    covers: Covers,
    progress: Progress,
    on_photo: Callable[[], None] = lambda: None,
) -> None:
    """Stage every photo not staged for ``engine.model`` yet."""
    for image in lib.images_pending_reembed(engine.model):
        _stage_image(lib, engine, settings, image, covers, progress)
        on_photo()


def switch(lib: Library, model: str, settings: Settings, covers: Covers, progress: Progress) -> None:
    """Make the staged faces the library's; then recluster on the new embeddings."""
    old_model = lib.library_model()
    snapshot.forget(lib)  # the faces' embeddings are about to be replaced
    refresh_images(lib, lib.switch_model(model, old_model))
    bump_revision(lib)
    progress.switched = True
    progress.recluster = recluster_library(lib, Rules.from_settings(settings), covers)


def reembed(
    lib: Library,
    engine: FaceEngine,
    settings: Settings,
    covers: Covers,
    switch_now: bool = True,
    on_photo: Callable[[], None] = lambda: None,
) -> Progress:
    progress = Progress()
    current = lib.library_model()
    if current == engine.model:
        raise ValueError(f"the library already uses face model {engine.model}")
    stage(lib, engine, settings, covers, progress, on_photo)
    if switch_now:
        stage(lib, engine, settings, covers, progress, on_photo)  # photos added meanwhile
        switch(lib, engine.model, settings, covers, progress)
    return progress
