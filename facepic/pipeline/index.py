"""Stage 4, index: the photo and its faces into MongoDB, each face given a person (or left
unassigned when unsure or too poor to found one), covers upgraded when a better face arrives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facepic import documents, ids, quality, storage, xmp
from facepic.context import Context, OfLibrary
from facepic.datafolder import same_file_atomically
from facepic.matching import assign_photo
from facepic.pipeline import workfile
from facepic.pipeline.job import Job, extension, fail
from facepic.quality import Limits


@dataclass
class IndexState(OfLibrary):
    """What this process's index stage read or wrote of the library: cover scores of persons
    (the index stage is the only writer of covers) and the folders it has stored."""

    best_scores: dict[str, float] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)


def _folder_docs(root: str, path: str) -> tuple[str, list[dict[str, Any]]]:
    """The folder chain of ``path`` up to the import root, and the photo's folder id."""
    parts = path.split("/")[:-1]
    docs = []
    parent = None
    for depth in range(len(parts) + 1):
        folder_path = "/".join(parts[:depth])
        fid = ids.folder_id(root, folder_path)
        docs.append(
            documents.folder(fid, root, folder_path, parts[depth - 1] if depth else os.path.basename(root), parent)
        )
        parent = fid
    return parent or ids.folder_id(root, ""), docs


def index(ctx: Context, job: Job) -> Job:
    """Record the photo and its faces in MongoDB and give each face a person (or leave an
    unsure or poor one unassigned)."""
    return index_batch(ctx, [job])[0]


def index_batch(ctx: Context, jobs: list[Job]) -> list[Job]:
    """``index`` over several photos at once, with the decisions of ``index`` one photo after
    another in this order (the same matcher decides each photo in turn and learns its faces
    before the next), and one round trip per kind of write for the whole batch."""
    out = list(jobs)
    fresh: list[tuple[int, Job, dict[str, Any]]] = []
    again: list[int] = []  # a photo twice in one batch (a replayed task): after the first
    seen: set[str] = set()
    for pos, job in enumerate(jobs):
        if job.get("error"):
            continue
        if job["image_id"] in seen:
            again.append(pos)
            continue
        seen.add(job["image_id"])
        try:
            work = workfile.held(ctx.folder, job)
        except workfile.WorkFileError as e:
            out[pos] = fail(job, "index", str(e))
            continue
        if work is None:
            out[pos] = _indexed_before(ctx, job)
        else:
            fresh.append((pos, job, work))
    if fresh:
        from facepic import versions  # the library's side: the pool's processes never import it

        replaced = versions.retire(
            ctx, [(job["root"], job["path"]) for _, job, _ in fresh], [job["image_id"] for _, job, _ in fresh]
        )
        for n, (pos, job, work) in enumerate(fresh):
            old = replaced.get((job["root"], job["path"]))
            if old is not None:
                fresh[n] = (pos, {**job, "replaced": old}, work)
        try:
            for pos, job in _index_new(ctx, fresh):
                out[pos] = job
        except BaseException:
            # The matcher may hold faces of this batch that were never stored: read it again.
            ctx.forget_library()
            raise
    for pos in again:
        out[pos] = index_batch(ctx, [jobs[pos]])[0]
    return out


def _indexed_before(ctx: Context, job: Job) -> Job:
    """A photo indexed before (a replay, or --upload-only): only its upload state."""
    lib = ctx.library
    image_id = job["image_id"]
    if lib.image(image_id) is None:
        return fail(job, "index", "intermediate results are missing; enqueue the photo again")
    if job.get("uploaded"):
        lib.set_image_fields(image_id, {"uploaded": True, "keys": _keys(job)})
        _upload_covers(ctx, [f["person_id"] for f in lib.faces_of_image(image_id) if f.get("person_id")])
    return job


def _keys(job: Job) -> dict[str, str] | None:
    if not job.get("uploaded"):
        return None
    return {
        "original": storage.original_key(job["image_id"], extension(job)),
        "thumbnail": storage.thumbnail_key(job["image_id"]),
    }


@dataclass
class _Photo:
    pos: int
    job: Job
    info: dict[str, Any]
    folder_id: str
    faces: list[dict[str, Any]]  # face documents, seq still to number for fresh ones
    fresh: list[str]  # faces not stored by an earlier try
    xmp: dict[str, Any]  # the image document's fields of its XMP names (none: no names)


