"""`facepic xmp export`: the names FacePic knows, into XMP sidecars (``facepic.xmp_export``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from facepic.cli.group import cli, settings_of


@cli.group()
def xmp() -> None:
    """Face names in XMP sidecars, as digiKam and Lightroom read and write them."""


@xmp.command("export")
@click.option("--dry-run", is_flag=True, help="Say which sidecars would be written; write none.")
@click.option(
    "--to",
    "to",
    type=click.Path(file_okay=False, path_type=Path),
    help="For photos whose original is not on this machine: write their sidecars here, at their paths.",
)
@click.pass_obj
def export(obj: dict, dry_run: bool, to: Path | None) -> None:
    """Write an XMP sidecar (IMG_0001.JPG.xmp) beside every photo with a named face: MWG and
    Microsoft face regions; what a sidecar already holds is kept, the originals are never
    written. Run it again after renaming or merging: the sidecars follow.

    Example:

        facepic xmp export --dry-run
    """
    from facepic.changes import finish_pending
    from facepic.context import Context
    from facepic.derived import Covers
    from facepic.embedded import embedded_database
    from facepic.xmp_export import export as export_names

    settings = settings_of(obj)
    with embedded_database(settings) as settings, Context(settings) as ctx:
        finish_pending(ctx.library, Covers(ctx))
        summary = export_names(ctx.library, to, dry_run, click.echo)
    click.echo(summary.line())
    if summary.failed:
        sys.exit(1)
