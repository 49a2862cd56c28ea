"""`facepic run`: the whole chain in the foreground, on the embedded default or the servers.

The folder is checked and scanned against the ledger before anything else: the library (the
embedded database), the face model and the pool start at the first new photo, so a run with
nothing new opens none of them. On a terminal, bars show the scan, the photos and the settle.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facepic.cli.group import (
    STDERR,
    cli,
    finish,
    import_root,
    say_error,
    settings_of,
    watch,
    with_upload_options,
    with_watch_options,
)

if TYPE_CHECKING:
    from tqdm import tqdm

    from facepic import models
    from facepic.context import Context
    from facepic.pipeline.job import Job
    from facepic.planner import Planner, Summary
    from facepic.runner import CpuPool
    from facepic.settings import Settings
    from facepic.settle import AsTheRunGoes

TICK_SECONDS = 0.5  # a bar waiting on the pool (models loading) still shows its clock


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@with_upload_options
@click.option("--workers", type=int, help="Processes for the CPU stages (default: one per core).")
@with_watch_options
@click.pass_obj
def run(
    obj: dict,
    path: Path | None,
    disable_upload: bool,
    upload_only: bool,
    retry_failed: bool,
    follow_links: bool,
    workers: int | None,
    watch: bool,
    interval: float,
) -> None:
    """Process a folder of photos completely, in the foreground, with no servers to set up.
    With --watch it then keeps looking (polling, so network drives work too) and takes each
    new photo once it has stopped changing, with a summary line per batch.

    Without FACEPIC_MONGODB_URI an embedded database keeps its files in the data folder;
    without a bucket, originals stay where they are and thumbnails go to the data folder.

    Example:

        facepic run ~/Pictures/2024
        facepic run --watch ~/Pictures/Inbox
    """
    settings = settings_of(obj)
    if workers:
        settings = settings.replace(workers=workers)
    if follow_links:
        settings = settings.replace(follow_links=True)
    upload = settings.stores_originals and not disable_upload
    root = None if upload_only else import_root(settings, path)
    if watch:
        if root is None:
            raise click.UsageError("--watch needs a folder to watch (not --upload-only)")
        _watch(settings, root, upload, retry_failed, interval)
        return
    with ExitStack() as stack:
        library = OnDemand(settings, stack)
        summary = _run(library, root, upload, upload_only, retry_failed)
    finish(summary, root)


def _watch(settings: Settings, root: Path, upload: bool, retry_failed: bool, interval: float) -> None:
    """Run on ``root`` again every ``interval`` seconds until interrupted (facepic.cli.group.watch)."""
    with ExitStack() as stack:
        library = OnDemand(settings, stack)
        watch(root, interval, retry_failed, lambda steady, retry: _run(library, root, upload, False, retry, steady))


class OnDemand:
    """The library of a run, opened at its first use (the embedded database, the connections,
    a change a killed process left finished): a run with nothing new never opens it."""

    def __init__(self, settings: Settings, stack: ExitStack) -> None:
        self.settings = settings
        self._stack = stack
        self._ctx: Context | None = None

    @property
    def opened(self) -> bool:
        return self._ctx is not None

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            from facepic.changes import finish_pending_of
            from facepic.context import Context
            from facepic.embedded import embedded_database
            from facepic.runtime import limit_blas_threads

            limit_blas_threads(1)  # this process's index stage runs beside a pool that fills the cores
            # journal=False: the run flushes the embedded server's log once a batch (the
            # log stage's ``on_disk``) and before it says the faces are settled, not at each write.
            settings = self._stack.enter_context(embedded_database(self.settings, alone=True, journal=False))
            ctx = self._stack.enter_context(Context(settings))
            ctx.library.ensure_indexes()
            finish_pending_of(ctx)
            self._ctx = ctx
        return self._ctx


def choose_model(
    settings: Settings, library_model: str | None, processes: int, pool: CpuPool | None = None
) -> models.ModelChoice:
    """The model a run uses, described with the runtime its ``processes`` processes use where
    this machine has the face engine. Where they run on OpenVINO, its precision comes from
    ``pool``'s processes if they say it in time: this process then does not import OpenVINO
    (0.15 s of CPU, on the way to the first photo sent to the pool)."""
    from facepic import models
    from facepic.runtime import Runtime, engine_installed

    choice = models.for_library(settings.model, settings.model_root, library_model)
    if not engine_installed():
        return choice
    precision = pool.openvino_precision if pool is not None else None  # asked only where OpenVINO runs them
    return choice.on(Runtime.for_settings(settings, processes, precision).describe())


def _run(
    library: OnDemand,
    root: Path | None,
    upload: bool,
    upload_only: bool,
    retry_failed: bool,
    steady: Callable[[Any], bool] | None = None,
) -> Summary:
    """One run over ``root`` (with ``upload_only``, over the photos left to upload): what
    became of its photos."""
    planner = _planner(library, upload, retry_failed)
    planner.steady = steady
    if upload_only:
        uploads = list(planner.upload_jobs())
        if uploads:
            _process(
                library.ctx, uploads, planner.summary, None, _open(library, planner, upload=True), upload_only=True
            )
        return planner.summary
    assert root is not None
    root = planner.check_root(root)  # a missing or empty folder is said before anything loads
    unsettled = library.settings.folder.unsettled
    settling: AsTheRunGoes | None = None
    with ExitStack() as stack:
        pools: list[CpuPool] = []

        def start_pool() -> None:
            # At the scan's first photo the ledger does not know as it is, the pool starts and
            # loads the likely model while the scan goes on and this process then opens the
            # library, which says which model it is. (Its processes never use the library.
            # Should every such photo prove to be known content, it ends with the run, unused.)
            from facepic.poolserver import start_fork_server

            start_fork_server()  # first: its imports start before this process imports the runner's
            from facepic.models import likely_source
            from facepic.runner import CpuPool

            settings = library.settings
            pools.append(stack.enter_context(CpuPool(settings, likely_source(settings.model, settings.model_root))))

        scan = _Scan(planner, root, start_pool)
        first = scan.first()
        if first is not None:
            pool = pools[0]
            choice = _open(library, planner, upload, pool)
            pool.use(choice.source)
            first["model"] = planner.model
            unsettled.parent.mkdir(parents=True, exist_ok=True)
            unsettled.touch()  # a run killed from here on leaves a settle to the next one
            from facepic.settle import AsTheRunGoes

            settling = AsTheRunGoes(library.ctx)
            _process(library.ctx, scan.jobs(first), planner.summary, pool, choice, scan=scan, settling=settling)
        elif unsettled.exists():
            say_error("an earlier run stopped before settling its faces: settling them now")
        else:
            return planner.summary  # nothing new: no library, model or pool was needed
    _settle(library.ctx, settling)
    library.ctx.on_disk()
    unsettled.unlink(missing_ok=True)
    return planner.summary


def _planner(library: OnDemand, upload: bool, retry_failed: bool) -> Planner:
    from facepic.ledger import Ledger
    from facepic.planner import Planner

    settings = library.settings
    return Planner(
        Ledger(settings.folder.ledger),
        "",  # the model: known once the library is open, at the first photo to process
        upload,
        retry_failed,
        report=say_error,
        record_queued=False,
        follow_links=settings.follow_links,
        retire=lambda root, path: _retire(library.ctx, root, path),
    )


class _Scan:
    """The scan of ``root`` as the run consumes it. First the folder is walked without reading
    a file (a bar counting the files looked at): the photos to hash are known, and with them
    the photos' bar's total. Then each is hashed when the pool has room for it, so a drive is
    read once (each photo soon after its hash, from memory) and its first photos are analysed
    while the others wait to be hashed."""

    def __init__(self, planner: Planner, root: Path, start_pool: Callable[[], None]) -> None:
        self.planner, self.root = planner, root
        self.start_pool = start_pool  # called at the first photo to hash, the scan going on
        self.total = 0  # photos to hash, less those that proved not new

    def first(self) -> Job | None:
        """The first new photo; None when there is none (the scan is then over)."""
        with bar(desc="scanning", bar_format="{desc}: {n_fmt} files [{elapsed}]") as scanned:
            waiting = self.planner.to_hash(self.root, looked_at=lambda: scanned.update(1), first=self.start_pool)
        self.total = len(waiting)
        self._jobs = self.planner.jobs_of(self.root, waiting, passed_over=self._passed_over)
        return next(self._jobs, None)

    def _passed_over(self) -> None:
        self.total -= 1

    def jobs(self, first: Job) -> Iterator[Job]:
        """``first``, then the other new photos, each hashed when it is asked for."""
        yield first
        yield from self._jobs


def _retire(ctx: Context, root: str, path: str) -> Any:
    from facepic import versions

    return versions.retire_one(ctx, root, path)


def _open(library: OnDemand, planner: Planner, upload: bool, pool: CpuPool | None = None) -> models.ModelChoice:
    """Open the library for the photos to process: its model, said on one line."""
    ctx = library.ctx
    settings = ctx.settings
    choice = choose_model(settings, ctx.library.library_model(), settings.workers or os.cpu_count() or 1, pool)
    say_error(choice.describe())
    planner.model = choice.source
    if upload:
        ctx.store.ensure_bucket()
    return choice


def _process(
    ctx: Context,
    jobs: Iterable[Job],
    summary: Summary,
    pool: CpuPool | None,
    choice: models.ModelChoice | None,
    upload_only: bool = False,
    scan: _Scan | None = None,
    settling: AsTheRunGoes | None = None,
) -> None:
    """The photos of ``jobs`` through the pipeline, a bar showing them; with ``scan``, ``jobs``
    are its photos, hashed as they are taken, and the bar's total follows it; with
    ``settling``, their faces are settled between batches when it is due."""
    from facepic import runner
    from facepic.pipeline.stages import stages_for
    from facepic.report import counted

    if scan is None:
        jobs = list(jobs)
        total = len(jobs)
    else:
        total = scan.total
    with bar(total=total, desc="photos", unit="photo") as done_bar, ticking(done_bar):
        done_bar.set_postfix_str("loading the face model" if pool is not None else "", refresh=False)

        def done(job: Job) -> None:
            runner.summarize(summary, job, say_error)
            persons = ctx.persons_known(choice.name) if choice is not None else None
            figures = f"faces {summary.faces:,}" + (f", persons {persons:,}" if persons is not None else "")
            done_bar.set_postfix_str(figures, refresh=False)
            if scan is not None:
                done_bar.total = scan.total  # less the duplicates found so far
            if settling is not None:
                settling.stored(job.get("persons") or ())
            done_bar.update(1)

        def between() -> None:
            if settling is not None and settling.due:
                shown = done_bar.postfix
                done_bar.set_postfix_str(f"settling {counted(settling.faces, 'face')}")
                settling.settle()
                done_bar.set_postfix_str(shown or "", refresh=False)

        runner.process(ctx, jobs, stages_for(upload_only), done, pool, between if settling is not None else None)
        if scan is not None and done_bar.total != scan.total:  # duplicates after the last new photo
            done_bar.total = scan.total
            done_bar.refresh()


def _settle(ctx: Context, settling: AsTheRunGoes | None) -> None:
    """The persons of the faces this run stored and has not settled yet (with those an earlier
    run left), decided together; on a terminal, a line before (it can take a while on a large
    library) and the figures of the run's settles after."""
    from facepic.report import counted
    from facepic.runtime import blas_threads_unlimited, limit_blas_threads
    from facepic.settle import AsTheRunGoes

    settling = settling or AsTheRunGoes(ctx)
    terminal = _on_terminal()
    if terminal:
        click.echo(f"settling {counted(settling.faces, 'face')} and those still without a person...", err=True)
    # The pool is gone: the settle's matrix products may use BLAS's own threads again (as
    # many as the cores this process may use, or OPENBLAS_NUM_THREADS; 480 camera photos: a
    # 1.10 s settle 0.09 s shorter), and one after it, for a watch's next run.
    limit_blas_threads(blas_threads_unlimited())
    try:
        s = settling.settle()
    finally:
        limit_blas_threads(1)
    if terminal:
        click.echo(
            f"persons {s.persons_before:,} -> {s.persons_after:,} (created {s.persons_created:,}, "
            f"removed {s.persons_deleted:,}); faces moved {s.faces_moved:,}, newly assigned {s.faces_assigned:,}",
            err=True,
        )


def _on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def bar(total: int | None = None, **kwargs: Any) -> Iterator[tqdm]:
    """A progress bar on stderr when it is a terminal (nothing otherwise), closed before an
    exception leaves: after Ctrl-C it is not drawn again under the "interrupted" line."""
    from tqdm import tqdm

    progress = tqdm(total=total, disable=not _on_terminal(), file=STDERR, dynamic_ncols=True, **kwargs)
    try:
        yield progress
    finally:
        progress.close()


@contextmanager
def ticking(progress: tqdm) -> Iterator[None]:
    """Redraw ``progress`` every TICK_SECONDS, so that its clock runs while nothing finishes."""
    if progress.disable:
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(TICK_SECONDS):
            progress.refresh()

    thread = threading.Thread(target=tick, name="facepic-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
