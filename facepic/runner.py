"""`facepic run`: the whole chain in the foreground, no servers to set up.

The CPU stages (detect, thumbnails) run in a process pool using every core; upload, index
and log run in this process, one photo at a time, so person assignment stays serialised
exactly as on the `index` queue.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable, Iterable

from facepic.enqueue import Summary
from facepic.pipeline import Context, Job, describe_error, run_stage, upload_gave_up
from facepic.scan import display
from facepic.storage import StorageUnavailable
from facepic.settings import Settings

CPU_STAGES = ("detect", "thumbnails")
SERIAL_STAGES = ("upload", "index", "log")

_pool_context: Context | None = None


def _init_pool(settings: Settings, processes: int, model: str | None) -> None:
    global _pool_context
    _pool_context = Context(settings, processes=processes)
    _pool_context.pixels_in_work_file = False  # detect and thumbnails share this process
    if model:
        _pool_context.engine(model)  # load while the main process is still scanning


def _ready() -> bool:
    return True


class CpuPool:
    """The process pool for the CPU stages, started (models loading) before the scan."""

    def __init__(self, settings: Settings, model: str | None, processes: int = 0) -> None:
        self.processes = max(1, processes or settings.workers or os.cpu_count() or 1)
        mp = multiprocessing.get_context("spawn")  # the embedded server's threads must not be forked
        self.executor = ProcessPoolExecutor(self.processes, mp_context=mp, initializer=_init_pool,
                                            initargs=(settings, self.processes, model))
        for _ in range(self.processes):
            self.executor.submit(_ready)

    def __enter__(self) -> "CpuPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(cancel_futures=True)


def _cpu_stages(job: Job) -> Job:
    assert _pool_context is not None
    ctx = _pool_context
    for stage in CPU_STAGES:
        try:
            job = run_stage(ctx, stage, job)
        except Exception as e:  # noqa: BLE001 - one photo never stops the run
            return {**job, "error": describe_error(e, ctx.settings), "failed_stage": stage}
    return job


def run_serial_stages(ctx: Context, job: Job, stages: Iterable[str]) -> Job:
    """The given stages in order; an unexpected error marks the photo failed, then logs it."""
    for stage in stages:
        try:
            job = run_stage(ctx, stage, job)
        except StorageUnavailable as e:
            if stage != "upload":
                job = {**job, "error": describe_error(e, ctx.settings), "failed_stage": stage}
            else:
                job = upload_gave_up(job, e, ctx.settings)
        except Exception as e:  # noqa: BLE001
            if stage == "log":
                raise
            job = {**job, "error": describe_error(e, ctx.settings), "failed_stage": stage}
    return job


def process(
    ctx: Context,
    jobs: list[Job],
    stages: tuple[str, ...],
    on_done: Callable[[Job], None],
    pool: CpuPool | None = None,
) -> None:
    """Run ``stages`` over ``jobs``; ``on_done`` sees each finished job."""
    cpu = [s for s in stages if s in CPU_STAGES]
    serial = [s for s in stages if s not in CPU_STAGES]
    if not cpu or not jobs:
        for job in jobs:
            on_done(run_serial_stages(ctx, job, serial))
        return
    with pool or CpuPool(ctx.settings, None) as cpu_pool:
        executor, processes = cpu_pool.executor, cpu_pool.processes
        pending: set[Future] = set()
        queue = iter(jobs)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < 2 * processes:
                job = next(queue, None)
                if job is None:
                    exhausted = True
                else:
                    pending.add(executor.submit(_cpu_stages, job))
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                on_done(run_serial_stages(ctx, future.result(), serial))


def summarize(summary: Summary, job: Job, report: Callable[[str], None]) -> None:
    if job.get("error"):
        summary.failed += 1
        report(f"error: cannot process {display(job.get('path', ''))}: {job['error']}")
