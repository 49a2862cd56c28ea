"""`facepic serve`: the web page on the library (``facepic.web``), until Ctrl-C."""

from __future__ import annotations

import logging
import resource
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from facepic.cli.group import cli, settings_of

if TYPE_CHECKING:  # flask and waitress are the web extra's: imported when the command runs
    from flask import Flask
    from waitress.server import BaseWSGIServer, MultiSocketServer

    from facepic.settings import Settings

# Waitress reads requests without a thread, so a slow client costs a connection, not a worker;
# the limit is high enough that a few hundred idle or trickling sockets leave room for the page,
# and an idle one is closed after CHANNEL_TIMEOUT seconds (looked for every CLEANUP seconds).
CONNECTIONS = 1000
CHANNEL_TIMEOUT = 20
CLEANUP = 5
THREADS = 8


def connection_limit() -> int:
    """CONNECTIONS, or fewer when the open-files limit leaves less room (a socket is a file)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTIONS
    return max(50, min(CONNECTIONS, soft - 200))


@cli.command()
@click.option("--bind", default=None, help="Address to listen on (FACEPIC_WEB_BIND, default 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (FACEPIC_WEB_PORT, default 8000; 0: any free port).",
)
@click.pass_obj
def serve(obj: dict, bind: str | None, port: int | None) -> None:
    """Start the web page on the library: people, persons, photos, unassigned faces and search,
    with the same corrections as the commands, and a JSON API under /api/. Listens on 127.0.0.1
    unless told otherwise; any other address needs a login (FACEPIC_WEB_AUTH=user:password).
    With the embedded database the page holds the data folder: `persons`, `name` and the other
    corrections use its database meanwhile; stop it before `run`, `recluster` or `cleanup`.

    Example:

        facepic serve --port 8000
    """
    from facepic.changes import finish_pending_of
    from facepic.context import Context
    from facepic.embedded import embedded_database

    settings = settings_of(obj)
    _require_web()
    from facepic.web.app import create_app

    login, host, port = _where(settings, bind, port)
    # Waitress warns "Task queue depth is N" whenever a request waits for one of THREADS, which
    # a page of 60 thumbnails does on every load: a line about nothing the user can act on.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    with embedded_database(settings, alone=True, publish=True) as settings, Context(settings) as ctx:
        ctx.library.ensure_indexes()  # the page's own, on a library a run made before them
        finish_pending_of(ctx)  # a change the last process left midway
        app = create_app(ctx, login)
        # The "same person?" pairs are read whole once (a second at 10,000 persons): now, aside.
        threading.Thread(target=app.extensions["facepic"].suggested.warm, name="suggested", daemon=True).start()
        server = _listen(app, host, port)
        _run_until_stopped(server, host, login)


def _require_web() -> None:
    """Stops with one line that says how to install the web page when flask or waitress is missing."""
    try:  # everything `serve` imports from the web extra, so that a missing one fails here, first
        import waitress  # noqa: F401

        from facepic.web import guard  # noqa: F401
        from facepic.web.app import create_app  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "the web page is not installed: pip install 'facepic[web]' (or pip install -r requirements/web.txt)"
        ) from None


def _where(settings: Settings, bind: str | None, port: int | None) -> tuple[tuple[str, str] | None, str, int]:
    """The login (or None), host and port to listen with: the options over the settings; an
    error for a malformed login, or for another address than this machine's without one."""
    from facepic.web import guard

    try:
        login = guard.parse_login(settings.web_auth)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    host = bind or settings.web_bind
    port = settings.web_port if port is None else port
    if login is None and not guard.is_loopback(host):
        raise click.ClickException(
            f"refusing to listen on {host} without a login: set FACEPIC_WEB_AUTH=user:password (or listen on 127.0.0.1)"
        )
    return login, host, port


def _listen(app: Flask, host: str, port: int) -> BaseWSGIServer | MultiSocketServer:
    """Waitress listening on ``host``:``port`` (not serving yet); an error when it cannot."""
    import waitress

    try:
        return waitress.create_server(
            app,
            host=host,
            port=port,
            threads=THREADS,
            connection_limit=connection_limit(),
            channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=CLEANUP,
            asyncore_use_poll=True,  # select() fails beyond 1024 sockets
            ident="FacePic",
        )
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror or e})") from None


def _run_until_stopped(server: BaseWSGIServer | MultiSocketServer, host: str, login: tuple[str, str] | None) -> None:
    """Says where the page is, then serves until Ctrl-C or SIGTERM, both a clean stop."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"FacePic is at http://{shown}:{server.effective_port}/ "
        f"({'login required' if login else 'this machine only, no login'}); Ctrl-C stops it",
        err=False,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
