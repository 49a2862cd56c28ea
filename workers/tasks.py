"""Thin Celery tasks: each calls one stage of `facepic.pipeline` with the job it was given.

Transient failures (MongoDB or the bucket unreachable) are retried with backoff; a stage
that still fails, or fails for a reason no retry cures, sends the photo to ``log`` as
failed so the run goes on and the ledger says why.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from celery.signals import worker_init

from facepic.db import DatabaseUnavailable
from facepic.pipeline import Context, Job, describe_error, run_stage, upload_gave_up
from facepic.scan import display
from facepic.settings import Settings
from facepic.storage import StorageUnavailable
from workers.app import app
from workers.routing import STAGE_TASKS

log = logging.getLogger("facepic.worker")

_processes = 1
_context: Context | None = None


@worker_init.connect
def _remember_concurrency(sender: Any = None, **_: Any) -> None:
    """Pool size, read before the pool forks, so onnxruntime threads x processes = cores."""
    global _processes
    _processes = int(getattr(sender, "concurrency", 1) or 1)


def context() -> Context:
    """One Context per worker process: models load once, connections are reused."""
    global _context
    if _context is None:
        _context = Context(Settings.load(), processes=_processes)
    return _context


TRANSIENT = (DatabaseUnavailable, StorageUnavailable)


class StageTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):  # type: ignore[no-untyped-def]
        """A stage gave up: record the photo as failed instead of leaving it hanging."""
        job = args[0] if args else None
        if not isinstance(job, dict) or self.name == STAGE_TASKS["log"]:
            return
        stage = self.name.removeprefix("facepic.")
        reason = describe_error(exc, context().settings)
        log.error("error: cannot process %s: %s", display(job.get("path", "")), reason)
        app.send_task(STAGE_TASKS["log"], args=[{**job, "error": reason, "failed_stage": stage}])


def _run(task: Task, stage: str, job: Job) -> Job:
    """One stage; transient failures are retried with exponential backoff and jitter, a
    bounded number of times (FACEPIC_RETRIES), then the photo fails or, for the upload,
    goes on as processed but not uploaded."""
    ctx = context()
    try:
        result = run_stage(ctx, stage, job)
    except TRANSIENT as e:
        settings = ctx.settings
        attempt = task.request.retries
        if attempt < settings.retries:
            countdown = min(60.0, settings.retry_backoff * 2**attempt) * random.uniform(0.5, 1.0)
            log.warning("retrying %s of %s in %.1f s: %s", stage, display(job.get("path", "")), countdown, e)
            raise task.retry(exc=e, countdown=countdown, max_retries=settings.retries) from None
        if stage == "upload" and isinstance(e, StorageUnavailable):
            log.error("error: cannot upload %s: %s", display(job.get("path", "")), e)
            return upload_gave_up(job, e, settings)
        raise
    if result.get("error") and not job.get("error"):
        log.warning("error: cannot process %s: %s", display(job.get("path", "")), result["error"])
    return result


@app.task(name="facepic.detect", base=StageTask, bind=True)
def detect(self: Task, job: Job) -> Job:
    return _run(self, "detect", job)


@app.task(name="facepic.thumbnails", base=StageTask, bind=True)
def thumbnails(self: Task, job: Job) -> Job:
    return _run(self, "thumbnails", job)


@app.task(name="facepic.upload", base=StageTask, bind=True)
def upload(self: Task, job: Job) -> Job:
    return _run(self, "upload", job)


@app.task(name="facepic.index", base=StageTask, bind=True)
def index(self: Task, job: Job) -> Job:
    return _run(self, "index", job)


@app.task(name="facepic.log", base=StageTask, bind=True)
def log_stage(self: Task, job: Job) -> Job:
    return _run(self, "log", job)
