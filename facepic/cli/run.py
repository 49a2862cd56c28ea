"""`facepic run`: the whole chain in the foreground, on the embedded default or the servers."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import click

from facepic import models, versions
from facepic.changes import finish_pending_of
from facepic.cli import cli, finish, import_root, progress, say_error, settings_of, with_upload_options
from facepic.embedded import embedded_database
from facepic.pipeline import Context, Job
from facepic.planner import FULL_CHAIN, UPLOAD_CHAIN, Planner, Summary
from facepic.runner import CpuPool, process, summarize
from facepic.runtime import Runtime, engine_installed, limit_blas_threads
from facepic.settings import Settings
from facepic.settle import settle_run


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@with_upload_options
@click.option("--workers", type=int, help="Processes for the CPU stages (default: one per core).")
@click.pass_obj
def run(
    obj: dict,
    path: Path | None,
    disable_upload: bool,
    upload_only: bool,
    retry_failed: bool,
    follow_links: bool,
    workers: int | None,
) -> None:
    """Process a folder of photos completely, in the foreground, with no servers to set up.

    Without FACEPIC_MONGODB_URI an embedded database keeps its files in the data folder;
    without a bucket, originals stay where they are and thumbnails go to the data folder.

    Example:

        facepic run ~/Pictures/2024
    """
    settings = settings_of(obj)
    if workers:
        settings = settings.replace(workers=workers)
    if follow_links:
        settings = settings.replace(follow_links=True)
    upload = settings.stores_originals and not disable_upload
    root = None if upload_only else import_root(settings, path)
    limit_blas_threads(1)  # this process's index stage runs beside a pool that fills the cores
    with embedded_database(settings) as settings, Context(settings) as ctx:
        ctx.library.ensure_indexes()
        finish_pending_of(ctx)
        summary = _run(ctx, root, upload, upload_only, retry_failed)
    finish(summary, root)


def choose_model(settings: Settings, library_model: str | None, processes: int) -> models.ModelChoice:
    """The model a run uses, described with the runtime its ``processes`` processes use where
    this machine has the face engine."""
    choice = models.for_library(settings.model, settings.model_root, library_model)
    if not engine_installed():
        return choice
    return choice.on(Runtime.for_settings(settings, processes).describe())


def _run(ctx: Context, root: Path | None, upload: bool, upload_only: bool, retry_failed: bool) -> Summary:
    settings = ctx.settings
    choice = choose_model(settings, ctx.library.library_model(), settings.workers or os.cpu_count() or 1)
    click.echo(choice.describe(), err=True)
    planner = Planner(
        ctx.ledger,
        choice.source,
        upload,
        retry_failed,
        report=say_error,
        record_queued=False,
        follow_links=settings.follow_links,
        retire=partial(versions.retire_one, ctx),
    )
    if upload or upload_only:
        ctx.store.ensure_bucket()
    pool = None
    if upload_only:
        jobs = list(planner.upload_jobs())
        stages = UPLOAD_CHAIN
    else:
        assert root is not None
        root = planner.check_root(root)
        pool = CpuPool(settings, choice.source)  # models load while we scan
        try:
            jobs = list(progress(planner.new_jobs(root), "scanning"))
        except BaseException:
            pool.executor.shutdown(cancel_futures=True)
            raise
        stages = FULL_CHAIN
    summary = planner.summary
    bar = progress(range(len(jobs)), "processing", total=len(jobs))

    def done(job: Job) -> None:
        summarize(summary, job, say_error)
        next(bar, None)

    if pool is not None and not jobs:
        pool.executor.shutdown(cancel_futures=True)
    process(ctx, jobs, stages, done, pool)
    for _ in bar:
        pass
    if not upload_only:
        settle_run(ctx)  # the persons of the faces this run stored, decided together
    return summary
