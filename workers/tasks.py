"""Thin Celery tasks, one per chained stage of the table (``facepic.pipeline.stages``): each
calls its stage with the job it was given; the index worker's task drains the index queue in
batches (`workers.batches`) through the stages on the index queue.

Every stage runs under the one failure policy (``facepic.pipeline.policy``): a retry it asks
for becomes a Celery retry with its countdown; a photo it fails goes on to the index queue as
failed, so the run goes on and the ledger says why. A stage that raises (a missing model, a
data folder that cannot be written) hands the photo to the index queue as failed too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_init, worker_ready

from facepic.changes import finish_pending_of
from facepic.context import Context
from facepic.errors import FacePicError
from facepic.pipeline.job import Job, fail, received
from facepic.pipeline.policy import describe_error, execute
from facepic.pipeline.stages import BY_NAME, Stage
from facepic.runner import run_serial_batch
from facepic.runtime import default_threads, limit_blas_threads, limit_image_threads
from facepic.scan import cannot_process
from facepic.settings import Settings
from facepic.settle import settle_behind, settle_run
from workers.app import app
from workers.batches import BATCH, DRAIN, WATCH_SECONDS, IndexQueue
from workers.dispatch import CeleryDispatcher
from workers.routing import CHAINED, DRAINED, INDEX_QUEUE, INDEX_TASK, SETTLE_TASK, STAGE_TASKS

log = logging.getLogger("facepic.worker")

_processes = 1
_context: Context | None = None
_context_lock = threading.Lock()
_queue: IndexQueue | None = None


_queues: set[str] = set()  # the queues this worker consumes


@worker_init.connect
def _remember_concurrency(sender: Any = None, **_: Any) -> None:
    """Pool size, read before the pool forks, so model threads x processes = cores; and the
    queues this worker consumes."""
    global _processes, _queues
    _processes = int(getattr(sender, "concurrency", 1) or 1)
    _queues = {q.name for q in sender.app.amqp.queues.consume_from.values()} if sender is not None else set()


@worker_process_init.connect
def _blas_threads(**_: Any) -> None:
    """BLAS and OpenCV threads as the models': the pool's processes share the cores; the
    index worker's matching, many small products, shares them with the CPU workers."""
    limit_blas_threads(default_threads(_processes) if "cpu" in _queues else 1)
    if "cpu" in _queues:
        limit_image_threads(default_threads(_processes))


@worker_process_init.connect
def _load_models_early(**_: Any) -> None:
    """A CPU worker's process loads the face model as it starts, in a thread (a download can
    take minutes; the pool waits only seconds for a process to start), so that its first photo
    does not wait for it; the first photo waits for that same load if it comes sooner."""
    if "cpu" not in _queues:
        return

    def load() -> None:
        ctx = context()
        try:
            ctx.engine(ctx.settings.model)
        except Exception as e:  # noqa: BLE001 - the first photo meets it again and reports it
            log.warning("face model not loaded ahead of the first photo: %s", describe_error(e, ctx.settings))

    threading.Thread(target=load, name="facepic-model-load", daemon=True).start()


@worker_ready.connect
def _drain_at_start(sender: Any = None, **_: Any) -> None:
    """The index worker drains what waits at its start (a flag left by a killed drain would
    otherwise hold the photos until it expires), and looks again every few seconds."""
    if INDEX_QUEUE not in _queues:
        return
    try:
        index_queue().client.delete(DRAIN)
    except Exception as e:  # noqa: BLE001 - Redis away: the watch below wakes it later
        log.warning("could not look at the index queue at start: %s", type(e).__name__)
    threading.Thread(target=_watch, name="facepic-index-watch", daemon=True).start()


def _watch() -> None:
    while True:
        try:
            queue = index_queue()
            if queue.waiting():
                queue.wake()  # sends a drain only if none holds the flag
        except Exception:  # noqa: BLE001 - Redis away: look again later
            pass
        time.sleep(WATCH_SECONDS)


def context() -> Context:
    """One Context per worker process: models load once, connections are reused."""
    global _context
    with _context_lock:  # the model-loading thread may ask at the same time as a task
        if _context is None:
            _context = Context(Settings.load(), processes=_processes)
    return _context


def index_queue() -> IndexQueue:
    global _queue
    if _queue is None:
        _queue = IndexQueue.of(app)
    return _queue


class StageTask(Task):
    stage = ""  # the stage's name in the table, given to each task below

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Job, ...], kwargs: dict, einfo: Any) -> None:
        """The stage raised: hand the photo to the index queue as failed, so it is logged."""
        if not args:
            return
        job = args[0]
        reason = describe_error(exc, context().settings)
        log.error("%s", cannot_process(job.get("file", ""), reason))
        index_queue().push(fail(job, self.stage, reason))


