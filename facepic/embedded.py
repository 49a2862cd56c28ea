"""Servers for the embedded default: a MongoDB wire-protocol server whose files live under
the data folder, so `facepic run` needs nothing installed but FacePic itself.

The server is SecantusDB (GPL-2.0), an optional extra: ``pip install 'facepic[embedded]'``.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from facepic.settings import Secret, Settings


class EmbeddedError(Exception):
    pass


@contextmanager
def data_folder_lock(data_dir: Path) -> Iterator[None]:
    """One embedded run per data folder: two would write the same database files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / ".facepic.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbeddedError(f"another FacePic run is using the data folder {data_dir}") from None
        yield
    finally:
        os.close(fd)


@contextmanager
def embedded_database(settings: Settings) -> Iterator[Settings]:
    """``settings`` with a MongoDB URI: the configured one, or an embedded server's for the
    duration of the block."""
    if settings.mongodb_uri:
        yield settings
        return
    try:
        from secantus import SecantusDBServer
    except ImportError:
        raise EmbeddedError(
            "no FACEPIC_MONGODB_URI is set and the embedded database is not installed: "
            "pip install 'facepic[embedded]' (or set FACEPIC_MONGODB_URI)"
        ) from None
    with data_folder_lock(settings.data_dir):
        path = settings.embedded_db_dir
        path.mkdir(parents=True, exist_ok=True)
        server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(path))
        server.start()
        try:
            host, port = server.address
            yield settings.replace(mongodb_uri=Secret(f"mongodb://{host}:{port}/?directConnection=true"))
        finally:
            server.stop()
