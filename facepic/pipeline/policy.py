"""The failure policy of a stage, the one both `facepic run` and the Celery tasks follow.

- a stage that works hands its job on;
- a photo's own fault (corrupt, unreadable, a bug met on it) fails that photo (``fail``),
  with one line of reason, and the run goes on;
- MongoDB or the bucket out of reach is retried (``retry_in``: ``FACEPIC_RETRIES`` times,
  exponential backoff with jitter); then the photo fails, or goes on as its stage's
  ``gave_up`` says (the upload: processed but not uploaded, ``--upload-only`` finishes it);
- a data folder that cannot be written (full, read-only) is nobody's photo's fault: it stops
  the run (DataFolderError), since every photo after it would fail the same way; so does a
  failure of the stage that records failures (``must_succeed``: the log).
"""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from facepic.context import Context
from facepic.errors import (
    DatabaseError,
    DatabaseUnavailable,
    FacePicError,
    data_folder_error,
    disk_full,
    first_line,
    is_disk_error,
)
from facepic.pipeline.job import Job, fail
from facepic.pipeline.stages import Stage
from facepic.scan import cannot_process, display
from facepic.settings import Settings, redact
from facepic.storage import StorageError, StorageUnavailable

logger = logging.getLogger(__name__)

TRANSIENT = (DatabaseUnavailable, StorageUnavailable)


def run_stage(ctx: Context, stage: Stage, job: Job) -> Job:
    """Run one stage and note how long it took (no failure policy: see ``execute``)."""
    start = time.perf_counter()
    out = stage.run(ctx, job)
    timings = {**(out.get("timings") or {}), stage.name: round(time.perf_counter() - start, 4)}
    return {**out, "timings": timings}


@dataclass
class Outcome:
    job: Job | None  # the job to hand on; None while a retry is due
    retry_in: float | None = None  # seconds until the stage should be tried again
    gave_up: bool = False  # a server stayed out of reach through every retry


def retry_in(settings: Settings, error: BaseException, attempt: int, retries: int | None = None) -> float | None:
    """Seconds to wait before trying again after ``error`` met at try ``attempt`` (from 0), or
    None: no retry cures it, or it was retried enough. ``retries`` overrides FACEPIC_RETRIES."""
    allowed = settings.retries if retries is None else retries
    if not isinstance(error, TRANSIENT) or attempt >= allowed:
        return None
    return min(60.0, settings.retry_backoff * 2**attempt) * random.uniform(0.5, 1.0)


def _stop_if_data_folder(error: Exception, settings: Settings) -> None:
    """DataFolderError when ``error`` comes from a data folder that cannot be written: a disk
    error, or the embedded database failing on a full disk (it fails every write from then on)."""
    if is_disk_error(error):
        raise data_folder_error(error, settings.data_dir) from None  # type: ignore[arg-type]
    if isinstance(error, DatabaseError) and disk_full(settings.data_dir):
        raise data_folder_error(OSError(errno.ENOSPC, "No space left on device"), settings.data_dir) from None


def execute(ctx: Context, stage: Stage, job: Job, attempt: int = 0, retries: int | None = None) -> Outcome:
    """Run ``stage`` on ``job`` under the failure policy (module docstring). ``attempt`` counts
    earlier tries of this stage for this job; ``retries`` overrides FACEPIC_RETRIES."""
    settings = ctx.settings
    try:
        return Outcome(run_stage(ctx, stage, job))
    except (DatabaseError, StorageError, OSError) as e:
        _stop_if_data_folder(e, settings)
        error: Exception = e
    except FacePicError:  # the data folder, a missing model: no photo's fault, the run stops
        raise
    except Exception as e:
        if stage.must_succeed:
            raise
        logger.exception("stage %s failed on %s", stage.name, display(job.get("file", "")))
        return Outcome(fail(job, stage.name, describe_error(e, settings)))
    wait = retry_in(settings, error, attempt, retries)
    if wait is not None:
        logger.warning("retrying %s of %s: %s", stage.name, display(job.get("file", "")), error)
        return Outcome(None, retry_in=wait)
    if stage.must_succeed:
        raise error
    gave_up = isinstance(error, TRANSIENT)
    if gave_up and stage.gave_up is not None:
        logger.error("%s", cannot_process(job.get("file", ""), f"{stage.name} failed: {error}"))
        return Outcome(stage.gave_up(job, describe_error(error, settings)), gave_up=True)
    return Outcome(fail(job, stage.name, describe_error(error, settings)), gave_up=gave_up)


@dataclass
class BatchOutcome:
    jobs: list[Job] | None  # None: the batch did not go through (its photos go one by one)
    retry_in: float | None = None  # seconds until the batch should be tried again
    gave_up: bool = False  # a server stayed out of reach through every retry


def execute_batch(
    ctx: Context, stages: tuple[Stage, ...], jobs: list[Job], attempt: int = 0, retries: int | None = None
) -> BatchOutcome:
    """``stages`` (each with a batch function) over a batch of photos at once: the decisions of
    one photo after another, one round trip per kind of write, the ledger appended once. No
    jobs when the batch did not go through: a retry is due (a server out of reach, as
    ``retry_in`` says), or its photos go one by one through ``execute``, which retries or fails
    each as the policy says; what the batch wrote before is kept by them (every write is an
    idempotent upsert, a stored face keeps its person). A data folder that cannot be written
    stops the run, as in ``execute``."""
    settings = ctx.settings
    try:
        for stage in stages:
            assert stage.batch is not None
            start = time.perf_counter()
            jobs = stage.batch(ctx, jobs)
            share = round((time.perf_counter() - start) / len(jobs), 4)
            jobs = [{**job, "timings": {**(job.get("timings") or {}), stage.name: share}} for job in jobs]
        return BatchOutcome(jobs)
    except (DatabaseError, StorageError, OSError) as e:
        _stop_if_data_folder(e, settings)
        error: Exception = e
    except FacePicError:
        raise
    except Exception as e:  # noqa: BLE001 - one photo's fault: the one-by-one path finds which
        error = e
    logger.warning("a batch of %s photos did not go through: %s", len(jobs), describe_error(error, settings))
    wait = retry_in(settings, error, attempt, retries)
    return BatchOutcome(None, retry_in=wait, gave_up=wait is None and isinstance(error, TRANSIENT))


class Retried(Protocol):
    retry_in: float | None


Tried = TypeVar("Tried", bound=Retried)


def retrying(attempt: Callable[[int], Tried], sleep: Callable[[float], None] = time.sleep) -> Tried:
    """``attempt(n)`` for n = 0, 1, ... until its outcome asks for no retry, after the wait each
    asks for: the policy's retries in a process of its own (a Celery task retries as a task)."""
    tries = 0
    while True:
        outcome = attempt(tries)
        if outcome.retry_in is None:
            return outcome
        sleep(outcome.retry_in)
        tries += 1


def describe_error(exc: BaseException, settings: Settings) -> str:
    """One line for a failure of a stage, without secrets."""
    text = first_line(exc, limit=300) if str(exc) else ""
    return redact(f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__, settings)