def _run(task: StageTask, job: Job) -> Job:
    """One stage under the one failure policy (``facepic.pipeline.policy``): a retry it asks
    for becomes a Celery retry with its countdown. The last task of a photo's chain hands it
    to the index worker."""
    job = received(job)
    outcome = execute(context(), BY_NAME[task.stage], job, task.request.retries)
    if outcome.job is None:
        raise task.retry(countdown=outcome.retry_in)
    out = outcome.job
    if out.get("error") and not job.get("error"):
        log.warning("%s", cannot_process(job.get("file", ""), out["error"]))
    for warning in out.get("warnings") or ():
        if warning not in (job.get("warnings") or ()):
            log.warning("%s: %s", job.get("file", ""), warning)
    if not task.request.chain:
        index_queue().push(out)
    return out


def _stage_task(stage: Stage) -> Task:
    def run(self: StageTask, job: Job) -> Job:
        return _run(self, job)

    run.__name__ = run.__qualname__ = stage.name
    # The policy decides when a retry is enough: Celery's own limit stays out of its way.
    return app.task(run, name=STAGE_TASKS[stage.name], base=StageTask, bind=True, stage=stage.name, max_retries=None)


TASKS = {stage.name: _stage_task(stage) for stage in CHAINED}


DRAIN_SECONDS = 60.0  # a drain hands over to a fresh task after this, so others can run
LINGER = 0.5  # seconds a drain waits for more photos when fewer than LINGER_BELOW wait
LINGER_BELOW = 16


@app.task(name=INDEX_TASK)
def index() -> str:
    """Index and log the photos waiting in the index queue, a batch at a time, until none
    waits (``workers.batches``)."""
    ctx = context()
    try:
        finish_pending_of(ctx)  # a change a killed process left midway (one read when none)
    except FacePicError as e:  # the database out of reach: the batch's failure policy says what then
        log.warning("pending changes not finished yet: %s", describe_error(e, ctx.settings))
    queue = index_queue()
    started = time.monotonic()
    photos = 0
    while True:
        if queue.waiting() < LINGER_BELOW:
            time.sleep(LINGER)  # photos trickling in: let a few gather, a batch costs little more than one
        jobs = queue.take(BATCH)
        if not jobs:
            if queue.release():
                break
            continue
        for before, job in zip(jobs, run_serial_batch(ctx, jobs, DRAINED, set())):
            if job.get("error") and not before.get("error"):  # failed here, not on the way
                log.warning("%s", cannot_process(job.get("file", ""), job["error"]))
        queue.done()
        photos += len(jobs)
        _settle_behind(ctx)
        queue.refresh()
        if time.monotonic() - started > DRAIN_SECONDS:
            app.send_task(INDEX_TASK)  # the flag stays taken: this drain goes on in a new task
            break
    _settle_when_idle()
    return f"{photos} photos indexed"


# Settling decides the persons of the faces stored since the last settle together (see
# facepic.settle). On the index queue it runs as the faces come, a slice each SETTLE_SLICE faces
# stored (photos wait for that slice), and once the queue has drained: a drain that ends with
# nothing waiting schedules one settle a few seconds later, which settles the rest only if the
# queue is still empty then (else the next drained moment does). The index worker is a single
# process, so this is never concurrent with an index stage.
SETTLE_DELAY = 5.0
_settle_sent = 0.0


def _settle_behind(ctx: Context) -> None:
    """A slice settled between batches once SETTLE_SLICE faces wait unsettled (facepic.settle)."""
    try:
        s = settle_behind(ctx, SETTLE_SLICE)
    except FacePicError as e:  # the database out of reach: the drained moment settles them
        log.warning("settling left for later: %s", describe_error(e, ctx.settings))
        return
    if s is not None:
        log.info("settled a slice behind the index stage; faces moved %d, assigned %d", s.faces_moved, s.faces_assigned)


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
    except Exception:  # noqa: BLE001 - Redis out of reach: the next drain tries again
        return
    _settle_sent = now
    settle.apply_async(countdown=SETTLE_DELAY)


@app.task(name=SETTLE_TASK)
def settle() -> str:
    """Settle the faces stored since the last settle while the index queue stays empty, a slice
    of ``SETTLE_SLICE`` faces at a time: photos that arrive meanwhile wait for one slice (a few
    seconds) at most, and the next drained moment settles the rest."""
    ctx = context()
    slices = moved = assigned = 0
    while not _index_waiting():
        s = settle_run(ctx, SETTLE_SLICE)
        slices, moved, assigned = slices + 1, moved + s.faces_moved, assigned + s.faces_assigned
        if not s.more:
            return f"settled in {slices} slice(s); faces moved {moved}, assigned {assigned}"
    return f"index queue busy after {slices} slice(s): a later drained moment settles the rest"


SETTLE_SLICE = 2_000  # faces: a slice settles in seconds (bench/endrun.py --every, --slice)
