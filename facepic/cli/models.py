"""`facepic reembed` and `fetch-model`: the face models of a library."""

from __future__ import annotations

import sys

import click

from facepic.cli.group import cli, settings_of


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

    from facepic.context import Context
    from facepic.derived import Covers
    from facepic.detect import FaceEngine
    from facepic.embedded import embedded_database
    from facepic.models import resolve
    from facepic.reembed import reembed as run_reembed
    from facepic.runtime import Runtime

    settings = settings_of(obj)
    with embedded_database(settings, alone=True) as settings, Context(settings) as ctx:
        lib = ctx.library
        runtime = Runtime.for_settings(settings, 1)
        choice = resolve(model_name, settings.model_root).on(runtime.describe())
        click.echo(choice.describe(), err=True)
        engine = FaceEngine(choice, settings.detect_size, runtime)
        covers = Covers(ctx)
        total = lib.images_to_reembed(choice.name)
        with tqdm(total=total, desc="re-embedding", unit="photo", disable=None, file=sys.stderr) as bar:
            progress = run_reembed(
                lib, engine, settings, covers, switch_now=not no_switch, on_photo=lambda: bar.update(1)
            )
    click.echo(
        f"staged {progress.staged} photos ({progress.missing} without an original to read): "
        f"{progress.faces_matched} faces kept, {progress.faces_new} new, {progress.faces_lost} not found again"
    )
    if progress.switched and progress.recluster is not None:
        r = progress.recluster
        click.echo(f"the library now uses {choice.name}; persons {r.persons_before} -> {r.persons_after}")
    else:
        click.echo("the library still uses its old model; run again without --no-switch to switch")
    if progress.missing:
        click.echo(
            f"{progress.missing} photos could not be read (drive unplugged, not uploaded): "
            "their faces stay on the old model and are not compared",
            err=True,
        )
        sys.exit(1)


@cli.command("fetch-model")
@click.argument("name", default="auto")
@click.pass_obj
def fetch_model(obj: dict, name: str) -> None:
    """Resolve a face model pack, download it if needed (buffalo_l), and load it once.

    Example:

        facepic fetch-model buffalo_l
    """
    from facepic.detect import FaceEngine
    from facepic.models import resolve
    from facepic.runtime import Runtime

    settings = settings_of(obj)
    runtime = Runtime.for_settings(settings, 1)
    choice = resolve(name, settings.model_root).on(runtime.describe())
    click.echo(choice.describe())
    FaceEngine(choice, settings.detect_size, runtime)
    click.echo(f"face model {choice.name} is ready")
