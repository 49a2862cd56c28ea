"""The failure policy of a stage, the one both `facepic run` and the Celery tasks follow.

- a stage that works hands its job on;
- a photo's own fault (corrupt, unreadable, a bug met on it) fails that photo, with one line
  of reason, and the run goes on;
- MongoDB or the bucket out of reach is retried with exponential backoff and jitter,
  ``FACEPIC_RETRIES`` times; then the photo fails, or, for the upload, goes on processed but
  not uploaded (``--upload-only`` finishes it later);
- a data folder that cannot be written (full, read-only) is nobody's photo's fault: it stops
  the run (DataFolderError), since every photo after it would fail the same way.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from facepic.context import Context
from facepic.db import DatabaseError, DatabaseUnavailable
from facepic.errors import FacePicError, data_folder_error, disk_full, is_disk_error
from facepic.pipeline.detect import detect
from facepic.pipeline.index import index, index_batch
from facepic.pipeline.job import Job, fail
from facepic.pipeline.log import log, log_batch
from facepic.pipeline.thumbnails import make_thumbnails
from facepic.pipeline.upload import upload
from facepic.scan import cannot_process, display
from facepic.settings import Settings, redact
from facepic.storage import StorageError, StorageUnavailable

logger = logging.getLogger(__name__)

TRANSIENT = (DatabaseUnavailable, StorageUnavailable)

STAGE_FUNCTIONS: dict[str, Callable[[Context, Job], Job]] = {
    "detect": detect,
    "thumbnails": make_thumbnails,
    "upload": upload,
    "index": index,
    "log": log,
}


def run_stage(ctx: Context, stage: str, job: Job) -> Job:
    """Run one stage and note how long it took (no failure policy: see ``execute``)."""
    start = time.perf_counter()
    out = STAGE_FUNCTIONS[stage](ctx, job)
    timings = {**(out.get("timings") or {}), stage: round(time.perf_counter() - start, 4)}
    return {**out, "timings": timings}


@dataclass
class Outcome:
    job: Job | None  # the job to hand on; None while a retry is due
    retry_in: float | None = None  # seconds until the stage should be tried again
    gave_up: bool = False  # a server stayed out of reach through every retry


def _stop_if_data_folder(error: Exception, settings: Settings) -> None:
    """DataFolderError when ``error`` comes from a data folder that cannot be written: a disk
    error, or the embedded database failing on a full disk (it fails every write from then on)."""
    if is_disk_error(error):
        raise data_folder_error(error, settings.data_dir) from None  # type: ignore[arg-type]
    if isinstance(error, DatabaseError) and disk_full(settings.data_dir):
        raise data_folder_error(OSError(errno.ENOSPC, "No space left on device"), settings.data_dir) from None


def backoff(settings: Settings, attempt: int) -> float:
    return min(60.0, settings.retry_backoff * 2**attempt) * random.uniform(0.5, 1.0)


def execute(ctx: Context, stage: str, job: Job, attempt: int = 0, retries: int | None = None) -> Outcome:
    """Run ``stage`` on ``job`` under the failure policy (module docstring). ``attempt`` counts
    earlier tries of this stage for this job; ``retries`` overrides FACEPIC_RETRIES."""
    settings = ctx.settings
    allowed = settings.retries if retries is None else retries
    try:
        return Outcome(run_stage(ctx, stage, job))
    except (DatabaseError, StorageError, OSError) as e:
        _stop_if_data_folder(e, settings)
        error: Exception = e
    except FacePicError:  # the data folder, a missing model: no photo's fault, the run stops
        raise
    except Exception as e:
        if stage == "log":
            raise
        logger.exception("stage %s failed on %s", stage, display(job.get("file", "")))
        return Outcome(fail(job, stage, describe_error(e, settings)))
    if isinstance(error, TRANSIENT) and attempt < allowed:
        logger.warning("retrying %s of %s: %s", stage, display(job.get("file", "")), error)
        return Outcome(None, retry_in=backoff(settings, attempt))
    if stage == "log":
        raise error
    gave_up = isinstance(error, TRANSIENT)
    if stage == "upload" and isinstance(error, StorageUnavailable):
        logger.error("%s", cannot_process(job.get("file", ""), f"upload failed: {error}"))
        return Outcome(upload_gave_up(job, error, settings), gave_up=True)
    return Outcome(fail(job, stage, describe_error(error, settings)), gave_up=gave_up)


# The stages the index worker (and `facepic run`'s main process) runs over a batch of photos.
BATCH_STAGES = ("index", "log")


@dataclass
class BatchOutcome:
    jobs: list[Job] | None  # None: the batch did not go through
    transient: bool = False  # because a server was out of reach (worth a retry)


def execute_batch(ctx: Context, jobs: list[Job]) -> BatchOutcome:
    """index and log over a batch of photos at once: the decisions of one photo after another,
    one round trip per kind of write, the ledger appended once. No jobs when the batch did not
    go through (a server out of reach, a photo's own fault): its photos then go one by one
    through ``execute``, which retries or fails each as the policy says; what the batch wrote
    before is kept by them (every write is an idempotent upsert, a stored face keeps its
    person). A data folder that cannot be written stops the run, as in ``execute``."""
    settings = ctx.settings
    start = time.perf_counter()
    try:
        indexed = index_batch(ctx, jobs)
        share = round((time.perf_counter() - start) / len(jobs), 4)
        return BatchOutcome(
            log_batch(ctx, [{**job, "timings": {**(job.get("timings") or {}), "index": share}} for job in indexed])
        )
    except (DatabaseError, StorageError, OSError) as e:
        _stop_if_data_folder(e, settings)
        error: Exception = e
    except FacePicError:
        raise
    except Exception as e:  # noqa: BLE001 - one photo's fault: the one-by-one path finds which
        error = e
    logger.warning("a batch of %s photos did not go through: %s", len(jobs), describe_error(error, settings))
    return BatchOutcome(None, transient=isinstance(error, TRANSIENT))


def upload_gave_up(job: Job, exc: BaseException, settings: Settings) -> Job:
    """The bucket stayed unreachable: keep the photo, processed but not uploaded."""
    return {**job, "uploaded": False, "upload_error": describe_error(exc, settings)}


def describe_error(exc: BaseException, settings: Settings) -> str:
    """One line for a failure of a stage, without secrets."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return redact(f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__, settings)
