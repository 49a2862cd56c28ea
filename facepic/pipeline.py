"""The five stages of one photo: detect -> thumbnails -> upload -> index -> log.

Each stage is a plain function ``stage(ctx, job) -> job`` over a small JSON-able ``Job``;
Celery tasks and the embedded runner both call these. Image bytes and embeddings never
travel in the job: the detect stage writes them to ``<data>/work/<image_id>.npz`` and the
index stage moves them into MongoDB. A photo that cannot be processed carries ``error``
through the remaining stages to ``log``, which records it as failed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, TypedDict

import numpy as np

from facepic import ids, quality, snapshot, storage, thumbnails
from facepic.db import Library, embedding_to_bson
from facepic.decode import FORMAT_EXTENSIONS, PhotoError, decode, time_limit
from facepic.detect import EMBEDDING_DIM, FaceEngine
from facepic.ledger import Ledger
from facepic.matching import PersonIndex, assign_photo
from facepic.models import ModelChoice, resolve
from facepic.runtime import Runtime
from facepic.settings import Settings, redact
from facepic.storage import ObjectStore

logger = logging.getLogger(__name__)


class Job(TypedDict, total=False):
    image_id: str
    sha256: str
    path: str  # the photo, absolute, as the enqueuer saw it
    root: str  # the import folder, absolute
    rel: str  # the photo relative to root, POSIX
    size: int
    mtime_ns: int
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


STAGES = ("detect", "thumbnails", "upload", "index", "log")
EPOCH_CHECK_SECONDS = 2.0


class Context:
    """What the stages of one process share: settings, and lazily, models and connections."""

    def __init__(
        self,
        settings: Settings,
        processes: int = 1,
        library: Library | None = None,
        store: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.ledger = Ledger(settings.ledger_path)
        self._library = library
        self._store = store
        self._engines: dict[str, FaceEngine] = {}
        self._matchers: dict[str, PersonIndex] = {}
        self._claimed: set[str] = set()
        self._epoch: str | None = None
        self._epoch_checked = 0.0
        self._folders: set[str] = set()
        # The last photo decoded by detect, for thumbnails when it runs next in this process.
        self.last_decoded: tuple[str, Any] | None = None
        # Keep the decoded pixels in the work file for a thumbnails task in another process
        # (Celery); `facepic run` runs both stages in one process and needs no copy.
        self.pixels_in_work_file = True
        self.best_scores: dict[str, float] = {}
        # photo (root, path, sha256) -> uploaded, for every photo this ledger has as done
        self.logged_done: dict[tuple[str, str, str], bool] | None = None
        self._ledger_seen: tuple[int, int] = (0, 0)  # inode, size when logged_done was last right

    @property
    def library(self) -> Library:
        if self._library is None:
            self._library = Library(
                self.settings.mongodb_uri, self.settings.mongodb_db, int(self.settings.db_timeout * 1000)
            )
        return self._library

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = storage.open_store(self.settings)
        return self._store

    def close(self) -> None:
        """Close connections (the embedded server can only shut down cleanly after this)."""
        if self._library is not None:
            self._library.close()
            self._library = None

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def model_choice(self, source: str) -> ModelChoice:
        return resolve(source, self.settings.model_root)

    def engine(self, source: str) -> FaceEngine:
        if source not in self._engines:
            runtime = Runtime.for_settings(self.settings, self.processes)
            self._engines[source] = FaceEngine(self.model_choice(source), self.settings.detect_size, runtime)
        return self._engines[source]

    def matcher(self, model: str) -> PersonIndex:
        if model not in self._matchers:
            matcher = PersonIndex(self.settings.rules)
            started = time.monotonic()
            known = snapshot.load(self.library, model)
            persons, matrix = known.assigned()
            if persons:
                matcher.add_many(persons, matrix)
            logger.info("index of %s assigned faces (%s) ready in %.1f s", len(persons), known.source,
                        time.monotonic() - started)
            self._matchers[model] = matcher
        return self._matchers[model]

    def claim_model(self, model: str) -> None:
        """Record the library's model once; if the library was wiped since (another epoch,
        looked at every few seconds at most), forget what was cached of the old one."""
        now = time.monotonic()
        if now - self._epoch_checked >= EPOCH_CHECK_SECONDS or model not in self._claimed:
            self._epoch_checked = now
            epoch = self.library.epoch()
            if epoch is None or epoch != self._epoch:
                self._claimed.clear()
                self._matchers.clear()
                self.best_scores.clear()
                self._folders.clear()
        if model not in self._claimed:
            self.library.claim_model(model)
            self._claimed.add(model)
            self._epoch = self.library.epoch()

    def upsert_folders(self, docs: list[dict[str, Any]]) -> None:
        """Folders not written by this process yet (a drive has few, a photo many ancestors)."""
        new = [d for d in docs if d["_id"] not in self._folders]
        if new:
            self.library.upsert_folders(new)
            self._folders.update(d["_id"] for d in new)

    def person_best_scores(self, person_ids: set[str]) -> dict[str, float]:
        """Cover scores of persons, cached: the index worker is the only writer of covers."""
        missing = person_ids - self.best_scores.keys()
        if missing:
            self.best_scores.update(self.library.best_scores(missing))
        return {pid: self.best_scores.get(pid, -1.0) for pid in person_ids}

    # --- local files -------------------------------------------------------------

    def work_path(self, image_id: str) -> Path:
        return self.settings.work_dir / f"{image_id}.npz"

    def pixels_path(self, image_id: str) -> Path:
        return self.settings.work_dir / f"{image_id}.rgb.npy"

    def thumb_path(self, image_id: str) -> Path:
        return self.settings.thumbnails_dir / storage.thumbnail_key(image_id)

    def face_crop_path(self, face_id: str) -> Path:
        return self.settings.thumbnails_dir / "faces" / f"face_{face_id}.jpg"

    def person_thumb_path(self, person_id: str) -> Path:
        return self.settings.thumbnails_dir / storage.person_key(person_id)


def _fail(job: Job, stage: str, reason: str) -> Job:
    return {**job, "error": reason, "failed_stage": stage}


def _replace_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it in place:
    a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def write_atomic(path: Path, data: bytes) -> None:
    _replace_atomically(path, lambda f: f.write(data))


def _decode(ctx: Context, job: Job):  # type: ignore[no-untyped-def]
    return decode(Path(job["path"]), ctx.settings.detect_size, ctx.settings.max_pixels)


def _ext(job: Job) -> str:
    return job.get("ext") or ids.safe_extension(job["rel"])


# --- 1. detect -------------------------------------------------------------------


def detect(ctx: Context, job: Job) -> Job:
    """Decode at reduced size, find faces, and keep them in the photo's work file."""
    if job.get("error"):
        return job
    engine = ctx.engine(job["model"])
    try:
        with time_limit(ctx.settings.photo_timeout):
            decoded = _decode(ctx, job)
            faces = engine.detect(decoded.rgb)
    except PhotoError as e:
        return _fail(job, "detect", str(e))
    ctx.last_decoded = (job["image_id"], decoded)
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
    arrays = {
        "boxes": boxes,
        "landmarks": marks,
        "scores": np.array([f_.score for f_ in faces], dtype=np.float64),
        "embeddings": np.array([f_.embedding for f_ in faces], dtype=np.float32).reshape(n, EMBEDDING_DIM),
        "quality": np.array([[q.size, q.sharpness, q.frontal] for q in assessed], dtype=np.float64).reshape(n, 3),
        "info": np.frombuffer(json.dumps(info).encode(), dtype=np.uint8),
    }
    if ctx.pixels_in_work_file:
        # The decoded pixels, for a thumbnails task that lands in another process (a Celery
        # chain's next task may): reading 2 MB back beats decoding the photo again. The
        # thumbnails stage deletes the file.
        _replace_atomically(ctx.pixels_path(job["image_id"]),
                            lambda f: np.save(f, decoded.rgb, allow_pickle=False))
        arrays["scale"] = np.array(decoded.scale)
    _save_work(ctx.work_path(job["image_id"]), arrays)
    ext = FORMAT_EXTENSIONS.get(decoded.format, ids.safe_extension(job["rel"]))
    return {**job, "faces": n, "ext": ext}


