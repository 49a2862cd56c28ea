"""`facepic run`: the whole chain in the foreground, no servers to set up.

The pool stages of the table (``facepic.pipeline.stages``: detect, thumbnails) run in a
process pool using every core; the serial ones (upload, index, log) run in this process, one
photo at a time, so person assignment stays serialised exactly as on the `index` queue.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from itertools import groupby, islice

from facepic.context import Context
from facepic.pipeline.job import Job, fail
from facepic.pipeline.policy import execute, execute_batch, retrying
from facepic.pipeline.stages import BY_NAME, Stage, Where
from facepic.planner import Summary
from facepic.poolserver import POOL_PRELOAD
from facepic.procs import alive
from facepic.runtime import default_threads, limit_blas_threads, limit_image_threads, openvino_precision
from facepic.scan import cannot_process, display
from facepic.settings import Settings

# Photos indexed together, at most (what the pool has ready, in order, up to this). Each batch
# costs the library a dozen commands besides its photos' own writes (on the embedded server about
# half a millisecond of CPU each), so larger batches leave the pool more of the cores: on 1,705
# LFW photos, 64 instead of 16 took the main process from 6.1 to 5.5 core-seconds.
BATCH = 64
TAIL = 16  # once every photo is in the pool: batches this small index beside its last photos
# Small photos go to the pool a few at a time: each task costs the main process (its executor's
# threads, the futures) about 0.4 ms of CPU whatever its size, a fortieth of a web-sized
# photo's analysis. A camera photo still goes alone, so the run's end waits for one at most.
CHUNK = 4
SMALL_PHOTO = 256 * 1024  # bytes: a web export, a scan of a print; a camera's photo is larger
logger = logging.getLogger(__name__)
# Seconds the run waits for its pool to say OpenVINO's precision (a pool process answers once
# it has loaded its model: about half a second); past it the run asks OpenVINO itself.
PRECISION_WAIT = 3.0

_pool_context: Context | None = None
PARENT_POLL_SECONDS = 1.0
PROCESS_DIED = (
    "the process analysing it died twice (killed by the system, for example for lack of "
    "memory, or a crash in a decoder)"
)


def _exit_with_parent(parent: int) -> None:
    """End this pool process within a second of the run's death (kill -9 included), so no
    orphan keeps its memory. Its own parent is the fork server, which ends with the run."""
    server = os.getppid()

    def watch() -> None:
        while os.getppid() == server and alive(parent):
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="facepic-parent-watch", daemon=True).start()


def _init_pool(settings: Settings, processes: int, model: str | None, parent: int) -> None:
    global _pool_context
    # Ctrl-C is the run's to handle: it stops the pool (its photos under way finish, the others
    # are cancelled), and no pool process prints a traceback, whether it was loading the model,
    # analysing a photo or waiting for one. (The fork server starts with it ignored too.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    limit_blas_threads(default_threads(processes))
    limit_image_threads(default_threads(processes))
    _pool_context = Context(settings, processes=processes, stages_together=True)
    if model:
        _load(model)  # while the main process opens the library


def _ready() -> bool:
    return True


def _load(model: str) -> None:
    """In a pool process: load ``model`` ahead of its first photo. A model that cannot load
    (or a guess the run then corrects) is left to the first photo, which loads it again and
    whose ModelError stops the run with one clear line; a process that died here would only
    break the pool, each photo then "died twice"."""
    assert _pool_context is not None
    try:
        _pool_context.engine(model)
    except Exception:  # noqa: BLE001 - the first photo raises it again, where it is said
        pass


class CpuPool:
    """The process pool for the CPU stages, started (models loading) before the scan. A pool
    broken by the death of one of its processes is replaced by a fresh one."""

    def __init__(self, settings: Settings, model: str | None, processes: int = 0) -> None:
        self.settings = settings
        self.model = model
        self.processes = max(1, processes or settings.workers or os.cpu_count() or 1)
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # Pool processes fork from a server process started fresh (never from this one, whose
        # embedded database has threads), which imports what they need once for all of them.
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(list(POOL_PRELOAD))  # if start_fork_server has not run
        executor = ProcessPoolExecutor(
            self.processes,
            mp_context=mp,
            initializer=_init_pool,
            initargs=(self.settings, self.processes, self.model, os.getpid()),
        )

        # In a thread: starting the fork server takes half a second, which the scan uses.
        threading.Thread(target=self._to_each, args=(executor, _ready), name="facepic-pool-start", daemon=True).start()
        return executor

    def _to_each(self, executor: ProcessPoolExecutor, task: Callable[..., object], *args: object) -> None:
        """``task`` submitted once per process (each process starts as it takes one). A pool
        shut down, broken or interrupted (Ctrl-C) meanwhile is left as it is: its user, or the
        first photo, finds out and says so."""
        try:
            for _ in range(self.processes):
                executor.submit(task, *args)
        except (RuntimeError, BrokenProcessPool, EOFError, OSError):
            pass

    def openvino_precision(self, timeout: float = PRECISION_WAIT) -> str | None:
        """OpenVINO's precision on this CPU, as a pool process finds it once it has loaded its
        model (it has OpenVINO imported already; this process need not import it); None where
        it could not say within ``timeout`` seconds (a model still downloading, say) or at all."""
        try:
            return self.executor.submit(openvino_precision).result(timeout)
        except Exception:  # noqa: BLE001 - a broken pool, OpenVINO missing or failing, no answer yet: the caller asks itself
            return None

    def restart(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = self._start()

    def use(self, model: str) -> None:
        """Analyse with ``model``: a pool started with another (a guess made before the
        library said which) starts again, so that no process keeps a model it never uses; one
        started with none loads it now."""
        if model == self.model:
            return
        loaded, self.model = self.model is not None, model
        if loaded:
            self.restart()
            return
        self._to_each(self.executor, _load, model)

    def __enter__(self) -> CpuPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(cancel_futures=True)


def _pool_stages(job: Job, stages: tuple[str, ...]) -> Job:
    """``stages`` (their names: the table's own in this process) on ``job``, in a pool process.
    A data folder that cannot be written raises DataFolderError: the main process stops the run."""
    assert _pool_context is not None
    for name in stages:
        outcome = execute(_pool_context, BY_NAME[name], job, retries=0)  # pool stages meet no server
        assert outcome.job is not None
        job = outcome.job
    return job


def _pool_stages_of(jobs: list[Job], stages: tuple[str, ...]) -> list[Job]:
    """``_pool_stages`` on each of ``jobs``, in a pool process."""
    return [_pool_stages(job, stages) for job in jobs]


def run_serial_stages(
    ctx: Context,
    job: Job,
    stages: Sequence[Stage],
    unreachable: set[str],
    sleep: Callable[[float], None] = time.sleep,
) -> Job:
    """The given stages in order, under the one failure policy (``facepic.pipeline.policy``).
    ``unreachable``, kept by the caller for one run, holds the stages whose server stayed out
    of reach through every retry: later photos try it once each until it answers again, so a
    long outage does not stall the run photo after photo."""
    for stage in stages:
        job = _run_serial_stage(ctx, stage, job, unreachable, sleep)
    return job


def _run_serial_stage(
    ctx: Context, stage: Stage, job: Job, unreachable: set[str], sleep: Callable[[float], None]
) -> Job:
    retries = 0 if unreachable else None
    outcome = retrying(lambda attempt: execute(ctx, stage, job, attempt, retries), sleep)
    if outcome.gave_up:
        unreachable.add(stage.name)
    else:
        unreachable.discard(stage.name)
    assert outcome.job is not None
    return outcome.job


def run_serial_batch(
    ctx: Context,
    jobs: list[Job],
    stages: Sequence[Stage],
    unreachable: set[str],
    sleep: Callable[[float], None] = time.sleep,
) -> list[Job]:
    """``run_serial_stages`` over several photos, in the order of ``stages``; consecutive stages
    with a batch function (index and log) are done for all of them at once (``execute_batch``:
    the same decisions, fewer round trips); a batch that does not go through goes one photo at
    a time."""
    for batched, group in groupby(stages, key=lambda stage: stage.batch is not None):
        together = tuple(group)
        names = {stage.name for stage in together}
        if batched and len(jobs) > 1 and not names & unreachable:
            outcome = retrying(partial(execute_batch, ctx, together, jobs), sleep)
            if outcome.jobs is not None:
                jobs = outcome.jobs
                continue
            if outcome.gave_up:  # retried enough: one by one, each photo tries once
                unreachable.update(names)
        jobs = [run_serial_stages(ctx, job, together, unreachable, sleep) for job in jobs]
    return jobs


def process(
    ctx: Context,
    jobs: Iterable[Job],
    stages: Sequence[Stage],
    on_done: Callable[[Job], None],
    pool: CpuPool | None = None,
    between: Callable[[], None] | None = None,
) -> None:
    """Run ``stages`` over ``jobs``; ``on_done`` sees each finished job, in the order of
    ``jobs`` whatever the pool's timing, so the same folder always gives the same persons.
    ``jobs`` may be the scan itself: a photo is taken from it when the pool has room, so the
    first photos are analysed while the scan goes on, each soon after the scan read it.
    ``between`` runs after each batch of the serial stages, the pool fed and busy (a slice of
    the settle, in `facepic run`).

    A photo whose pool process dies (the OOM killer, a decoder crash) is tried again alone in
    a fresh process; if that one dies too, the photo fails and the run goes on."""
    cpu = tuple(stage.name for stage in stages if stage.where is Where.POOL)
    serial = [stage for stage in stages if stage.where is Where.SERIAL]
    unreachable: set[str] = set()
    if not cpu:
        source = iter(jobs)
        while batch := list(islice(source, BATCH)):
            for job in run_serial_batch(ctx, batch, serial, unreachable):
                on_done(job)
        return
    with pool or CpuPool(ctx.settings, None) as cpu_pool:
        in_order = _InOrder(cpu_pool, jobs, cpu)
        while not in_order.finished:
            if not in_order.submit_more():
                continue
            in_order.collect()
            batch = in_order.ready()
            if batch:
                for job in run_serial_batch(ctx, batch, serial, unreachable):
                    on_done(job)
                if between is not None:
                    in_order.submit_more()  # the pool works on while this runs
                    between()


class _InOrder:
    """The pool's side of ``process``: photos submitted a bounded way ahead of those served,
    their results kept until their turn in the order of the jobs. Every photo in a pool that
    broke is a suspect, tried again alone."""

    def __init__(self, pool: CpuPool, jobs: Iterable[Job], stages: tuple[str, ...]) -> None:
        self.pool = pool
        self.source: Iterator[Job] | None = iter(jobs)  # None once it has given its last photo
        self.jobs: dict[int, Job] = {}  # the photos taken from it and not yet served
        self.stages = stages
        self.ahead = 2 * BATCH + 4 * pool.processes  # bounds the photos waiting for their turn in order
        self.results: dict[int, Job] = {}
        self.running: dict[Future, list[int]] = {}  # each task's photos
        self.suspects: deque[int] = deque()
        self.alone: int | None = None  # a suspect running with nothing beside it
        self.submitted = self.served = 0

    def broken(self) -> None:
        # Every photo still in the broken pool is a suspect until it runs alone.
        self.suspects.extend(sorted(i for task in self.running.values() for i in task if i != self.alone))
        self.running.clear()
        self.pool.restart()

    def submit(self, task: list[int]) -> bool:
        try:
            future = self.pool.executor.submit(_pool_stages_of, [self.jobs[i] for i in task], self.stages)
        except BrokenProcessPool:  # a process died before the pool noticed
            return False
        self.running[future] = task
        return True

    @property
    def in_pool(self) -> int:
        """The photos of the tasks in the pool."""
        return sum(map(len, self.running.values()))

    def submit_more(self) -> bool:
        """A suspect alone once the pool is idle, else the next photos, as far ahead as allowed;
        False: the pool broke as the suspect was submitted (it was restarted)."""
        if self.suspects and not self.running:
            self.alone = self.suspects.popleft()
            if not self.submit([self.alone]):
                self.suspects.appendleft(self.alone)
                self.alone = None
                self.broken()
                return False
        while (
            not self.suspects
            and self.alone is None
            and self.submitted - self.served < self.ahead
            and self.in_pool < min(BATCH, TAIL) + 2 * self.pool.processes  # read soon after its hash
            and (task := self._task())
        ):
            if not self.submit(task):
                self.broken()
                break
            self.submitted += len(task)
        return True

    def _task(self) -> list[int]:
        """The next photos to submit together: up to CHUNK small ones, or one larger."""
        task: list[int] = []
        while len(task) < CHUNK and self._take(i := self.submitted + len(task)):
            size = self.jobs[i].get("size")
            small = size is not None and size <= SMALL_PHOTO  # a size not known: alone
            if task and not small:
                break  # it goes alone, next
            task.append(i)
            if not small:
                break
        return task

    def _take(self, i: int) -> bool:
        """Whether photo ``i`` (the next not submitted, or one after it taken already) is there,
        taken from the source if need be."""
        if i in self.jobs:  # taken, but not yet submitted (or its pool broke first)
            return True
        if self.source is None:
            return False
        job = next(self.source, None)
        if job is None:
            self.source = None
            return False
        self.jobs[i] = job
        return True

    @property
    def finished(self) -> bool:
        """Every photo of the source served."""
        return self.source is None and not self.jobs  # none taken and not yet served

    def collect(self) -> None:
        """Wait for a photo in the pool to finish, if any runs; a pool that broke is restarted."""
        if not self.running:
            return
        finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
        pool_died = False
        for future in finished:
            task = self.running.pop(future)
            try:
                # A DataFolderError raised there stops the run.
                self.results.update(zip(task, future.result(), strict=True))
            except BrokenProcessPool:
                pool_died = True
                if task == [self.alone]:
                    i = task[0]
                    logger.warning("pool process died twice on %s", display(self.jobs[i].get("file", "")))
                    self.results[i] = fail(self.jobs[i], self.stages[0], PROCESS_DIED)
                else:
                    self.suspects.extend(task)
            if self.alone in task:
                self.alone = None
        if pool_died:
            self.broken()

    def ready(self) -> list[Job]:
        """The photos ready next in order, served together once there are BATCH of them (TAIL
        once the source has given its last photo), or whenever the pool has nothing else under
        way; none otherwise."""
        ready = 0
        while self.served + ready in self.results:
            ready += 1
        least = min(BATCH, TAIL) if self.source is None else BATCH
        if not ready or (ready < least and self.running):
            return []
        batch = [self.results.pop(self.served + n) for n in range(ready)]
        for n in range(ready):
            del self.jobs[self.served + n]
        self.served += ready
        return batch


def summarize(summary: Summary, job: Job, report: Callable[[str], None]) -> None:
    summary.finished(job)
    for warning in job.get("warnings") or ():
        report(f"warning: {display(job.get('file', ''))}: {warning}")
    if job.get("error"):
        report(cannot_process(job.get("file", ""), job["error"]))
    elif "replaced" in job:
        from facepic import versions  # pymongo's: the pool's processes never import it

        report(versions.note(display(job.get("file", "")), job["replaced"]))
