"""The `facepic` command line. Every user-caused error is one line, "Error: ...", exit 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import click

from facepic import report as reports
from facepic.db import DatabaseError, DatabaseUnavailable, Library, ModelMismatch
from facepic.embedded import EmbeddedError, embedded_database
from facepic.enqueue import FULL_CHAIN, UPLOAD_CHAIN, Planner, Summary, count_skipped
from facepic.errors import FacePicError
from facepic.ledger import Follower, Ledger
from facepic.models import ModelChoice, ModelError, resolve
from facepic.pipeline import Context, Job
from facepic.runner import CpuPool, process, summarize
from facepic.scan import ImportFolderError, display
from facepic.settings import Settings, redact
from facepic.storage import StorageError, StorageUnavailable

USER_ERRORS = (ImportFolderError, DatabaseError, StorageError, ModelError, EmbeddedError, ValueError, FacePicError)


SERVER_SETTINGS = ("redis_url", "mongodb_uri", "s3_endpoint", "data_dir")


def _settings(obj: dict[str, Any]) -> Settings:
    if "settings" not in obj:
        try:
            obj["settings"] = settings = Settings.load(env_file=obj["env_file"])
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        # A .env in the working folder (one written for Docker, say) must not switch servers silently.
        from_file = [f"FACEPIC_{name.upper()}" for name in SERVER_SETTINGS
                     if settings.sources.get(name, "the environment") != "the environment"]
        if from_file:
            click.echo(f"settings from {_file_of(settings)}: " + ", ".join(from_file), err=True)
    return obj["settings"]


def _file_of(settings: Settings) -> str:
    return next(v for v in settings.sources.values() if v != "the environment")


def _fail(e: Exception, settings: Settings | None) -> click.ClickException:
    message = str(e)
    if settings is not None:
        # A server out of reach: name the setting that pointed there and where it came from,
        # since a .env written for Docker (`mongo`, `redis`, `s3`) is the usual cause.
        setting = {DatabaseUnavailable: "mongodb_uri", StorageUnavailable: "s3_endpoint"}.get(type(e))
        if setting is None and type(e).__name__ == "BrokerUnavailable":
            setting = "redis_url"
        if setting is not None:
            message += f"; check {settings.origin(setting)}"
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


def _requested_model(settings: Settings, library: Library) -> str:
    """The model the enqueuer sends with each job, decided without model files or the network
    (the enqueuer image has neither): the library's model under auto, else the setting; the
    workers resolve it."""
    library_model = library.library_model()
    setting = (settings.model or "auto").strip()
    if setting == "auto":
        return library_model or "auto"
    named = setting in ("buffalo_l", "buffalo_s")
    name = setting if named else Path(setting).expanduser().name
    if library_model and name != library_model:
        raise ModelMismatch(
            f"this library was built with face model {library_model}, but this run uses "
            f"{name}: set FACEPIC_MODEL={library_model} (or auto), or re-embed the library"
        )
    return setting if named else str(Path(setting).expanduser().absolute())


def _model_source(choice: ModelChoice) -> str:
    return choice.name if choice.name in ("buffalo_l", "buffalo_s") else choice.location


def _import_root(settings: Settings, path: Path | None) -> Path:
    root = path or settings.import_dir
    if root is None:
        raise click.ClickException("no import folder: give a PATH or set FACEPIC_IMPORT_DIR")
    return Path(root)


def _finish(summary: Summary, root: Path | None = None) -> None:
    click.echo(summary.line())
    if root is not None and summary.photos == 0:
        click.echo(f"no photos in {root}: FacePic reads JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, GIF, BMP "
                   "and camera RAW files (is this the right folder?)", err=True)
    if summary.failed:
        click.echo("some photos failed: see the lines above, or `facepic status --failed`", err=True)
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
    click.option("--follow-links", is_flag=True,
                 help="Follow symbolic links that point outside the import folder (default: skip them)."),
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
        follow_links: bool, workers: int | None) -> None:
    """Process a folder of photos completely, in the foreground, with no servers to set up.

    Without FACEPIC_MONGODB_URI an embedded database keeps its files in the data folder;
    without a bucket configured, objects go to the data folder too.

    Example:

        facepic run ~/Pictures/2024
    """
    settings = _settings(obj)
    if workers:
        settings = settings.replace(workers=workers)
    if follow_links:
        settings = settings.replace(follow_links=True)
    upload = settings.stores_originals and not disable_upload
    root = None if upload_only else _import_root(settings, path)
    try:
        with embedded_database(settings) as settings, Context(settings) as ctx:
            ctx.library.ensure_indexes()
            summary = _run_embedded(ctx, root, upload, upload_only, retry_failed)
    except USER_ERRORS as e:
        raise _fail(e, settings) from None
    _finish(summary, root)


def _run_embedded(ctx: Context, root: Path | None, upload: bool, upload_only: bool, retry_failed: bool) -> Summary:
    settings = ctx.settings
    choice = _choose_model(settings, ctx.library)
    click.echo(choice.describe(), err=True)
    planner = Planner(ctx.ledger, _model_source(choice), upload, retry_failed,
                      report=_say_error, record_queued=False, follow_links=settings.follow_links)
    if upload or upload_only:
        ctx.store.ensure_bucket()
    pool = None
    if upload_only:
        jobs = list(planner.upload_jobs())
        stages = UPLOAD_CHAIN
    else:
        assert root is not None
        root = planner.check_root(root)
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
    if not upload_only:
        from facepic.settle import settle_run

        settle_run(ctx)  # the persons of the faces this run stored, decided together
    return summary


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@with_upload_options
@click.option("--wait", is_flag=True, help="Wait until the workers finished every queued photo.")
@click.option("--requeue-pending", is_flag=True,
              help="Send again the photos still queued (after Redis crashed with the queues drained).")
@click.pass_obj
def enqueue(obj: dict, path: Path | None, disable_upload: bool, upload_only: bool, retry_failed: bool,
            follow_links: bool, wait: bool, requeue_pending: bool) -> None:
    """Scan a folder and queue one chain per new photo for the Celery workers.

    With --wait, follow the workers until every queued photo is done or failed; the exit
    code then says whether any photo failed.

    Example:

        facepic enqueue --wait /media/drive/Photos
    """
    settings = _settings(obj)
    if follow_links:
        settings = settings.replace(follow_links=True)
    upload = settings.stores_originals and not disable_upload
    root = None
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
        model = _requested_model(settings, ctx.library)
        click.echo(f"face model: {model} (the workers load it)", err=True)
        if upload or upload_only:
            ctx.store.ensure_bucket()
        planner = Planner(ctx.ledger, model, upload, retry_failed, report=_say_error,
                          follow_links=settings.follow_links)
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
    _finish(planner.summary, root)


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
                summary.finished({"error": reason} if reason else {"faces": entry.get("faces", 0)})
                if reason:
                    _say_error(f"error: cannot process {display(Path(key[0]) / key[1])}: {reason}")
            time.sleep(0.2)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--failed", "list_failed", is_flag=True, help="Only list the failed photos, with their reasons.")
@click.option("--skipped", "list_skipped", is_flag=True, help="Only list the skipped files, with their reasons.")
@click.pass_obj
def status(obj: dict, as_json: bool, list_failed: bool, list_skipped: bool) -> None:
    """What is done, pending, failed and skipped, from the ledger (and the queues, when Redis
    is up). The counts are the ones `run` and `enqueue` print.

    Example:

        facepic status --failed
    """
    settings = _settings(obj)
    try:
        state = Ledger(settings.ledger_path).read()
    except OSError as e:
        raise click.ClickException(f"cannot read the ledger {settings.ledger_path} ({e.strerror})") from None
    counts = state.counts()
    done = list(state.entries("done"))
    skipped: dict[str, int] = {}
    for entry in state.entries("skipped"):
        skipped[entry.get("category", "other")] = skipped.get(entry.get("category", "other"), 0) + 1
    info: dict[str, Any] = {
        "ledger": counts,
        "photos": counts["done"] + counts["failed"] + counts["duplicate"] + counts["queued"],
        "faces": sum(int(e.get("faces") or 0) for e in done),
        "no_face": sum(1 for e in done if not e.get("faces")),
        "skipped_by_category": skipped,
    }
    info["failed"] = [
        {"path": e.get("path"), "root": e.get("root"), "reason": e.get("reason")}
        for e in state.entries("failed")
    ]
    info["skipped"] = [
        {"path": e.get("path"), "root": e.get("root"), "reason": e.get("reason"), "category": e.get("category"),
         "folder": bool(e.get("folder"))}
        for e in state.entries("skipped")
    ]
    # Without a bucket (and without copying), originals stay where they are: nothing to upload.
    info["not_uploaded"] = (sum(1 for e in done if not e.get("uploaded")) if settings.bucket_configured
                            or settings.copy_originals else None)
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
    if not (list_failed or list_skipped):
        c = counts
        line = (f"photos {info['photos']:,}: done {c['done']:,} (faces {info['faces']:,}, no face {info['no_face']:,}), "
                f"duplicates {c['duplicate']:,}, pending {c['queued']:,}, failed {c['failed']:,}")
        if info["not_uploaded"] is not None:
            line += f", not uploaded {info['not_uploaded']:,}"
        click.echo(line + (f"; {count_skipped(skipped)}" if skipped else ""))
        if info.get("queues") is not None:
            click.echo("queues: " + ", ".join(f"{k} {v}" for k, v in info["queues"].items()))
        elif settings.mongodb_uri:
            click.echo("queues: Redis not reachable")
    if list_failed or not list_skipped:
        for failure in info["failed"]:
            click.echo(f"failed: {failure['path']}: {failure['reason']}")
    from facepic.scan import QUIET

    for skip in info["skipped"]:
        if list_skipped or (not list_failed and skip["category"] not in QUIET):
            click.echo(f"skipped: {skip['path']}{'/' if skip['folder'] else ''}: {skip['reason']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Every person with its faces, for scripts.")
@click.option("--all", "show_all", is_flag=True, help="Hidden persons too.")
@click.pass_obj
def persons(obj: dict, as_json: bool, show_all: bool) -> None:
    """List the persons found, with their face counts, and write an HTML contact sheet.

    Example:

        facepic persons --json > persons.json
    """
    settings = _settings(obj)
    try:
        with embedded_database(settings) as settings, Context(settings) as ctx:
            people = reports.persons(ctx.library, hidden=show_all)
            sheet = reports.write_contact_sheet(people, settings)
            with ctx.library.errors():
                unassigned = ctx.library.faces.count_documents({"person_id": None})
    except USER_ERRORS as e:
        raise _fail(e, settings) from None
    if as_json:
        click.echo(json.dumps(people, indent=2, ensure_ascii=False))
        return
    for n, person in enumerate(people, 1):
        label = person["name"] or "(unnamed)"
        flag = "  [hidden]" if person["hidden"] else ""
        click.echo(f"{n:4d}  {person['id']}  {label}  {person['face_count']} faces{flag}")
    click.echo(f"{len(people)} persons; contact sheet: {sheet}")
    if unassigned:
        click.echo(f"{unassigned} faces belong to nobody yet (too small or blurred to found a person, "
                   "ambiguous, or rejected): `facepic recluster` places those it can")


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


# --- persons: corrections and recluster ------------------------------------------------


def _persons_op(obj: dict, op: Callable[[Library, Any], str]) -> None:
    """Run one change to persons against the library; print its one-line result."""
    from facepic.persons import Covers, PersonError

    settings = _settings(obj)
    try:
        with embedded_database(settings) as settings, Context(settings) as ctx:
            covers = Covers(ctx)
            message = op(ctx.library, covers)
    except PersonError as e:
        raise click.ClickException(str(e)) from None
    except USER_ERRORS as e:
        raise _fail(e, settings) from None
    click.echo(message)


@cli.command()
@click.argument("person")
@click.argument("name")
@click.pass_obj
def name(obj: dict, person: str, name: str) -> None:
    """Name a person (by id, id prefix or current name). A named person is never split or
    merged away by FacePic. Two persons may share a name; a name shared is then no longer a
    way to refer to either (use the id).

    Example:

        facepic name p3f2a9c1d Alice
    """
    from facepic.persons import name_person, others_named

    def op(lib: Library, covers: Any) -> str:
        named = name_person(lib, person, name)
        message = f"{named['_id']} is now {named['name']!r}"
        others = others_named(lib, named["name"], named["_id"])
        if others:
            verb = "is" if len(others) == 1 else "are"
            message += f"\nnote: {', '.join(others)} {verb} named {named['name']!r} too: refer to them by id"
        return message

    _persons_op(obj, op)


@cli.command()
@click.argument("target")
@click.argument("sources", nargs=-1, required=True)
@click.pass_obj
def merge(obj: dict, target: str, sources: tuple[str, ...]) -> None:
    """Merge persons SOURCES into TARGET: they are one person.

    Example:

        facepic merge Alice p91c0d2e7 p0aa81b33
    """
    from facepic.persons import merge_persons

    def op(lib: Library, covers: Any) -> str:
        merged = merge_persons(lib, target, list(sources), covers)
        return f"merged {len(sources)} person(s) into {merged['_id']}"

    _persons_op(obj, op)


@cli.command()
@click.argument("face_id")
@click.argument("person", required=False)
@click.option("--new", "new_person", is_flag=True, help="Move the face to a new person of its own.")
@click.pass_obj
def move(obj: dict, face_id: str, person: str | None, new_person: bool) -> None:
    """Move a face to PERSON (or --new); it stays there through new photos and recluster.

    Example:

        facepic move 1b9e...-f0 Alice
    """
    from facepic.persons import move_face

    if (person is None) == (not new_person):
        raise click.UsageError("give a PERSON or --new (not both)")
    _persons_op(obj, lambda lib, covers: f"face {face_id} is in person {move_face(lib, face_id, person, covers)}")


@cli.command()
@click.argument("face_id")
@click.pass_obj
def reject(obj: dict, face_id: str) -> None:
    """Not this person: the face leaves its person and never joins it again.

    Example:

        facepic reject 1b9e...-f0
    """
    from facepic.persons import reject_face

    _persons_op(obj, lambda lib, covers: f"face {face_id} left person {reject_face(lib, face_id, covers)}")


@cli.command()
@click.argument("person")
@click.argument("face_id")
@click.pass_obj
def cover(obj: dict, person: str, face_id: str) -> None:
    """Use FACE_ID as PERSON's cover; better faces arriving later do not replace it.

    Example:

        facepic cover Alice 1b9e...-f0
    """
    from facepic.persons import pick_cover

    def op(lib: Library, covers: Any) -> str:
        pick_cover(lib, person, face_id, covers)
        return f"face {face_id} is the cover of {person}"

    _persons_op(obj, op)


@cli.command()
@click.argument("person")
@click.option("--unhide", is_flag=True, help="Show the person again.")
@click.pass_obj
def hide(obj: dict, person: str, unhide: bool) -> None:
    """Hide a person from listings (its faces still go to it, not to new persons).

    Example:

        facepic hide p91c0d2e7
    """
    from facepic.persons import hide_person

    def op(lib: Library, covers: Any) -> str:
        doc = hide_person(lib, person, hidden=not unhide)
        return f"{doc['_id']} is {'shown' if unhide else 'hidden'}"

    _persons_op(obj, op)


@cli.command()
@click.pass_obj
def recluster(obj: dict) -> None:
    """Revisit every person: merge persons that are one identity, split ones that are not,
    and place faces left unassigned, never undoing a correction.

    Example:

        facepic recluster
    """
    from facepic.persons import recluster_library

    def op(lib: Library, covers: Any) -> str:
        s = recluster_library(lib, _settings(obj).rules, covers)
        return (f"persons {s.persons_before} -> {s.persons_after} (created {s.persons_created}, "
                f"removed {s.persons_deleted}); faces moved {s.faces_moved}, newly assigned {s.faces_assigned}")

    _persons_op(obj, op)


@cli.command()
@click.option("--all", "everything", is_flag=True,
              help="Settle every face again (those the user placed or named stay), not only the new ones.")
@click.pass_obj
def settle(obj: dict, everything: bool) -> None:
    """Decide together the persons of the faces stored since the last settle, never undoing a
    correction. `facepic run` does this at its end; the index workers when their queue drains.

    Example:

        facepic settle
    """
    from facepic.settle import settle_library

    def op(lib: Library, covers: Any) -> str:
        settings = _settings(obj)
        s = settle_library(lib, settings.linkage, covers, settings.rules, everything=everything)
        return (f"persons {s.persons_before} -> {s.persons_after} (created {s.persons_created}, "
                f"removed {s.persons_deleted}); faces moved {s.faces_moved}, newly assigned {s.faces_assigned}")

    _persons_op(obj, op)


@cli.command()
@click.option("--model", "model_name", required=True, help="buffalo_l, buffalo_s or a folder of ONNX files.")
@click.option("--no-switch", is_flag=True, help="Only compute the new faces; switch in a later run.")
@click.pass_obj
def reembed(obj: dict, model_name: str, no_switch: bool) -> None:
    """Recompute every face with another model and rebuild persons, keeping names and
    corrections. Until the switch at the end, the library keeps working on its old model;
    an interrupted run goes on where it stopped.

    Example:

        facepic reembed --model buffalo_l
    """
    from tqdm import tqdm

    from facepic.detect import FaceEngine, default_threads
    from facepic.persons import Covers
    from facepic.reembed import reembed as run_reembed

    settings = _settings(obj)
    try:
        with embedded_database(settings) as settings, Context(settings) as ctx:
            lib = ctx.library
            choice = resolve(model_name, settings.model_root)
            click.echo(choice.describe(), err=True)
            engine = FaceEngine(choice, settings.detect_size, settings.ort_threads or default_threads(1))
            covers = Covers(ctx)
            with lib.errors():
                total = lib.images.count_documents({"reembed": {"$ne": choice.name}})
            with tqdm(total=total, desc="re-embedding", unit="photo", disable=None, file=sys.stderr) as bar:
                progress = run_reembed(lib, engine, settings, covers, switch_now=not no_switch,
                                       on_photo=lambda: bar.update(1))
    except USER_ERRORS as e:
        raise _fail(e, settings) from None
    click.echo(f"staged {progress.staged} photos ({progress.missing} without an original to read): "
               f"{progress.faces_matched} faces kept, {progress.faces_new} new, {progress.faces_lost} not found again")
    if progress.switched and progress.recluster is not None:
        r = progress.recluster
        click.echo(f"the library now uses {choice.name}; persons {r.persons_before} -> {r.persons_after}")
    else:
        click.echo("the library still uses its old model; run again without --no-switch to switch")
    if progress.missing:
        click.echo(f"{progress.missing} photos could not be read (drive unplugged, not uploaded): "
                   "their faces stay on the old model and are not compared", err=True)
        sys.exit(1)


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
