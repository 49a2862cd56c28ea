"""The embedded server's index catalog, read once for each write command.

SecantusDB 0.7 (the embedded default's MongoDB server) reads a collection's index catalog
again for each document it writes: its unique-key check, its geo check and its index-entry
writes each decode every index's catalog entry, and an update's removal of the old entries
once more. With the seven or eight indexes of `images` and `faces` that was half the CPU of
inserting a photo's documents (0.24 -> 0.13 ms a document, bench/embedded.py). Within one
write command the answer cannot change in what those reads use (a geo index's cell options,
a collation, ``prepareUnique``): the command holds the collection's lock, and the one catalog
change it makes itself, marking an index multikey, touches none of them. So the first read
of a command is kept for the rest of it, in the thread serving that command.

Applied to the server FacePic starts for its own data folder (``facepic.embedded``) only; a
SecantusDB without these methods is left as it is (slower, the same results).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

WRITES = ("insert", "update_matching", "delete_matching")  # each a whole write command
_local = threading.local()


def read_once(storage_class: Any) -> bool:
    """Keep ``storage_class``'s catalog reads for the length of each write command; whether
    it could (the methods found, now or by an earlier call)."""
    if getattr(storage_class, "_facepic_read_once", False):
        return True
    read = getattr(storage_class, "_index_options_map", None)
    writes = [getattr(storage_class, name, None) for name in WRITES]
    if not callable(read) or not all(callable(w) for w in writes):
        return False
    storage_class._index_options_map = _kept(read)
    for name, write in zip(WRITES, writes, strict=True):
        setattr(storage_class, name, _command(write))  # type: ignore[arg-type]  # callable, checked above
    storage_class._facepic_read_once = True
    return True


def _kept(read: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    @functools.wraps(read)
    def options(self: Any, db: str, coll: str) -> dict[str, Any]:
        memo = getattr(_local, "memo", None)
        if memo is None:  # outside a write command: read as before
            return read(self, db, coll)
        key = (id(self), db, coll)
        if key not in memo:
            memo[key] = read(self, db, coll)
        return memo[key]

    return options


def _command(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def command(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "memo", None) is not None:  # within another write command
            return write(self, *args, **kwargs)
        _local.memo = {}
        try:
            return write(self, *args, **kwargs)
        finally:
            _local.memo = None

    return command
