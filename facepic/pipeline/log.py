"""Stage 5, log: the photo's ledger line; its work file is no longer needed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from facepic.context import Context
from facepic.pipeline import workfile
from facepic.pipeline.job import Job, extension
from facepic.settings import redact
from facepic.statuses import Status


@dataclass
class Logged:
    """Photo (root, path, sha256) -> uploaded, for every photo the ledger has as done, as of
    the ledger's inode and size ``seen``."""

    done: dict[tuple[str, str, str], bool] | None = None
    seen: tuple[int, int] = (0, 0)


def log(ctx: Context, job: Job) -> Job:
    """The photo's ledger line; its work file is no longer needed. A photo already logged
    done (a replayed task) gets no second line."""
    return log_batch(ctx, [job])[0]


def log_batch(ctx: Context, jobs: list[Job]) -> list[Job]:
    """``log`` over several photos, their lines appended in one write."""
    done = _logged_done(ctx)
    entries: list[dict[str, Any]] = []
    pending: dict[tuple[str, str, str], bool] = {}
    for job in jobs:
        key = (job["root"], job["path"], job["sha256"])
        before = pending.get(key, done.get(key))
        already = before is not None and (before or not job.get("uploaded"))
        if already and not job.get("upload_only"):
            continue
        entry = _entry(ctx, job)
        entries.append(entry)
        if entry["status"] == Status.DONE:
            pending[key] = entry["uploaded"]
    if entries:
        ctx.on_disk()  # what the lines call done is stored before they say so
    ctx.ledger.append_many(entries)
    done.update(pending)
    st = os.stat(ctx.ledger.path) if entries else None
    if st is not None:
        ctx.state(Logged).seen = (st.st_ino, st.st_size)
    for job in jobs:
        job.pop("work", None)  # its faces are stored: nothing carries them further
        workfile.drop(ctx.folder, job["image_id"])
    return jobs


def _logged_done(ctx: Context) -> dict[tuple[str, str, str], bool]:
    """Photo (root, path, sha256) -> uploaded, for every photo the ledger has as done; read
    again when the ledger was replaced or cut (cleanup) since it was last read."""
    try:
        st = os.stat(ctx.ledger.path)
        seen = (st.st_ino, st.st_size)
    except FileNotFoundError:
        seen = (0, 0)
    logged = ctx.state(Logged)
    if seen[0] != logged.seen[0] or seen[1] < logged.seen[1]:
        logged.done = None
    if logged.done is None:
        logged.done = {
            (e.get("root", ""), e.get("path", ""), e.get("sha256", "")): bool(e.get("uploaded"))
            for e in ctx.ledger.read().by_path.values()
            if e.get("status") == Status.DONE
        }
    logged.seen = seen
    return logged.done


def _entry(ctx: Context, job: Job) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "path": job["path"],
        "root": job["root"],
        "sha256": job["sha256"],
        "image_id": job["image_id"],
        "status": Status.FAILED if job.get("error") else Status.DONE,
        "faces": job.get("faces", 0),
        "uploaded": bool(job.get("uploaded")),
        "model": job.get("model"),
        "size": job.get("size"),
        "mtime_ns": job.get("mtime_ns"),
        "timings": job.get("timings") or {},
        "ext": extension(job),
    }
    if job.get("companions"):
        entry["companions"] = job["companions"]
    if job.get("replaced") and not job.get("error"):
        entry["replaced"] = job["replaced"]
    if job.get("error"):
        entry["reason"] = redact(job["error"], ctx.settings)
        entry["stage"] = job.get("failed_stage")
    elif job.get("upload_error"):
        entry["upload_error"] = redact(job["upload_error"], ctx.settings)
    return entry
