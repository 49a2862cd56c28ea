"""The Celery layer's commands, added to the same `facepic` command: `enqueue`, and the queue
lengths `status` shows. The `facepic` console script starts here; facepic itself never
imports Celery, and this module imports it (and the rest) only when a command needs it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facepic.cli import cli, group  # cli: every command of facepic, registered
from facepic.cli.group import (
    finish,
    import_root,
    progress,
    say_error,
    settings_of,
    watch,
    with_upload_options,
    with_watch_options,
)

if TYPE_CHECKING:
    from facepic.ledger import Follower
    from facepic.pipeline.job import Job
    from facepic.planner import Planner, Summary
    from facepic.settings import Settings


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@with_upload_options
@click.option("--wait", is_flag=True, help="Wait until the workers finished every queued photo.")
@click.option(
    "--requeue-pending",
    is_flag=True,
    help="Send again the photos still queued (after Redis crashed with the queues drained).",
)
@with_watch_options
@click.pass_obj
def enqueue(
    obj: dict,
    path: Path | None,
    disable_upload: bool,
    upload_only: bool,
    retry_failed: bool,
    follow_links: bool,
    wait: bool,
    requeue_pending: bool,
    watch: bool,
    interval: float,
) -> None:
    """Scan a folder and queue one chain per new photo for the Celery workers.

    With --wait, follow the workers until every queued photo is done or failed; the exit
    code then says whether any photo failed. With --watch, keep looking (polling) and queue
    each new photo once it has stopped changing, a line per look that queued something.

    Example:

        facepic enqueue --wait /media/drive/Photos
        facepic enqueue --watch /srv/photos/inbox
    """
    from facepic.ledger import Follower
    from facepic.scan import check_import_folder

    settings = settings_of(obj)
    if follow_links:
        settings = settings.replace(follow_links=True)
    upload = settings.stores_originals and not disable_upload
    _check_options(settings, watch, upload_only, requeue_pending, wait)
    # A drive that is not there is said before any server is asked (a mount unit's log).
    root = None if upload_only or requeue_pending else check_import_folder(import_root(settings, path))
    dispatcher, new_planner = _connect(settings, upload, upload_only)
    if watch:
        assert root is not None
        _watch(root, new_planner, dispatcher, retry_failed, interval)
        return
    planner = new_planner(retry_failed)
    follower = Follower(settings.ledger_path)
    jobs, what = _jobs(planner, root, upload_only, requeue_pending)
    queued: set[tuple[str, str]] = set()
    for job in progress(jobs, what):
        dispatcher(job)
        queued.add((job["root"], job["path"]))
    if wait and queued:
        _wait_for(follower, queued, planner.summary, upload_only)
    finish(planner.summary, root)


def _jobs(planner: Planner, root: Path | None, upload_only: bool, requeue_pending: bool) -> tuple[Iterator[Job], str]:
    """The jobs to queue, and what the progress bar says of them."""
    if upload_only:
        return planner.upload_jobs(), "queueing uploads"
    if requeue_pending:
        return planner.pending_jobs(), "queueing pending photos"
    assert root is not None
    return planner.new_jobs(root), "scanning and queueing"


def _check_options(settings: Settings, watch: bool, upload_only: bool, requeue_pending: bool, wait: bool) -> None:
    """A UsageError or ClickException for what `enqueue` cannot do as asked."""
    if not settings.mongodb_uri:
        raise click.ClickException(
            "FACEPIC_MONGODB_URI is not set: the workers need a shared MongoDB "
            "(for a trial without servers, use `facepic run`)"
        )
    if watch and (upload_only or requeue_pending or wait):
        raise click.UsageError(
            "--watch queues a folder's new photos: not with --upload-only, --requeue-pending or --wait"
        )


def _connect(settings: Settings, upload: bool, upload_only: bool) -> tuple[Any, Callable[[bool], Planner]]:
    """The dispatcher to the workers (the broker checked) and a maker of planners, with the
    library's indexes, its face model (said on one line) and, to upload, the bucket ready."""
    from facepic import models, versions
    from facepic.context import Context
    from facepic.planner import Planner
    from workers.app import make_app
    from workers.dispatch import CeleryDispatcher

    dispatcher = CeleryDispatcher(make_app(settings))
    dispatcher.check()
    ctx = Context(settings)
    ctx.library.ensure_indexes()
    model = models.requested(settings.model, ctx.library.library_model())
    click.echo(f"face model: {model} (the workers load it)", err=True)
    if upload or upload_only:
        ctx.store.ensure_bucket()

    def new_planner(retry: bool) -> Planner:
        return Planner(
            ctx.ledger,
            model,
            upload,
            retry,
            report=say_error,
            follow_links=settings.follow_links,
            retire=partial(versions.retire_one, ctx),
        )

    return dispatcher, new_planner


def _watch(
    root: Path, new_planner: Callable[[bool], Planner], dispatcher: Any, retry_failed: bool, interval: float
) -> None:
    """Queue ``root``'s new photos every ``interval`` seconds until interrupted (facepic.cli.group.watch)."""

    def look(steady: Any, retry: bool) -> Summary:
        planner = new_planner(retry)
        planner.steady = steady
        for job in planner.new_jobs(root):
            dispatcher(job)
        return planner.summary

    watch(root, interval, retry_failed, look)


def _wait_for(follower: Follower, queued: set[tuple[str, str]], summary: Summary, upload_only: bool) -> None:
    """Follow the ledger until every queued photo has its final line."""
    from tqdm import tqdm

    from facepic import versions
    from facepic.scan import cannot_process
    from facepic.statuses import Status

    with tqdm(total=len(queued), desc="processing", unit="photo", disable=None) as bar:
        while queued:
            for entry in follower.new_entries():
                key = (entry.get("root", ""), entry.get("path", ""))
                if key not in queued or entry.get("status") not in (Status.DONE, Status.FAILED):
                    continue
                queued.discard(key)
                bar.update(1)
                reason = entry.get("reason") if entry["status"] == Status.FAILED else None
                if upload_only and not entry.get("uploaded"):
                    reason = f"upload failed: {entry.get('upload_error') or entry.get('reason')}"
                if reason:
                    summary.finished_failed()
                    say_error(cannot_process(str(Path(key[0]) / key[1]), reason))
                    continue
                replaced = entry.get("replaced") if not upload_only else None
                summary.finished_done(int(entry.get("faces") or 0), bool(replaced))
                if replaced:
                    say_error(versions.note(str(Path(key[0]) / key[1]), replaced))
            time.sleep(0.2)


def queue_lengths(settings: Settings) -> dict[str, int]:
    from workers.app import make_app
    from workers.dispatch import CeleryDispatcher

    return CeleryDispatcher(make_app(settings)).queue_lengths()


group.queue_lengths = queue_lengths


def main() -> None:  # pragma: no cover - the console script
    try:
        cli(obj={})
    except SystemExit as e:  # click ends every command so, standalone
        group.leave(e.code)
