"""The `facepic` command line. Every user-caused error is one line, "Error: ...", exit 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import click

from facepic import report as reports
from facepic.db import DatabaseError, Library, ModelMismatch
from facepic.embedded import EmbeddedError, embedded_database
from facepic.enqueue import FULL_CHAIN, UPLOAD_CHAIN, Planner, Summary
from facepic.ledger import Follower, Ledger
from facepic.models import ModelChoice, ModelError, resolve
from facepic.pipeline import Context, Job
from facepic.runner import CpuPool, process, summarize
from facepic.scan import ImportFolderError, display
from facepic.settings import Settings, redact
from facepic.storage import StorageError

USER_ERRORS = (ImportFolderError, DatabaseError, StorageError, ModelError, EmbeddedError, ValueError)


def _settings(obj: dict[str, Any]) -> Settings:
    if "settings" not in obj:
        try:
            obj["settings"] = Settings.load(env_file=obj["env_file"])
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    return obj["settings"]


def _fail(e: Exception, settings: Settings | None) -> click.ClickException:
    message = str(e)
    return click.ClickException(redact(message, settings) if settings else message)


def _progress(items: Iterable[Any], desc: str, total: int | None = None) -> Iterator[Any]:
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit="photo", disable=None, file=sys.stderr)


def _say_error(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _choose_model(settings: Settings, library: Library) -> ModelChoice:
    library_model = library.library_model()
    choice = resolve(settings.model, settings.model_root, library_model)
    if library_model and choice.name != library_model:
        raise ModelMismatch(
            f"this library was built with face model {library_model}, but this run uses "
            f"{choice.name}: set FACEPIC_MODEL={library_model} (or auto), or re-embed the library"
        )
    return choice


def _model_source(choice: ModelChoice) -> str:
    return choice.name if choice.name in ("buffalo_l", "buffalo_s") else choice.location


def _import_root(settings: Settings, path: Path | None) -> Path:
    root = path or settings.import_dir
    if root is None:
        raise click.ClickException("no import folder: give a PATH or set FACEPIC_IMPORT_DIR")
    return Path(root)


def _finish(summary: Summary) -> None:
    click.echo(summary.line())
    if summary.failed:
        click.echo("some photos failed: see the lines above, or `facepic status`", err=True)
        sys.exit(1)


@click.group()
@click.option("--env-file", default=".env", show_default=True, help="Settings file read before the environment.")
@click.version_option(package_name="facepic")
@click.pass_context
def cli(ctx: click.Context, env_file: str) -> None:
    """FacePic: organise a photo library by the people in it."""
    ctx.ensure_object(dict)
    ctx.obj["env_file"] = env_file


upload_options = [
    click.option("--disable-upload", is_flag=True, help="Do everything but upload to the bucket."),
    click.option("--upload-only", is_flag=True, help="Only upload what was processed but not uploaded."),
    click.option("--retry-failed", is_flag=True, help="Process photos that failed before once more."),
]


def with_upload_options(fn: Callable) -> Callable:
    for option in reversed(upload_options):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@with_upload_options
@click.option("--workers", type=int, help="Processes for the CPU stages (default: one per core).")
@click.pass_obj
def run(obj: dict, path: Path | None, disable_upload: bool, upload_only: bool, retry_failed: bool,
        workers: int | None) -> None:
    """Process a folder of photos completely, in the foreground, with no servers to set up.

    Without FACEPIC_MONGODB_URI an embedded database keeps its files in the data folder;
    without a bucket configured, objects go to the data folder too.

    Example:

        facepic run ~/Pictures/2024
    """
    settings = _settings(obj)
    if workers:
        settings = settings.replace(workers=workers)
    upload = settings.upload and not disable_upload
    try:
        with embedded_database(settings) as settings, Context(settings) as ctx:
            ctx.library.ensure_indexes()
            summary = _run_embedded(ctx, path, upload, upload_only, retry_failed)
    except USER_ERRORS as e:
        raise _fail(e, settings) from None
    _finish(summary)


def _run_embedded(ctx: Context, path: Path | None, upload: bool, upload_only: bool, retry_failed: bool) -> Summary:
    settings = ctx.settings
    choice = _choose_model(settings, ctx.library)
    click.echo(choice.describe(), err=True)
    planner = Planner(ctx.ledger, _model_source(choice), upload, retry_failed,
                      report=_say_error, record_queued=False)
    if upload or upload_only:
        ctx.store.ensure_bucket()
    pool = None
    if upload_only:
        jobs = list(planner.upload_jobs())
        stages = UPLOAD_CHAIN
    else:
        root = planner.check_root(_import_root(settings, path))
        pool = CpuPool(settings, _model_source(choice))  # models load while we scan
        try:
            jobs = list(_progress(planner.new_jobs(root), "scanning"))
        except BaseException:
            pool.executor.shutdown(cancel_futures=True)
            raise
        stages = FULL_CHAIN
    summary = planner.summary
    bar = _progress(range(len(jobs)), "processing", total=len(jobs))

    def done(job: Job) -> None:
        summarize(summary, job, _say_error)
        next(bar, None)

    if pool is not None and not jobs:
        pool.executor.shutdown(cancel_futures=True)
    process(ctx, jobs, stages, done, pool)
    for _ in bar:
        pass
    return summary


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@with_upload_options
@click.option("--wait", is_flag=True, help="Wait until the workers finished every queued photo.")
@click.option("--requeue-pending", is_flag=True,
              help="Send again the photos still queued (after Redis crashed with the queues drained).")
@click.pass_obj
def enqueue(obj: dict, path: Path | None, disable_upload: bool, upload_only: bool, retry_failed: bool,
            wait: bool, requeue_pending: bool) -> None:
    """Scan a folder and queue one chain per new photo for the Celery workers.

    With --wait, follow the workers until every queued photo is done or failed; the exit
    code then says whether any photo failed.

    Example:

        facepic enqueue --wait /media/drive/Photos
    """
    settings = _settings(obj)
    upload = settings.upload and not disable_upload
    if not settings.mongodb_uri:
        raise click.ClickException(
            "FACEPIC_MONGODB_URI is not set: the workers need a shared MongoDB "
            "(for a trial without servers, use `facepic run`)"
        )
    # The CLI is where the parts are put together: only here does facepic meet Celery.
    from workers.app import make_app
    from workers.dispatch import BrokerUnavailable, CeleryDispatcher

    try:
        dispatcher = CeleryDispatcher(make_app(settings))
        dispatcher.check()
        ctx = Context(settings)
        ctx.library.ensure_indexes()
        choice = _choose_model(settings, ctx.library)  # the process exits after this command
        click.echo(choice.describe(), err=True)
        if upload or upload_only:
            ctx.store.ensure_bucket()
        planner = Planner(ctx.ledger, _model_source(choice), upload, retry_failed, report=_say_error)
        follower = Follower(settings.ledger_path)
        queued: set[tuple[str, str]] = set()
        if upload_only:
            for job in _progress(planner.upload_jobs(), "queueing uploads"):
                dispatcher(job, UPLOAD_CHAIN)
                queued.add((job["root"], job["rel"]))
        elif requeue_pending:
            for job in _progress(planner.pending_jobs(), "queueing pending photos"):
                dispatcher(job, FULL_CHAIN)
                queued.add((job["root"], job["rel"]))
        else:
            root = _import_root(settings, path)
            for job in _progress(planner.new_jobs(root), "scanning and queueing"):
                dispatcher(job, FULL_CHAIN)
                queued.add((job["root"], job["rel"]))
    except (*USER_ERRORS, BrokerUnavailable) as e:
        raise _fail(e, settings) from None
    if wait and queued:
        _wait_for(follower, queued, planner.summary, upload_only)
    _finish(planner.summary)


def _wait_for(follower: Follower, queued: set[tuple[str, str]], summary: Summary, upload_only: bool) -> None:
    """Follow the ledger until every queued photo has its final line."""
    import time

    from tqdm import tqdm

    with tqdm(total=len(queued), desc="processing", unit="photo", disable=None, file=sys.stderr) as bar:
        while queued:
            for entry in follower.new_entries():
                key = (entry.get("root", ""), entry.get("path", ""))
                if key not in queued or entry.get("status") not in ("done", "failed"):
                    continue
                queued.discard(key)
                bar.update(1)
                reason = entry.get("reason") if entry["status"] == "failed" else None
                if upload_only and not entry.get("uploaded"):
                    reason = f"upload failed: {entry.get('upload_error') or entry.get('reason')}"
                if reason:
                    summary.failed += 1
                    _say_error(f"error: cannot process {display(Path(key[0]) / key[1])}: {reason}")
            time.sleep(0.2)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: dict, as_json: bool) -> None:
    """What is done, pending and failed, from the ledger (and the queues, when Redis is up).

    Example:

        facepic status
    """
    settings = _settings(obj)
    state = Ledger(settings.ledger_path).read()
    info: dict[str, Any] = {"ledger": state.counts()}
    info["failed"] = [
        {"path": e.get("path"), "root": e.get("root"), "reason": e.get("reason")}
        for e in state.entries("failed")
    ]
    info["not_uploaded"] = sum(1 for e in state.entries("done") if not e.get("uploaded"))
    if settings.mongodb_uri:
        try:
            from workers.app import make_app
            from workers.dispatch import CeleryDispatcher

            info["queues"] = CeleryDispatcher(make_app(settings)).queue_lengths()
        except Exception:  # noqa: BLE001 - status still shows the ledger
            info["queues"] = None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    c = info["ledger"]
    click.echo(f"done {c['done']}, failed {c['failed']}, duplicates {c['duplicate']}, "
               f"pending {c['queued']}, not uploaded {info['not_uploaded']}")
    if info.get("queues") is not None:
        click.echo("queues: " + ", ".join(f"{k} {v}" for k, v in info["queues"].items()))
    elif settings.mongodb_uri:
        click.echo("queues: Redis not reachable")
    for failure in info["failed"]:
        click.echo(f"failed: {failure['path']}: {failure['reason']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Every person with its faces, for scripts.")
@click.pass_obj
def persons(obj: dict, as_json: bool) -> None:
    """List the persons found, with their face counts, and write an HTML contact sheet.

    Example:

        facepic persons --json > persons.json
    """
    settings = _settings(obj)
    try:
        with embedded_database(settings) as settings, Context(settings) as ctx:
            people = reports.persons(ctx.library)
            sheet = reports.write_contact_sheet(people, settings)
    except USER_ERRORS as e:
        raise _fail(e, settings) from None
    if as_json:
        click.echo(json.dumps(people, indent=2, ensure_ascii=False))
        return
    for n, person in enumerate(people, 1):
        name = person["name"] or "(unnamed)"
        click.echo(f"{n:4d}  {person['id']}  {name}  {person['face_count']} faces")
    click.echo(f"{len(people)} persons; contact sheet: {sheet}")


@cli.command()
@click.option("--yes", is_flag=True, help="Confirm: really delete.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.pass_obj
def cleanup(obj: dict, yes: bool, dry_run: bool) -> None:
    """Wipe FacePic's data: database, FacePic's objects in the bucket, ledger, thumbnails.

    Objects in the bucket that FacePic did not make are left alone.

    Example:

        facepic cleanup --dry-run
    """
    settings = _settings(obj)
    from facepic import cleanup as wipe

    try:
        with embedded_database(settings) as settings, Context(settings) as ctx:
            plan = wipe.plan(settings, ctx.library)
            for line in plan.lines():
                click.echo(line)
            if dry_run:
                click.echo("dry run: nothing deleted")
                return
            if not yes:
                raise click.ClickException("nothing deleted: add --yes to delete all of the above")
            wipe.execute(plan, settings, ctx.library)
            click.echo("deleted")
    except USER_ERRORS as e:
        raise _fail(e, settings) from None


@cli.command("fetch-model")
@click.argument("name", default="auto")
@click.pass_obj
def fetch_model(obj: dict, name: str) -> None:
    """Resolve a face model pack, download it if needed (buffalo_l), and load it once.

    Example:

        facepic fetch-model buffalo_l
    """
    settings = _settings(obj)
    try:
        choice = resolve(name, settings.model_root)
        click.echo(choice.describe())
        from facepic.detect import FaceEngine

        FaceEngine(choice, settings.detect_size, 1)
    except USER_ERRORS as e:
        raise _fail(e, settings) from None
    click.echo(f"face model {choice.name} is ready")


def main() -> None:  # pragma: no cover - the console script
    cli(obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
