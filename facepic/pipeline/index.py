"""Stage 4, index: the photo and its faces into MongoDB, each face given a person (or left
unassigned when unsure or too poor to found one), covers upgraded when a better face arrives."""

from __future__ import annotations

import os
import shutil
from typing import Any

from facepic import documents, ids, quality, storage
from facepic.matching import assign_photo
from facepic.pipeline import workfile
from facepic.pipeline.context import Context
from facepic.pipeline.job import Job, extension, fail


def _folder_docs(root: str, rel: str) -> tuple[str, list[dict[str, Any]]]:
    """The folder chain of ``rel`` up to the import root, and the photo's folder id."""
    parts = rel.split("/")[:-1]
    docs = []
    parent = None
    for depth in range(len(parts) + 1):
        rel_folder = "/".join(parts[:depth])
        fid = ids.folder_id(root, rel_folder)
        docs.append(
            documents.folder(fid, root, rel_folder, parts[depth - 1] if depth else os.path.basename(root), parent)
        )
        parent = fid
    return parent or ids.folder_id(root, ""), docs


def index(ctx: Context, job: Job) -> Job:
    """Record the photo and its faces in MongoDB and give each face a person (or leave an
    unsure or poor one unassigned)."""
    if job.get("error"):
        return job
    image_id = job["image_id"]
    lib = ctx.library
    work = workfile.load(ctx.folder, image_id)
    uploaded = bool(job.get("uploaded"))
    ext = extension(job)
    keys = (
        {"original": storage.original_key(image_id, ext), "thumbnail": storage.thumbnail_key(image_id)}
        if uploaded
        else None
    )
    if work is None:  # indexed before (a replay, or --upload-only): only the upload state
        if lib.image(image_id) is None:
            return fail(job, "index", "intermediate results are missing; enqueue the photo again")
        if uploaded:
            lib.set_image_fields(image_id, {"uploaded": True, "keys": keys})
            _upload_covers(ctx, [f["person_id"] for f in lib.faces_of_image(image_id) if f.get("person_id")])
        return job

    info = work["info"]
    model = info["model"]
    ctx.claim_model(model)
    folder_id, folders = _folder_docs(job["root"], job["rel"])
    ctx.upsert_folders(folders)
    face_ids = [ids.face_id(image_id, i) for i in range(len(work["scores"]))]
    assessed = _qualities(work)
    limits = ctx.settings.limits
    can_found = [q.can_found(limits) for q in assessed]
    stored = {f["_id"]: f.get("person_id") for f in lib.faces_of_image(image_id)} if face_ids else {}
    persons, founders, decisions = assign_photo(
        ctx.matcher(model), face_ids, stored, work["embeddings"], ids.person_id, can_found
    )
    fresh = [fid for fid in face_ids if fid not in stored]
    first_seq = lib.next_seq(len(fresh)) if fresh else 0
    seqs = {fid: first_seq + n for n, fid in enumerate(fresh)}
    face_docs = []
    for i, fid in enumerate(face_ids):
        fields = documents.face_fields(
            model,
            work["embeddings"][i],
            work["boxes"][i],
            work["landmarks"][i],
            float(work["scores"][i]),
            assessed[i],
            can_found[i],
        )
        doc = documents.face(fid, image_id, i, fields, persons[fid], seqs.get(fid))
        decision = decisions.get(fid)
        if decision is not None and decision.ambiguous:
            doc["candidates"] = [decision.best, decision.runner_up]
        face_docs.append(doc)
    lib.upsert_faces(face_docs)  # a face stored by an earlier try keeps its person
    covers = _new_covers(ctx, face_docs)
    lib.update_persons(model, founders, covers, {p for p in persons.values() if p})
    ctx.best_scores.update({pid: face["quality"]["value"] for pid, face in covers.items()})
    if covers and job.get("upload"):
        _upload_covers(ctx, list(covers))
    lib.upsert_image(documents.image(image_id, job, info, folder_id, ext, keys, face_docs))
    return job


def _qualities(work: dict[str, Any]) -> list[quality.FaceQuality]:
    scores = work["scores"]
    measured = work.get("quality")
    if measured is None:  # a work file from before quality was measured
        return [quality.FaceQuality(1e9, 1e9, 1.0, float(s)) for s in scores]
    return [quality.FaceQuality(float(m[0]), float(m[1]), float(m[2]), float(s)) for m, s in zip(measured, scores)]


def _new_covers(ctx: Context, faces: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Persons whose cover one of ``faces`` beats (a higher quality value; a cover the user
    picked is never beaten); their local cover file is replaced by that face's crop."""
    faces = [f for f in faces if f["person_id"]]
    scores = ctx.person_best_scores({f["person_id"] for f in faces})
    covers: dict[str, dict[str, Any]] = {}
    for face in faces:
        pid = face["person_id"]
        best = covers[pid]["quality"]["value"] if pid in covers else scores.get(pid, -1.0)
        if face["quality"]["value"] > best:
            covers[pid] = face
    for pid, face in covers.items():
        target = ctx.folder.cover(pid)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.folder.face_crop(face["_id"]), target)
    return covers


def _upload_covers(ctx: Context, person_ids: list[str]) -> None:
    """Upload the covers of ``person_ids`` that are not in the bucket yet."""
    pending = ctx.library.persons_without_uploaded_cover(person_ids)
    uploaded = []
    for person_id in pending:
        path = ctx.folder.cover(person_id)
        if path.exists():
            ctx.store.put_file(storage.person_key(person_id), path, "image/jpeg")
            uploaded.append(person_id)
    ctx.library.mark_covers_uploaded(uploaded)
