"""`facepic status`, `persons` and `cleanup`: what the library holds, and wiping it on purpose."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from facepic.cli import group
from facepic.cli.group import cli, settings_of

if TYPE_CHECKING:
    from facepic.ledger import LedgerState
    from facepic.planner import Summary


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
    from facepic.ledger import Ledger
    from facepic.planner import Summary

    settings = settings_of(obj)
    try:
        state = Ledger(settings.ledger_path).read()
    except OSError as e:
        raise click.ClickException(f"cannot read the ledger {settings.ledger_path} ({e.strerror})") from None
    # Without a bucket (and without copying), originals stay where they are: nothing to upload.
    summary = Summary.from_ledger(state, uploads=settings.bucket_configured or settings.copy_originals)
    info = _status_info(state, summary)
    if settings.mongodb_uri and group.queue_lengths is not None:
        try:
            info["queues"] = group.queue_lengths(settings)
        except Exception:  # noqa: BLE001 - Redis out of reach: status still shows the ledger
            info["queues"] = None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if not (list_failed or list_skipped):
        click.echo(summary.line())
        if info.get("queues") is not None:
            click.echo("queues: " + ", ".join(f"{k} {v}" for k, v in info["queues"].items()))
        elif settings.mongodb_uri:
            click.echo("queues: Redis not reachable")
    _list_failed_and_skipped(info, list_failed, list_skipped)


def _status_info(state: LedgerState, summary: Summary) -> dict[str, Any]:
    """`status --json`: the ledger's counts, from ``summary``, and its failed and skipped files."""
    from facepic.statuses import Status

    failed = [
        {"path": e.get("path"), "root": e.get("root"), "reason": e.get("reason")} for e in state.entries(Status.FAILED)
    ]
    skipped = [
        {
            "path": e.get("path"),
            "root": e.get("root"),
            "reason": e.get("reason"),
            "category": e.get("category"),
            "folder": bool(e.get("folder")),
        }
        for e in state.entries(Status.SKIPPED)
    ]
    return {
        "ledger": state.counts(),
        "photos": summary.photos,
        "faces": summary.faces,
        "no_face": summary.no_face,
        "changed": summary.changed,
        "skipped_by_category": summary.skipped,
        "failed": failed,
        "skipped": skipped,
        "not_uploaded": summary.not_uploaded,
    }


def _list_failed_and_skipped(info: dict[str, Any], list_failed: bool, list_skipped: bool) -> None:
    """A line per failed photo and per skipped file (the quiet ones only with --skipped)."""
    from facepic.scan import QUIET, display

    if list_failed or not list_skipped:
        for failure in info["failed"]:
            # Escaped as `run` prints them: a newline or ESC in a name can neither forge a line
            # nor reach the terminal.
            click.echo(f"failed: {display(failure['path'] or '')}: {display(failure['reason'] or '')}")
    for skip in info["skipped"]:
        if list_skipped or (not list_failed and skip["category"] not in QUIET):
            click.echo(
                f"skipped: {display(skip['path'] or '')}{'/' if skip['folder'] else ''}: {display(skip['reason'] or '')}"
            )


def json_lines(items: list[dict[str, Any]]) -> str:
    """A JSON array with one item a line: as readable as an indented one for a list of persons,
    and written by json's C encoder (with ``indent`` it takes the pure-Python one: 1.7 of the
    4.7 s of `persons --json` on 10,000 persons)."""
    if not items:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(item, ensure_ascii=False) for item in items) + "\n]"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Every person with its faces, for scripts.")
