"""The one table of stages: each stage's name, function, where it runs, its batch function and
its Celery queue. Everything else is derived from it: `facepic run`'s pool and main process
(``facepic.runner``), the failure policy's exceptions (``facepic.pipeline.policy``), the
stages a photo goes through (``stages_for``), and the Celery routes and tasks
(``workers.routing``, ``workers.tasks``). Adding a stage is adding its module and its line here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from facepic.context import Context
from facepic.pipeline import detect, index, log, thumbnails, upload
from facepic.pipeline.job import Job


class Where(StrEnum):
    """Where a stage runs in `facepic run` (on Celery, its queue says)."""

    # Works on the photo's pixels: many photos at once, in `facepic run`'s process pool (a
    # Celery worker's pool). A photo queued again only to upload it skips these.
    POOL = "pool"
    # Stores what the pool stages found: in `facepic run`'s own process, one photo after
    # another in scan order, so persons are decided in the same order every time.
    SERIAL = "serial"


@dataclass(frozen=True)
class Stage:
    """One stage of a photo: a plain function ``run(ctx, job) -> job``, and how it is run."""

    name: str  # also its Celery task's (facepic.<name>) and a failed photo's stage in the ledger
    run: Callable[[Context, Job], Job]
    where: Where
    # Its Celery task's queue (workers.routing declares them); the stages on the index queue are
    # done by the index worker's drain, a batch of photos at a time, after the chained ones.
    queue: str
    # The same over several photos at once (one round trip per kind of write); consecutive
    # stages with one run over a batch together.
    batch: Callable[[Context, list[Job]], list[Job]] | None = None
    # The photo when the stage's server stayed out of reach through every retry, given the
    # reason (one line); None: the photo fails.
    gave_up: Callable[[Job, str], Job] | None = None
    # The stage that records failures (the ledger's line): its own failure stops the run.
    must_succeed: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("detect", detect.detect, Where.POOL, "cpu"),
    Stage("thumbnails", thumbnails.make_thumbnails, Where.POOL, "cpu"),
    Stage("upload", upload.upload, Where.SERIAL, "upload", gave_up=upload.not_uploaded),
    Stage("index", index.index, Where.SERIAL, "index", batch=index.index_batch),
    Stage("log", log.log, Where.SERIAL, "index", batch=log.log_batch, must_succeed=True),
)
BY_NAME = {stage.name: stage for stage in STAGES}
POOL = tuple(stage for stage in STAGES if stage.where is Where.POOL)
SERIAL = tuple(stage for stage in STAGES if stage.where is Where.SERIAL)


def stages_for(upload_only: bool = False) -> tuple[Stage, ...]:
    """The stages a photo goes through: all; only the serial ones for a photo analysed before
    and queued again to upload it (``--upload-only``)."""
    return SERIAL if upload_only else STAGES


def in_order(stages: Sequence[Stage], first: Callable[[Stage], bool], rule: str) -> None:
    """ValueError unless every stage ``first`` holds for comes before every other."""
    flags = [first(stage) for stage in stages]
    if flags != sorted(flags, reverse=True):
        names = ", ".join(stage.name for stage in stages)
        raise ValueError(f"the stages ({names}) break a rule of facepic.pipeline.stages: {rule}")


if len(BY_NAME) != len(STAGES):
    raise ValueError("two stages of facepic.pipeline.stages share a name")
# A photo leaves the pool once: `facepic run` hands it from the pool to its own process.
in_order(STAGES, lambda stage: stage.where is Where.POOL, "the pool stages come before the serial ones")
