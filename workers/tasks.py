"""Thin Celery tasks: each calls one stage of `facepic.pipeline` with the job it was given.

Transient failures (MongoDB or the bucket unreachable) are retried with backoff; a stage
that still fails, or fails for a reason no retry cures, sends the photo to ``log`` as
failed so the run goes on and the ledger says why.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.signals import worker_init

from facepic.pipeline import Context, Job, cannot_process, describe_error, execute
from facepic.settings import Settings
from facepic.settle import settle_run
from workers.app import app
from workers.dispatch import CeleryDispatcher
from workers.routing import INDEX_QUEUE, STAGE_TASKS

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
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """A stage gave up: record the photo as failed instead of leaving it hanging."""
        job = args[0] if args else None
        if not isinstance(job, dict) or self.name == STAGE_TASKS["log"]:
            return
        stage = self.name.removeprefix("facepic.")
        reason = describe_error(exc, context().settings)
        log.error("%s", cannot_process(job.get("file", ""), reason))
        app.send_task(STAGE_TASKS["log"], args=[{**job, "error": reason, "failed_stage": stage}])


def _run(task: Task, stage: str, job: Job) -> Job:
    """One stage under the one failure policy (``facepic.pipeline.policy``): a retry it asks
    for becomes a Celery retry with its countdown."""
    outcome = execute(context(), stage, job, task.request.retries)
    if outcome.job is None:
        raise task.retry(countdown=outcome.retry_in, max_retries=context().settings.retries)
    if outcome.job.get("error") and not job.get("error"):
        log.warning("%s", cannot_process(job.get("file", ""), outcome.job["error"]))
    return outcome.job


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
    out = _run(self, "log", job)
    _settle_when_idle()
    return out


# Settling decides the persons of the faces stored since the last settle together (see
# facepic.settle). On the index queue it runs once the queue has drained: a photo logged with
# nothing waiting behind it schedules one settle a few seconds later, which settles only if the
# queue is still empty then (else the next drained moment does). The index worker is a single
# process, so this is never concurrent with an index stage.
SETTLE_DELAY = 5.0
_settle_sent = 0.0


def _index_waiting() -> int:
    return CeleryDispatcher(app).queue_lengths()[INDEX_QUEUE]


def _settle_when_idle() -> None:
    global _settle_sent
    now = time.monotonic()
    if now - _settle_sent < SETTLE_DELAY:
        return
    try:
        if _index_waiting():
            return
    except Exception:  # noqa: BLE001 - Redis out of reach: the next photo tries again
        return
    _settle_sent = now
    settle.apply_async(countdown=SETTLE_DELAY)


@app.task(name="facepic.settle")
def settle() -> str:
    """Settle the faces stored since the last settle, if the index queue is still empty."""
    if _index_waiting():
        return "index queue busy: a later drained moment settles"
    ctx = context()
    s = settle_run(ctx)
    return f"persons {s.persons_before} -> {s.persons_after}; faces moved {s.faces_moved}, assigned {s.faces_assigned}"
