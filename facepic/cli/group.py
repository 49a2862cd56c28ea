"""The `facepic` command group and what its commands share: the one error path (a
``FacePicError`` becomes one line, "Error: ...", exit 1, scrubbed of secrets and naming the
setting behind a server out of reach; anything else is a bug and keeps its traceback), the
settings, progress bars, the summary line, the shared options and the watch loop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from facepic.errors import FacePicError

if TYPE_CHECKING:
    from facepic.planner import Summary
    from facepic.settings import Settings

# Server settings a .env in the working folder may have switched: the first line says so.
SERVER_SETTINGS = ("redis_url", "mongodb_uri", "s3_endpoint", "data_dir")
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def leave(code: Any) -> NoReturn:
    """End the process with ``code`` (as ``sys.exit`` takes it) once a command is over.

    When nothing is left to finish (no other thread that is not a daemon, no child process),
    the process ends at once, its output and logs flushed: a normal exit would wait up to half
    a second for the MongoDB driver's monitor threads to wake from their sleep and see they are
    stopped (0.46 s of a 1.5 s `facepic persons`). Every file FacePic writes is closed (and
    synced) by the command itself; otherwise, the normal exit."""
    multiprocessing = sys.modules.get("multiprocessing")
    busy = any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())
    if not (code is None or isinstance(code, int)) or busy or (multiprocessing and multiprocessing.active_children()):
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): what was read is all it wanted
            pass
    os._exit(code or 0)


class FacePicGroup(click.Group):
    """Runs a command; a FacePicError becomes one line for the user."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacePicError as e:
            raise click.ClickException(user_message(e, (ctx.obj or {}).get("settings"))) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted: what was finished is kept, and the same command goes on from there", err=True)
            sys.exit(INTERRUPTED)


def user_message(e: FacePicError, settings: Settings | None) -> str:
    """The error's line, with the setting behind a server out of reach and where it came from
    (a .env written for Docker names hosts such as `mongo` that only exist inside compose)."""
    from facepic.settings import redact

    message = str(e)
    if settings is None:
        return message
    setting = getattr(e, "setting", None)  # a server out of reach names its setting
    if setting is not None:
        message += f"; check {settings.origin(setting)}"
    return redact(message, settings)


@click.group(cls=FacePicGroup)
@click.option("--env-file", default=".env", show_default=True, help="Settings file read before the environment.")
@click.version_option(package_name="facepic")
@click.pass_context
def cli(ctx: click.Context, env_file: str) -> None:
    """FacePic: organise a photo library by the people in it."""
    ctx.ensure_object(dict)
    ctx.obj["env_file"] = env_file


def settings_of(obj: dict[str, Any]) -> Settings:
    """The command's settings, read once; says which server settings came from a .env file."""
    if "settings" not in obj:
        from facepic.settings import Settings, SettingsError

        try:
            obj["settings"] = settings = Settings.load(env_file=obj["env_file"])
        except SettingsError as e:
            raise click.ClickException(str(e)) from None
        from_file = [
            f"FACEPIC_{name.upper()}"
            for name in SERVER_SETTINGS
            if settings.sources.get(name, "the environment") != "the environment"
        ]
        if from_file:
            file = next(v for v in settings.sources.values() if v != "the environment")
            click.echo(f"settings from {file}: " + ", ".join(from_file), err=True)
    return obj["settings"]


class Stderr:
    """``sys.stderr`` as it is at each write, for progress bars and the lines above them: the
    embedded database swaps it (its engine's messages go to its log) while a bar is open."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def fileno(self) -> int:
        return sys.stderr.fileno()

    @property
    def encoding(self) -> str | None:  # the bars' blocks where the terminal takes them
        return getattr(sys.stderr, "encoding", None)


STDERR = Stderr()


def progress(items: Iterable[Any], desc: str, total: int | None = None) -> Iterator[Any]:
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit="photo", disable=None, file=STDERR)


def say_error(line: str) -> None:
    """A line for the user above the progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=STDERR)


def import_root(settings: Settings, path: Path | None) -> Path:
    root = path or settings.import_dir
    if root is None:
        raise click.ClickException("no import folder: give a PATH or set FACEPIC_IMPORT_DIR")
    return Path(root)


def finish(summary: Summary, root: Path | None = None) -> None:
    """The summary line; exit 1 when a photo failed."""
    click.echo(summary.line())
    if root is not None and summary.photos == 0:
        click.echo(
            f"no photos in {root}: FacePic reads JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, GIF, BMP "
            "and camera RAW files (is this the right folder?)",
            err=True,
        )
    if summary.failed:
        click.echo("some photos failed: see the lines above, or `facepic status --failed`", err=True)
        sys.exit(1)


upload_options = [
    click.option("--disable-upload", is_flag=True, help="Do everything but upload to the bucket."),
    click.option("--upload-only", is_flag=True, help="Only upload what was processed but not uploaded."),
    click.option("--retry-failed", is_flag=True, help="Process photos that failed before once more."),
    click.option(
        "--follow-links",
        is_flag=True,
        help="Follow symbolic links that point outside the import folder (default: skip them).",
    ),
]


def with_upload_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(upload_options):
        fn = option(fn)
    return fn


watch_options = [
    click.option("--watch", is_flag=True, help="Keep running: take photos as they arrive (Ctrl-C stops)."),
    click.option(
        "--interval",
        type=click.FloatRange(min=0.1),
        default=5.0,
        show_default=True,
        help="Seconds between looks (--watch).",
    ),
]


def with_watch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(watch_options):
        fn = option(fn)
    return fn


def watch(root: Path, interval: float, retry_failed: bool, look: Callable[[Any, bool], Summary]) -> None:
    """``look(steady, retry_failed)`` at ``root`` every ``interval`` seconds until interrupted
    (`run --watch`, `enqueue --watch`): each photo is taken once ``steady`` says it stopped
    changing, and a look that took something prints its summary line."""
    import time

    from facepic.planner import Steady

    steady = Steady(quiet=max(1.0, 2 * interval))
    say_error(f"watching {root} (every {interval:g} s; Ctrl-C stops)")
    while True:
        summary = look(steady, retry_failed)
        retry_failed = False  # once, at the start
        if summary.acted:
            click.echo(summary.line())
        time.sleep(interval)


# Queue lengths for `status`, where the Celery layer is installed (workers.cli sets it).
queue_lengths: Callable[[Settings], dict[str, int]] | None = None