@dataclass
class _Persons:
    """What one model's persons gain from a batch, for ``update_persons``."""

    founders: dict[str, str] = field(default_factory=dict)  # new person -> the face that founded it
    added: dict[str, int] = field(default_factory=dict)  # person -> faces inserted now
    recount: set[str] = field(default_factory=set)  # persons of faces stored by an earlier try

    def note(self, persons: dict[str, str | None], founders: dict[str, str], stored: dict[str, str | None]) -> None:
        """One photo's faces given ``persons``, ``founders`` among them."""
        self.founders.update(founders)
        for fid, pid in persons.items():
            if pid and fid in stored:
                self.recount.add(pid)
            elif pid:
                self.added[pid] = self.added.get(pid, 0) + 1


def _index_new(ctx: Context, batch: list[tuple[int, Job, dict[str, Any]]]) -> list[tuple[int, Job]]:
    """The photos of ``batch`` (with their work files) into the library: each face given its
    person photo after photo, in order, then each kind of write once for the batch."""
    lib = ctx.library
    models = list(dict.fromkeys(work["info"]["model"] for _, _, work in batch))
    for model in models:
        ctx.claim_model(model)
    with_faces = [job["image_id"] for _, job, work in batch if len(work["scores"])]
    stored_all = lib.stored_persons(with_faces) if with_faces else {}
    limits = Limits.from_settings(ctx.settings)
    folders: dict[str, dict[str, Any]] = {}
    photos: list[_Photo] = []
    persons = {model: _Persons() for model in models}
    rows = _prepare_matchers(ctx, models, batch)
    for pos, job, work in batch:
        folder_id, chain = _folder_docs(job["root"], job["path"])
        folders.update((d["_id"], d) for d in chain)
        stored = stored_all.get(job["image_id"], {})
        faces = _faces(ctx, job["image_id"], work, rows[pos], stored, limits, persons[work["info"]["model"]])
        face_ids = [doc["_id"] for doc in faces]
        found = _xmp_found(work["info"], face_ids, work["boxes"])
        if found:
            job = {**job, "xmp_names": len(found["xmp_names"]) + len(found["xmp_unmatched"])}
            job["xmp_matched"] = len(found["xmp_names"])
        fresh = [f for f in face_ids if f not in stored]
        # The person of each face stored now, or the first it hesitated between (None: neither),
        # for the run's settle as it goes.
        job = {**job, "persons": [_nearest(doc) for doc in faces if doc["_id"] not in stored]}
        photos.append(_Photo(pos, job, work["info"], folder_id, faces, fresh, found))
    for model in models:
        ctx.matcher(model).unprepare()
    _number_faces(ctx, photos)
    _upsert_folders(ctx, list(folders.values()))
    # A face stored before keeps its person and number; the others are inserted.
    lib.upsert_faces([doc for p in photos for doc in p.faces], stored={f for s in stored_all.values() for f in s})
    _update_persons(ctx, photos, persons)
    _upsert_images(ctx, photos)
    return [(p.pos, p.job) for p in photos]


def _nearest(face: dict[str, Any]) -> str | None:
    """The person a face was given, else the first of those it hesitated between."""
    return face["person_id"] or (face.get("candidates") or [None])[0]


def _prepare_matchers(ctx: Context, models: list[str], batch: list[tuple[int, Job, dict[str, Any]]]) -> dict[int, int]:
    """Each model's index readied to compare the batch's faces with what it holds in one pass;
    the row there of each photo's first face, by the photo's position."""
    rows: dict[int, int] = {}
    for model in models:
        mine = [(pos, work["embeddings"]) for pos, _, work in batch if work["info"]["model"] == model]
        start = 0
        for pos, embeddings in mine:
            rows[pos] = start
            start += len(embeddings)
        if start:
            ctx.matcher(model).prepare(np.concatenate([e for _, e in mine if len(e)]))
    return rows


def _faces(
    ctx: Context,
    image_id: str,
    work: dict[str, Any],
    first: int,
    stored: dict[str, str | None],
    limits: Limits,
    persons: _Persons,
) -> list[dict[str, Any]]:
    """The face documents of one photo, each face given a person (or none) by its model's
    matcher, which learns them before the next photo; ``first``: the row of its first face
    in the matcher's prepared batch; ``stored``: its faces stored by an earlier try."""
    model = work["info"]["model"]
    face_ids = [ids.face_id(image_id, i) for i in range(len(work["scores"]))]
    assessed = _qualities(work)
    can_found = [q.can_found(limits) for q in assessed]
    chosen, founders, decisions = assign_photo(
        ctx.matcher(model),
        face_ids,
        stored,
        work["embeddings"],
        ids.person_id,
        can_found,
        range(first, first + len(face_ids)),
    )
    persons.note(chosen, founders, stored)
    docs = []
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
        doc = documents.face(fid, image_id, i, fields, chosen[fid], None)
        decision = decisions.get(fid)
        if decision is not None and decision.ambiguous:
            doc["candidates"] = [decision.best, decision.runner_up]
        docs.append(doc)
    return docs