def _save_work(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _replace_atomically(path, lambda f: np.savez(f, **arrays))


def _load_work(ctx: Context, image_id: str, pixels: bool = False) -> dict[str, Any] | None:
    path = ctx.work_path(image_id)
    if not path.exists():
        return None
    with np.load(path) as data:
        work = {k: data[k] for k in data.files if k != "scale" or pixels}
    if pixels:
        try:
            work["rgb"] = np.load(ctx.pixels_path(image_id), allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            pass
    work["info"] = json.loads(work["info"].tobytes().decode())
    return work


# --- 2. thumbnails -----------------------------------------------------------------


def make_thumbnails(ctx: Context, job: Job) -> Job:
    """The 300x300 thumbnail and one square crop per face, under the data folder."""
    if job.get("error"):
        return job
    cached, ctx.last_decoded = ctx.last_decoded, None
    hit = cached is not None and cached[0] == job["image_id"]
    work = _load_work(ctx, job["image_id"], pixels=not hit)
    if work is None:  # already indexed: its thumbnails exist
        return job
    rgb = work.pop("rgb", None)
    scale = float(work.pop("scale", 0.0))
    if hit:
        rgb, scale = cached[1].rgb, cached[1].scale  # type: ignore[index]
    elif rgb is None:  # a work file from before pixels were kept in it
        try:
            with time_limit(ctx.settings.photo_timeout):
                decoded = _decode(ctx, job)
        except PhotoError as e:
            return _fail(job, "thumbnails", str(e))
        rgb, scale = decoded.rgb, decoded.scale
    boxes = work["boxes"] * scale
    write_atomic(ctx.thumb_path(job["image_id"]), thumbnails.thumbnail(rgb, boxes))
    for i, box in enumerate(boxes):
        crop = thumbnails.face_crop(rgb, box)
        write_atomic(ctx.face_crop_path(ids.face_id(job["image_id"], i)), crop)
    ctx.pixels_path(job["image_id"]).unlink(missing_ok=True)  # the pixels have served
    return job


# --- 3. upload ---------------------------------------------------------------------


def upload(ctx: Context, job: Job) -> Job:
    """Original and thumbnail to the bucket at keys derived from the content hash."""
    if job.get("error") or not job.get("upload"):
        return job
    image_id = job["image_id"]
    ext = _ext(job)
    try:
        size = os.stat(job["path"]).st_size
    except OSError as e:
        return _fail(job, "upload", f"cannot read file for upload ({e.strerror})")
    if job.get("size") is not None and size != job["size"]:
        return _fail(job, "upload", "file changed since it was scanned")
    store = ctx.store
    store.put_file(
        storage.original_key(image_id, ext),
        Path(job["path"]),
        storage.CONTENT_TYPES.get(ext, "application/octet-stream"),
    )
    store.put_file(storage.thumbnail_key(image_id), ctx.thumb_path(image_id), "image/jpeg")
    return {**job, "uploaded": True, "upload_error": ""}


def upload_gave_up(job: Job, exc: BaseException, settings: Settings) -> Job:
    """The bucket stayed unreachable: keep the photo, processed but not uploaded, for
    ``--upload-only`` to finish later."""
    return {**job, "uploaded": False, "upload_error": describe_error(exc, settings)}


# --- 4. index ------------------------------------------------------------------------


def _folder_docs(root: str, rel: str) -> tuple[str, list[dict[str, Any]]]:
    """The folder chain of ``rel`` up to the import root, and the photo's folder id."""
    parts = rel.split("/")[:-1]
    docs = []
    parent = None
    for depth in range(len(parts) + 1):
        rel_folder = "/".join(parts[:depth])
        fid = ids.folder_id(root, rel_folder)
        docs.append(
            {
                "_id": fid,
                "root": root,
                "path": rel_folder,
                "name": parts[depth - 1] if depth else os.path.basename(root),
                "parent_id": parent,
            }
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
    work = _load_work(ctx, image_id)
    uploaded = bool(job.get("uploaded"))
    ext = _ext(job)
    keys = (
        {"original": storage.original_key(image_id, ext), "thumbnail": storage.thumbnail_key(image_id)}
        if uploaded
        else None
    )
    if work is None:  # indexed before (a replay, or --upload-only): only the upload state
        if lib.image(image_id) is None:
            return _fail(job, "index", "intermediate results are missing; enqueue the photo again")
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
        doc: dict[str, Any] = {
            "_id": fid,
            "image_id": image_id,
            "index": i,
            "box": [round(float(v), 2) for v in work["boxes"][i]],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in work["landmarks"][i]],
            "score": round(float(work["scores"][i]), 5),
            "quality": assessed[i].as_dict(),
            "can_found": can_found[i],
            "embedding": embedding_to_bson(work["embeddings"][i]),
            "model": model,
            "person_id": persons[fid],
            "seq": seqs.get(fid),
        }
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
    meta = info["metadata"]
    lib.upsert_image(
        {
            "_id": image_id,
            "sha256": job["sha256"],
            "filename": os.path.basename(job["rel"]),
            "path": job["rel"],
            "root": job["root"],
            "folder_id": folder_id,
            "ext": ext,
            "size": job.get("size"),
            "width": info["width"],
            "height": info["height"],
            "format": info["format"],
            "orientation": meta.get("orientation", 1),
            "taken_at": meta.get("taken_at"),
            "camera": meta.get("camera"),
            "gps": meta.get("gps"),
            "model": model,
            "companions": job.get("companions") or [],
            "uploaded": uploaded,
            "keys": keys,
            "faces": [
                {"face_id": d["_id"], "person_id": d["person_id"], "box": d["box"], "score": d["score"]}
                for d in face_docs
            ],
        }
    )
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
        target = ctx.person_thumb_path(pid)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.face_crop_path(face["_id"]), target)
    return covers


def _upload_covers(ctx: Context, person_ids: list[str]) -> None:
    """Upload the covers of ``person_ids`` that are not in the bucket yet."""
    pending = ctx.library.persons_without_uploaded_cover(person_ids)
    uploaded = []
    for person_id in pending:
        path = ctx.person_thumb_path(person_id)
        if path.exists():
            ctx.store.put_file(storage.person_key(person_id), path, "image/jpeg")
            uploaded.append(person_id)
    ctx.library.mark_covers_uploaded(uploaded)


# --- 5. log --------------------------------------------------------------------------


def log(ctx: Context, job: Job) -> Job:
    """The photo's ledger line; its work file is no longer needed. A photo already logged
    done (a replayed task) gets no second line."""
    try:
        st = os.stat(ctx.ledger.path)
        seen = (st.st_ino, st.st_size)
    except FileNotFoundError:
        seen = (0, 0)
    if seen[0] != ctx._ledger_seen[0] or seen[1] < ctx._ledger_seen[1]:
        ctx.logged_done = None  # the ledger was replaced or cut (cleanup): read it again
    if ctx.logged_done is None:
        ctx.logged_done = {
            (e.get("root", ""), e.get("path", ""), e.get("sha256", "")): bool(e.get("uploaded"))
            for e in ctx.ledger.read().by_path.values()
            if e.get("status") == "done"
        }
    key = (job["root"], job["rel"], job["sha256"])
    ctx._ledger_seen = seen
    already = key in ctx.logged_done and (ctx.logged_done[key] or not job.get("uploaded"))
    if already and not job.get("upload_only"):
        _drop_work(ctx, job["image_id"])
        return job
    entry: dict[str, Any] = {
        "path": job["rel"],
        "root": job["root"],
        "sha256": job["sha256"],
        "image_id": job["image_id"],
        "status": "failed" if job.get("error") else "done",
        "faces": job.get("faces", 0),
        "uploaded": bool(job.get("uploaded")),
        "model": job.get("model"),
        "size": job.get("size"),
        "mtime_ns": job.get("mtime_ns"),
        "timings": job.get("timings") or {},
        "ext": _ext(job),
    }
    if job.get("companions"):
        entry["companions"] = job["companions"]
    if job.get("error"):
        entry["reason"] = redact(job["error"], ctx.settings)
        entry["stage"] = job.get("failed_stage")
    elif job.get("upload_error"):
        entry["upload_error"] = redact(job["upload_error"], ctx.settings)
    ctx.ledger.append(entry)
    if entry["status"] == "done":
        ctx.logged_done[key] = entry["uploaded"]
    st = os.stat(ctx.ledger.path)
    ctx._ledger_seen = (st.st_ino, st.st_size)
    _drop_work(ctx, job["image_id"])
    return job


def _drop_work(ctx: Context, image_id: str) -> None:
    """The photo's work file, and its pixels if a photo that failed early left them."""
    ctx.work_path(image_id).unlink(missing_ok=True)
    ctx.pixels_path(image_id).unlink(missing_ok=True)


STAGE_FUNCTIONS: dict[str, Callable[[Context, Job], Job]] = {
    "detect": detect,
    "thumbnails": make_thumbnails,
    "upload": upload,
    "index": index,
    "log": log,
}


def run_stage(ctx: Context, stage: str, job: Job) -> Job:
    """Run one stage and note how long it took."""
    start = time.perf_counter()
    out = STAGE_FUNCTIONS[stage](ctx, job)
    timings = {**(out.get("timings") or {}), stage: round(time.perf_counter() - start, 4)}
    return {**out, "timings": timings}


def describe_error(exc: BaseException, settings: Settings) -> str:
    """One line for an unexpected failure of a stage, without secrets."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return redact(f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__, settings)
