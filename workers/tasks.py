"""Thin Celery tasks: each calls one stage of `facepic.pipeline` with the job it was given.

Transient failures (MongoDB or the bucket unreachable) are retried with backoff; a stage
that still fails, or fails for a reason no retry cures, sends the photo to ``log`` as
failed so the run goes on and the ledger says why.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_init

from facepic.db import DatabaseUnavailable
from facepic.pipeline import Context, Job, describe_error, run_stage
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


class StageTask(Task):
    autoretry_for = (DatabaseUnavailable, StorageUnavailable)
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 8

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # type: ignore[no-untyped-def]
        """A stage gave up: record the photo as failed instead of leaving it hanging."""
        job = args[0] if args else None
        if not isinstance(job, dict) or self.name == STAGE_TASKS["log"]:
            return
        stage = self.name.removeprefix("facepic.")
        reason = describe_error(exc, context().settings)
        log.error("error: cannot process %s: %s", job.get("path"), reason)
        app.send_task(STAGE_TASKS["log"], args=[{**job, "error": reason, "failed_stage": stage}])


def _run(stage: str, job: Job) -> Job:
    result = run_stage(context(), stage, job)
    if result.get("error") and not job.get("error"):
        log.warning("error: cannot process %s: %s", job.get("path"), result["error"])
    return result


@app.task(name="facepic.detect", base=StageTask)
def detect(job: Job) -> Job:
    return _run("detect", job)


@app.task(name="facepic.thumbnails", base=StageTask)
def thumbnails(job: Job) -> Job:
    return _run("thumbnails", job)


@app.task(name="facepic.upload", base=StageTask)
def upload(job: Job) -> Job:
    return _run("upload", job)


@app.task(name="facepic.index", base=StageTask)
def index(job: Job) -> Job:
    return _run("index", job)


@app.task(name="facepic.log", base=StageTask)
def log_stage(job: Job) -> Job:
    return _run("log", job)
