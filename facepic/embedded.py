"""Servers for the embedded default: a MongoDB wire-protocol server whose files live under
the data folder, so `facepic run` needs nothing installed but FacePic itself.

The server is SecantusDB (GPL-2.0), an optional extra: ``pip install 'facepic[embedded]'``.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from facepic import embedded_packing
from facepic.datafolder import DataFolder, write_atomic
from facepic.embedded_catalog import read_once
from facepic.errors import FacePicError, data_folder_error, disk_full, first_line
from facepic.procs import alive
from facepic.settings import Secret, Settings

LOOPBACK = "127.0.0.1"  # the embedded server never listens beyond this machine


class EmbeddedError(FacePicError):
    pass


@contextmanager
def data_folder_lock(data_dir: Path) -> Iterator[None]:
    """One embedded run per data folder: two would write the same database files."""
    fd = _lock(data_dir)
    if fd is None:
        raise EmbeddedError(_held_by(data_dir))
    try:
        yield
    finally:
        os.close(fd)


def _lock(data_dir: Path) -> int | None:
    """The data folder's lock, held through the returned descriptor; None when another
    process holds it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / ".facepic.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise data_folder_error(e, data_dir) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _held_by(data_dir: Path) -> str:
    """Why the data folder is not free, in words that say what to do."""
    serving = _serving(data_dir)
    if serving is not None and not serving["lingering"]:
        return (
            f"facepic serve (pid {serving['pid']}) is using the data folder: "
            "stop it (Ctrl-C in its terminal) and run this again"
        )
    lingering = _published(data_dir)
    if lingering is not None and lingering.get("lingering") and alive(int(lingering["pid"])):
        return (
            f"the embedded database's server (pid {lingering['pid']}), kept up for the commands after "
            "the last one, is in use by another facepic command or does not answer: run this again "
            f"once that command is done, or stop the server (kill {lingering['pid']})"
        )
    return f"another FacePic run is using the data folder {data_dir}"


