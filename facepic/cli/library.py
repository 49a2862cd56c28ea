"""`facepic status`, `persons` and `cleanup`: what the library holds, and wiping it on purpose."""

from __future__ import annotations

import json
from typing import Any

import click

from facepic.cli import group
from facepic.cli.group import cli, settings_of


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
    from facepic.planner import count_skipped
    from facepic.scan import QUIET, display
    from facepic.statuses import Status

    settings = settings_of(obj)
    try:
        state = Ledger(settings.ledger_path).read()
    except OSError as e:
        raise click.ClickException(f"cannot read the ledger {settings.ledger_path} ({e.strerror})") from None
    counts = state.counts()
    done = list(state.entries(Status.DONE))
    skipped: dict[str, int] = {}
    for entry in state.entries(Status.SKIPPED):
        skipped[entry.get("category", "other")] = skipped.get(entry.get("category", "other"), 0) + 1
    info: dict[str, Any] = {
        "ledger": counts,
        "photos": counts[Status.DONE] + counts[Status.FAILED] + counts[Status.DUPLICATE] + counts[Status.QUEUED],
        "faces": sum(int(e.get("faces") or 0) for e in done),
        "no_face": sum(1 for e in done if not e.get("faces")),
        "changed": sum(1 for e in done if e.get("replaced")),
        "skipped_by_category": skipped,
    }
    info["failed"] = [
        {"path": e.get("path"), "root": e.get("root"), "reason": e.get("reason")} for e in state.entries(Status.FAILED)
    ]
    info["skipped"] = [
        {
            "path": e.get("path"),
            "root": e.get("root"),
            "reason": e.get("reason"),
            "category": e.get("category"),
            "folder": bool(e.get("folder")),
        }
        for e in state.entries(Status.SKIPPED)
    ]
    # Without a bucket (and without copying), originals stay where they are: nothing to upload.
    info["not_uploaded"] = (
        sum(1 for e in done if not e.get("uploaded")) if settings.bucket_configured or settings.copy_originals else None
    )
    lengths = group.queue_lengths
    if settings.mongodb_uri and lengths is not None:
        try:
            info["queues"] = lengths(settings)
        except Exception:  # noqa: BLE001 - Redis out of reach: status still shows the ledger
            info["queues"] = None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if not (list_failed or list_skipped):
        c = counts
        line = (
            f"photos {info['photos']:,}: done {c[Status.DONE]:,} (faces {info['faces']:,}, no face {info['no_face']:,}), "
            + (f"changed {info['changed']:,}, " if info["changed"] else "")
            + f"duplicates {c[Status.DUPLICATE]:,}, pending {c[Status.QUEUED]:,}, failed {c[Status.FAILED]:,}"
        )
        if info["not_uploaded"] is not None:
            line += f", not uploaded {info['not_uploaded']:,}"
        click.echo(line + (f"; {count_skipped(skipped)}" if skipped else ""))
        if info.get("queues") is not None:
            click.echo("queues: " + ", ".join(f"{k} {v}" for k, v in info["queues"].items()))
        elif settings.mongodb_uri:
            click.echo("queues: Redis not reachable")
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
        click.echo(json.dumps(people, indent=2, ensure_ascii=False))
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
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
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