def _number_faces(ctx: Context, photos: list[_Photo]) -> None:
    """The faces stored now numbered in the batch's order (``seq``)."""
    count = sum(len(p.fresh) for p in photos)
    seq = ctx.library.next_seq(count) if count else 0
    for photo in photos:
        numbers = {fid: seq + n for n, fid in enumerate(photo.fresh)}
        seq += len(photo.fresh)
        for doc in photo.faces:
            doc["seq"] = numbers.get(doc["_id"])


def _update_persons(ctx: Context, photos: list[_Photo], persons: dict[str, _Persons]) -> None:
    """Each model's persons founded, counted, and given a face of the batch as their cover
    where it beats theirs (uploaded when its photo is)."""
    uploading = {p.job["image_id"] for p in photos if p.job.get("upload")}
    for model, gained in persons.items():
        faces = [doc for p in photos if p.info["model"] == model for doc in p.faces]
        covers = _new_covers(ctx, faces)
        ctx.library.update_persons(model, gained.founders, covers, gained.added, gained.recount)
        ctx.state(IndexState).best_scores.update({pid: face["quality"]["value"] for pid, face in covers.items()})
        upload = [pid for pid, face in covers.items() if face["image_id"] in uploading]
        if upload:
            _upload_covers(ctx, upload)


def _upsert_images(ctx: Context, photos: list[_Photo]) -> None:
    ctx.library.upsert_images(
        [
            {
                **documents.image(
                    p.job["image_id"], p.job, p.info, p.folder_id, extension(p.job), _keys(p.job), p.faces
                ),
                **p.xmp,
            }
            for p in photos
        ]
    )


def _upsert_folders(ctx: Context, docs: list[dict[str, Any]]) -> None:
    """Folders not written by this process yet (a drive has few, a photo many ancestors)."""
    known = ctx.state(IndexState).folders
    new = [d for d in docs if d["_id"] not in known]
    if new:
        ctx.library.upsert_folders(new)
        known.update(d["_id"] for d in new)


def _best_scores(ctx: Context, person_ids: set[str]) -> dict[str, float]:
    """Cover scores of persons, cached: the index stage is the only writer of covers."""
    scores = ctx.state(IndexState).best_scores
    missing = person_ids - scores.keys()
    if missing:
        scores.update(ctx.library.best_scores(missing))
    return {pid: scores.get(pid, -1.0) for pid in person_ids}


def _xmp_found(info: dict[str, Any], face_ids: list[str], boxes: np.ndarray) -> dict[str, Any]:
    """The photo's XMP names matched to its faces by box overlap, for its image document:
    ``xmp_names`` (face id and name; ``xmp_pending`` until settling applies them as
    corrections) and ``xmp_unmatched`` (name and box of a region no face was found in)."""
    read = (info.get("metadata") or {}).get("xmp") or {}
    regions = [xmp.Region(str(r["name"]), xmp.as_box(r["box"])) for r in read.get("regions") or []]
    if not regions:
        return {}
    named, unmatched = xmp.match(regions, [list(map(float, b)) for b in boxes])
    return {
        "xmp_names": [{"face_id": face_ids[i], "name": name} for i, name in sorted(named.items())],
        "xmp_unmatched": [{"name": r.name, "box": [round(v, 1) for v in r.box]} for r in unmatched],
        "xmp_pending": bool(named),
    }


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
    scores = _best_scores(ctx, {f["person_id"] for f in faces})
    covers: dict[str, dict[str, Any]] = {}
    for face in faces:
        pid = face["person_id"]
        best = covers[pid]["quality"]["value"] if pid in covers else scores.get(pid, -1.0)
        if face["quality"]["value"] > best:
            covers[pid] = face
    for pid, face in covers.items():
        same_file_atomically(ctx.folder.face_crop(face["_id"]), ctx.folder.cover(pid))
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