def _published(data_dir: Path) -> dict[str, Any] | None:
    """``serving.json`` as it is, trusted or not."""
    try:
        found = json.loads(DataFolder(data_dir).serving.read_text())
        int(found["pid"])
        return found if isinstance(found, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _serving(data_dir: Path) -> dict[str, Any] | None:
    """The address `facepic serve` or a lingering server published for its embedded server,
    when the lock is held and that server answers: a file left by a process killed with -9 is
    never trusted. A lingering server still starting is waited for (its starter wrote the file
    with its pid and no port)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        serving = _published(data_dir)
        if serving is None:
            return None
        pid = int(serving["pid"])
        if not alive(pid):
            return None
        if serving.get("port") is not None:
            break
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    from facepic.db import answers

    try:
        port = int(serving["port"])
    except (ValueError, TypeError):
        return None
    if not answers(_uri(LOOPBACK, port)):
        return None
    return {"pid": pid, "port": port, "lingering": bool(serving.get("lingering"))}


def _uri(host: str, port: int, journal: bool = True) -> str:
    # journal=true: each write returns once its log is on disk, so a disk that fills
    # fails that write instead of the server dropping its last writes when it closes.
    # `facepic run` asks for journal=false: there every one of its many small writes waited
    # for an fsync of the log (about 850 on 1,705 LFW photos); it flushes once a batch
    # instead, before the ledger calls a photo done (`Library.on_disk`), so nothing logged
    # done is lost to a kill, a power cut or a full disk.
    # retryWrites=false: this server keeps a record of every retryable write for
    # half an hour and scans them all at each write, so a long run's writes grew
    # dearer one after another (45% of the end of a 15,000-face run). A retry
    # is for a failover, which an embedded server in this process never has.
    return f"mongodb://{host}:{port}/?directConnection=true&journal={str(journal).lower()}&retryWrites=false"


@contextmanager
def embedded_database(
    settings: Settings, *, alone: bool = False, publish: bool = False, journal: bool = True
) -> Iterator[Settings]:
    """``settings`` with a MongoDB URI: the configured one, or an embedded server's for the
    duration of the block. While `facepic serve` holds the data folder (``publish``: it writes
    its server's loopback address there), a block that need not be ``alone`` uses serve's
    server; one that must be gets an error that names serve. Without ``journal`` the embedded
    server's writes return before its log is on disk: its user calls ``Library.on_disk``
    before anything outside the database relies on them."""
    if settings.mongodb_uri:
        yield settings
        return
    fd, serving = _lock(settings.data_dir), None
    if fd is None:
        fd, serving = _free_or_serving(settings.data_dir)
    if fd is None:
        if serving is not None and serving["lingering"] and alone:
            fd = _stop_lingering(settings.data_dir, serving["pid"])
            if fd is None:
                raise EmbeddedError(
                    f"the embedded database's server (pid {serving['pid']}) is still in use by another "
                    "facepic command: run this again once that command is done"
                )
        elif serving is not None and not alone:
            yield settings.replace(mongodb_uri=Secret(_uri(LOOPBACK, serving["port"])))
            return
        if fd is None:
            raise EmbeddedError(_held_by(settings.data_dir))
    if not (alone or publish) and settings.db_linger > 0:
        port = _linger(settings, fd)  # the server takes the lock over
        if port is not None:
            yield settings.replace(mongodb_uri=Secret(_uri(LOOPBACK, port)))
            return
        fd = _lock(settings.data_dir)  # it could not start: this process serves itself, as before
        if fd is None:
            raise EmbeddedError(_held_by(settings.data_dir))
    try:
        with _started(settings.data_dir, publish, journal) as (uri, _):
            yield settings.replace(mongodb_uri=Secret(uri))
    finally:
        os.close(fd)


def _free_or_serving(data_dir: Path) -> tuple[int | None, dict[str, Any] | None]:
    """The data folder's lock, or the server that holds it, waiting HANDOVER seconds for
    either: a lingering server takes the lock a moment before it publishes its address, and
    releases it a moment after it withdraws it. (None, None): held by someone else."""
    deadline = time.monotonic() + HANDOVER
    while True:
        serving = _serving(data_dir)
        if serving is not None:
            return None, serving
        fd = _lock(data_dir)
        if fd is not None or time.monotonic() > deadline:
            return fd, None
        time.sleep(0.05)


# A read or a correction with the lock free starts the server in a process of its own that
# outlives the command by ``db_linger`` seconds without a client: the next command connects in
# milliseconds instead of importing the server and opening its files (a second of `facepic
# persons`). A command that needs the library to itself (run, recluster, serve...) stops it.
START_TIMEOUT = 30.0  # seconds for a lingering server to open the database
STOP_TIMEOUT = 30.0  # seconds for it to close it (once the commands using it are done)
HANDOVER = 3.0  # seconds a command waits for the lock or an address while a server starts or stops


def _linger(settings: Settings, fd: int) -> int | None:
    """Start a lingering server on the data folder whose lock ``fd`` holds (closed here: the
    server's copy holds it from now); its port, or None when it could not start."""
    serving = settings.folder.serving
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facepic.embedded",
                os.path.abspath(settings.data_dir),
                str(fd),
                str(settings.db_linger),
            ],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C at the terminal is for the command, not for it
            close_fds=True,
            cwd="/",  # not the command's folder, which it would keep busy
        )
    except OSError:
        os.close(fd)
        return None
    os.close(fd)
    try:
        # Written before the server has a port: a command meanwhile waits for it (``_serving``).
        write_atomic(serving, json.dumps({"pid": proc.pid, "port": None, "lingering": True}).encode())
    except OSError:  # a full disk: this command serves itself, and says so
        proc.kill()
        proc.wait()
        return None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        found = _serving(settings.data_dir)
        if found is not None and found["pid"] == proc.pid:
            return int(found["port"])
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return None


def _stop_lingering(data_dir: Path, pid: int) -> int | None:
    """Ask the lingering server ``pid`` to close, and take the data folder's lock once it has;
    None if it is still held after STOP_TIMEOUT."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        fd = _lock(data_dir)
        if fd is not None:
            return fd
        time.sleep(0.02)
    return None


def _serve_lingering(data_dir: Path, fd: int, idle: float) -> None:
    """The lingering server's process: serve the data folder's database until no client has
    been connected for ``idle`` seconds, or until asked to stop (SIGTERM: it stops taking
    commands and closes once those connected are done). If the data folder is no longer the
    one it opened (moved, deleted, a backup restored in its place), it ends at once without
    closing the database: closing writes its files by name, into the folder now there."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    opened = os.fstat(fd)

    def still_ours() -> bool:
        try:
            there = os.stat(data_dir / ".facepic.lock")
        except OSError:
            return False
        return (there.st_dev, there.st_ino) == (opened.st_dev, opened.st_ino)

    try:
        with _started(data_dir, True, True, lingering=True) as (_, server):
            quiet_since = time.monotonic()
            withdrawn = False
            while True:
                stop.wait(0.2)
                if not still_ours():
                    os._exit(0)
                busy = getattr(server, "_active_conns", 0)
                if stop.is_set():
                    if not withdrawn:  # no new command comes to a server about to close
                        DataFolder(data_dir).serving.unlink(missing_ok=True)
                        withdrawn = True
                    if not busy:
                        break
                elif busy:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > idle:
                    break
            if not still_ours():
                os._exit(0)
    finally:
        os.close(fd)


@contextmanager
def _started(data_dir: Path, publish: bool, journal: bool, lingering: bool = False) -> Iterator[tuple[str, Any]]:
    """An embedded server on the data folder's database (its lock held): its URI and itself."""
    try:
        from secantus import SecantusDBServer
        from secantus.storage import Storage
    except ImportError:
        raise EmbeddedError(
            "no FACEPIC_MONGODB_URI is set and the embedded database is not installed: "
            "pip install 'facepic[embedded]' (or set FACEPIC_MONGODB_URI)"
        ) from None
    read_once(Storage)
    embedded_packing.apply()  # WiredTiger's packing without parsing each format again
    folder = DataFolder(data_dir)
    path = folder.database
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise data_folder_error(e, data_dir) from None
    with _diagnostics_to(path / "server.log"):
        try:
            server = SecantusDBServer(host=LOOPBACK, port=0, storage_path=str(path))
            server.start()
        except Exception as e:  # noqa: BLE001 - its storage engine panics on a full disk
            if disk_full(data_dir):
                raise data_folder_error(OSError(errno.ENOSPC, "No space left on device"), data_dir) from None
            raise EmbeddedError(
                f"the embedded database in {path} cannot be opened ({first_line(e)}); its log is {path / 'server.log'}"
            ) from None
        serving = folder.serving
        try:
            host, port = server.address
            # Whoever holds the lock owns the address file: one there now is a killed serve's
            # (or, for a lingering server, its starter's, which names it without a port).
            if publish:  # in place of it, in one step: a command reading it meanwhile sees one
                published = {"pid": os.getpid(), "port": port, **({"lingering": True} if lingering else {})}
                write_atomic(serving, json.dumps(published).encode())
            else:
                serving.unlink(missing_ok=True)
            yield _uri(host, port, journal), server
        finally:
            serving.unlink(missing_ok=True)
            _wake_accept(server)
            try:
                server.stop()
            except Exception:
                logging.getLogger("secantus").exception("the embedded database did not close cleanly")
                # Its threads go on printing until the process ends: keep them off the terminal.
                _keep_redirected.set()


_keep_redirected = threading.Event()


def _wake_accept(server: Any) -> None:
    """Shut the server's listening socket down before it stops: its accept thread then returns
    at once, where ``stop`` would otherwise wait two seconds for it (closing a socket does not
    wake a blocked ``accept`` on Linux, shutting it down does)."""
    listening = getattr(server, "_socket", None)
    if listening is not None:
        try:
            listening.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@contextmanager
def _diagnostics_to(log: Path) -> Iterator[None]:
    """The embedded server's own messages go to ``log``, not the user's terminal: its storage
    engine writes to file descriptor 2 (a full disk makes it print pages of panics), and its
    Python side logs tracebacks. FacePic's own lines still reach the terminal."""
    handler: logging.Handler = _QuietFileHandler(log, delay=True) if _writable(log) else logging.NullHandler()
    with _server_logging_to(handler), _descriptor_2_to(log, handler):
        yield


@contextmanager
def _server_logging_to(handler: logging.Handler) -> Iterator[None]:
    """The server's Python logger writes to ``handler`` only; closed at the end."""
    server_log = logging.getLogger("secantus")
    saved_propagate = server_log.propagate
    server_log.addHandler(handler)
    server_log.propagate = False
    try:
        yield
    finally:
        server_log.removeHandler(handler)
        server_log.propagate = saved_propagate
        try:
            handler.close()
        except OSError:
            pass  # a full disk: the log is lost, the run's own error says why


@contextmanager
def _descriptor_2_to(log: Path, handler: logging.Handler) -> Iterator[None]:
    """File descriptor 2 writes to ``log`` (else nowhere); Python's sys.stderr keeps the
    terminal, less the storage engine's lines (to ``handler``)."""
    saved_fd, saved_stderr = None, sys.stderr
    uses_fd2 = _stderr_is_fd2()
    try:
        target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        target = os.open(os.devnull, os.O_WRONLY)
    try:
        saved_fd = os.dup(2)
        terminal: Any = saved_stderr
        if uses_fd2:  # Python's stderr keeps the terminal through a copy of descriptor 2
            terminal = io.TextIOWrapper(
                os.fdopen(os.dup(saved_fd), "wb", buffering=0),
                encoding=saved_stderr.encoding,
                errors="backslashreplace",
                line_buffering=True,
            )
        # The storage engine reports through Python's sys.stderr (PySys_WriteStderr).
        sys.stderr = _WithoutEngineLines(terminal, handler)
        os.dup2(target, 2)
        yield
    finally:
        os.close(target)
        if _keep_redirected.is_set() or uses_fd2:
            # The engine's threads may print until the process ends (a panic goes on past
            # close): in the CLI's own process descriptor 2 stays redirected, and the
            # rebound sys.stderr stays the user's terminal.
            pass
        else:
            if saved_fd is not None:
                os.dup2(saved_fd, 2)
                os.close(saved_fd)
            if sys.stderr is not saved_stderr:
                sys.stderr.flush()
                sys.stderr = saved_stderr


def _stderr_is_fd2() -> bool:
    """Whether Python's sys.stderr writes to file descriptor 2 (flushed first)."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test runner's captured stderr
        return False


_ENGINE_LINE = re.compile(r"^\[\d+:\d+\]\[\d+:0x[0-9a-f]+\]")


class _WithoutEngineLines(io.TextIOBase):
    """A text stream that passes everything to ``out`` but the storage engine's own lines,
    which go to ``log``."""

    def __init__(self, out: Any, log: logging.Handler) -> None:
        self.out = out
        self.log = log

    def write(self, text: str) -> int:
        if _ENGINE_LINE.match(text):
            self.log.handle(
                logging.makeLogRecord(
                    {"msg": text.rstrip("\n"), "levelno": logging.ERROR, "levelname": "ERROR", "name": "wiredtiger"}
                )
            )
            return len(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def fileno(self) -> int:
        return self.out.fileno()

    def isatty(self) -> bool:
        return bool(getattr(self.out, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.out, "encoding", "utf-8")


class _QuietFileHandler(logging.FileHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """A full disk cannot take the log either: drop the record instead of printing it."""


def _writable(path: Path) -> bool:
    try:
        with open(path, "a"):
            return True
    except OSError:
        return False


if __name__ == "__main__":  # a lingering server: python -m facepic.embedded DATA_DIR LOCK_FD IDLE_SECONDS
    _serve_lingering(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