@click.option("--all", "show_all", is_flag=True, help="Hidden persons too.")
@click.option(
    "--html",
    "as_html",
    is_flag=True,
    help="Also write <data>/persons.html, a contact sheet to share (every face, the unassigned ones too).",
)
@click.option(
    "--suggest",
    is_flag=True,
    help='Only the pairs that may be one person ("same person?"), most likely first.',
)
@click.pass_obj
def persons(obj: dict, as_json: bool, show_all: bool, as_html: bool, suggest: bool) -> None:
    """List the persons found, with their face counts (`facepic serve` shows them on a page
    where they can be fixed). With --suggest, the pairs of persons that may be one person:
    `facepic merge` joins a pair, `facepic not-same` keeps it apart for good.

    Example:

        facepic persons --json > persons.json
    """
    from facepic import report as reports
    from facepic.changes import finish_pending_of
    from facepic.context import Context
    from facepic.embedded import embedded_database
    from facepic.persons import recluster_may_place

    settings = settings_of(obj)
    sheet = None
    if suggest:
        if as_html or show_all:
            raise click.UsageError("--suggest lists pairs: it takes --json, not --html or --all")
        _suggestions(obj, as_json)
        return
    with embedded_database(settings) as settings, Context(settings) as ctx:
        finish_pending_of(ctx)  # a change the last process left midway
        people = reports.persons(ctx.library, hidden=show_all)
        unassigned = ctx.library.unassigned_faces()
        hint = unassigned and recluster_may_place(ctx.library)
        if as_html:
            loose, _ = ctx.library.web_unassigned(0, UNASSIGNED_ON_SHEET)
            faces = [{"face_id": f["_id"], "image_id": f["image_id"]} for f in loose]
            sheet = reports.write_contact_sheet(people, settings, faces, unassigned)
    if as_json:
        click.echo(json_lines(people))
        return
    for n, person in enumerate(people, 1):
        label = person["name"] or "(unnamed)"
        flag = "  [hidden]" if person["hidden"] else ""
        click.echo(f"{n:4d}  {person['id']}  {label}  {reports.counted(person['face_count'], 'face')}{flag}")
    click.echo(
        reports.counted(len(people), "person")
        + (f"; contact sheet: {sheet}" if sheet else "; `facepic serve` shows them, `--html` writes a contact sheet")
    )
    if unassigned:
        click.echo(
            f"{reports.counted(unassigned, 'face', ('belongs', 'belong'))} to nobody yet (too small or blurred to found a person, "
            "ambiguous, or rejected)"
            + (": `facepic recluster` places those it can" if hint else ": the last recluster placed none of them")
        )


UNASSIGNED_ON_SHEET = 2_000  # faces of nobody on the contact sheet


def _suggestions(obj: dict, as_json: bool) -> None:
    """`persons --suggest`: a line per pair, both persons and how alike they are."""
    from facepic import report as reports
    from facepic.changes import finish_pending_of
    from facepic.context import Context
    from facepic.embedded import embedded_database
    from facepic.settle import Linkage
    from facepic.suggest import suggestions

    settings = settings_of(obj)
    with embedded_database(settings) as settings, Context(settings) as ctx:
        finish_pending_of(ctx)
        pairs = suggestions(ctx.library, Linkage.from_settings(settings))
        people = ctx.library.persons_by_id(sorted({p for pair in pairs for p in (pair.a, pair.b)}))
    rows: list[dict[str, Any]] = [
        {
            "a": reports.person_summary(people[p.a]),
            "b": reports.person_summary(people[p.b]),
            "similarity": round(p.similarity, 4),
            "needed": round(p.needed, 4),
        }
        for p in pairs
        if p.a in people and p.b in people
    ]
    if as_json:
        click.echo(json_lines(rows))
        return

    def who(person: dict[str, Any]) -> str:
        return f"{person['id']}  {person['name'] or '(unnamed)'}  {reports.counted(person['face_count'], 'face')}"

    for n, row in enumerate(rows, 1):
        click.echo(
            f"{n:4d}  {who(row['a'])}  ~  {who(row['b'])}  "
            f"similarity {row['similarity']:.2f} (a merge needs {row['needed']:.2f})"
        )
    if rows:
        click.echo(
            f"{reports.counted(len(rows), 'pair')} may be one person: `facepic merge SECOND FIRST` "
            "joins a pair, `facepic not-same FIRST SECOND` keeps it apart"
        )
    else:
        click.echo("no two persons look alike enough to ask whether they are one")


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
    from facepic import cleanup as wipe
    from facepic.context import Context
    from facepic.embedded import embedded_database

    settings = settings_of(obj)
    with embedded_database(settings, alone=True) as settings, Context(settings) as ctx:
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


@cli.command()
@click.option("--repair", is_flag=True, help="Make every derived field true again, and say what changed.")
@click.pass_obj
def check(obj: dict, repair: bool) -> None:
    """Read the whole library and report every inconsistency, one line each: face counts,
    each photo's face list, covers, faces of missing persons or photos, empty persons, the
    ledger against the database, files and bucket objects that nothing names or that are
    missing. Exits 1 when something is wrong (after --repair: when something is still wrong).

    Example:

        facepic check --repair
    """
    from facepic import check as consistency
    from facepic import report as reports
    from facepic.context import Context
    from facepic.derived import Covers
    from facepic.embedded import embedded_database

    settings = settings_of(obj)
    with embedded_database(settings) as settings, Context(settings) as ctx:
        store = ctx.store if settings.stores_originals else None
        if repair:
            for line in consistency.repair(ctx.library, settings.folder, Covers(ctx)):
                click.echo(f"repaired: {line}")
        report = consistency.check(ctx.library, settings.folder, store)
    for line in report.lines():
        click.echo(line)
    if report.count:
        hint = "" if repair else ": `facepic check --repair` fixes what follows from the faces"
        raise click.ClickException(f"{reports.counted(report.count, 'problem')} found{hint}")
    click.echo("the library is consistent")
