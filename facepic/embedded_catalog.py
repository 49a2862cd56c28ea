"""The embedded server's index catalog, read once for each storage transaction.

SecantusDB 0.7 (the embedded default's MongoDB server) reads a collection's index catalog
again for each document it writes: its unique-key check, its geo check and its index-entry
writes each decode every index's catalog entry, and an update's removal of the old entries
once more. With the seven or eight indexes of `images` and `faces` that was half the CPU of
inserting a photo's documents (0.27 -> 0.15 ms a document, bench/embedded.py). Those writes run
in one storage transaction a chunk of a command (``Storage._batch_transaction``: up to 1,000
documents, the collection's lock held for inserts, updates and deletes), whose reads see one
snapshot; the one catalog change it makes itself, marking an index multikey, touches nothing
those reads use (a geo index's cell options, a collation, ``prepareUnique``). So the first
read of a transaction is kept until it ends, in the thread running it: a command in several
chunks reads the catalog again for each, and sees an index created between two of them.

Applied to the server FacePic starts for its own data folder (``facepic.embedded``) only; a
SecantusDB without these methods is left as it is (slower, the same results).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

_local = threading.local()


def read_once(storage_class: Any) -> bool:
    """Keep ``storage_class``'s catalog reads for the length of each of its transactions;
    whether it could (the methods found, now or by an earlier call)."""
    if vars(storage_class).get("_facepic_read_once", False):
        return True
    read = getattr(storage_class, "_index_options_map", None)
    transaction = getattr(storage_class, "_batch_transaction", None)
    if not callable(read) or not callable(transaction):
        return False
    storage_class._index_options_map = _kept(read)
    storage_class._batch_transaction = _scoped(transaction)
    storage_class._facepic_read_once = True
    return True


def _kept(read: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    @functools.wraps(read)
    def options(self: Any, db: str, coll: str) -> dict[str, Any]:
        memo = getattr(_local, "memo", None)
        if memo is None:  # outside a transaction: read as before
            return read(self, db, coll)
        key = (id(self), db, coll)
        if key not in memo:
            memo[key] = read(self, db, coll)
        return memo[key]

    return options


def _scoped(transaction: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(transaction)
    @contextlib.contextmanager
    def scoped(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        if getattr(_local, "memo", None) is not None:  # within another: its reads hold
            with transaction(self, *args, **kwargs) as session:
                yield session
            return
        _local.memo = {}
        try:
            with transaction(self, *args, **kwargs) as session:
                yield session
        finally:
            _local.memo = None

    return scoped
