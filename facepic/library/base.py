"""The connection every room of `facepic.db.Library` shares: the collections, the one
error wrapper, the library's model and epoch, and the writes every room makes (face sequence
numbers, face moves, the persons' version). The collection names and the errors live here too,
and `facepic.db` re-exports them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient, ReturnDocument, UpdateMany, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)
from pymongo.write_concern import WriteConcern

from facepic.errors import DatabaseError, DatabaseUnavailable, FacePicError  # noqa: F401 - re-exported
from facepic.ledger import now_iso
from facepic.models import ModelMismatch

SETTLE_META_ID = "settle"  # the settle mark's document in `meta`
RECLUSTER_META_ID = "recluster"  # what the last recluster left unassigned
# Every collection FacePic makes; `cleanup` drops these and nothing else.
COLLECTIONS = (
    "images",
    "faces",
    "persons",
    "folders",
    "meta",
    "face_moves",
    "face_snapshots",
    "faces_next",
    "changes",
    "change_parts",
    "undo_log",
    "undo_parts",
)
UNDO_KEPT = 100  # corrections the undo log keeps, the latest
# Faces of one undo entry per stored document: a merge of 100,000 faces is about 12 MB of
# "before" state, and BSON's limit is 16 MB, so a large entry keeps its faces in parts.
UNDO_PART_FACES = 20_000

# Ids per `$in` when looking faces up by id: some servers (the embedded one) slow down
# faster than the list grows (5,000 ids in one `$in` cost 40 s on a million faces there).
IN_BATCH = 100
CHANGES_KEPT = 50  # changes to persons the library lists for the page (``persons_changes``)
CHANGES_LISTED = 500  # persons one listed change names; more: "read them all again"

# The `meta` document that describes the index worker's face snapshot (see facepic/snapshot.py).
SNAPSHOT_META_ID = "face_snapshot"


def answers(uri: str, timeout_ms: int = 2000) -> bool:
    """Whether a MongoDB server answers at ``uri`` within ``timeout_ms``."""
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _hosts(uri: str) -> str:
    try:
        from pymongo.uri_parser import parse_uri

        nodes = parse_uri(uri, validate=False)["nodelist"]
        return ", ".join(f"{h}:{p}" for h, p in nodes) or "(srv)"
    except Exception:  # noqa: BLE001 - only used to word an error
        return "the configured server"


class LibraryBase:
    """FacePic's metadata in one MongoDB database: the connection and what every room uses."""

    def __init__(self, uri: str, name: str = "facepic", timeout_ms: int = 10_000) -> None:
        self._where = _hosts(uri)
        try:
            self.client: MongoClient = MongoClient(
                uri,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                tz_aware=True,
                appname="facepic",
            )
        except (InvalidURI, ConfigurationError, ValueError) as e:
            msg = str(e).replace(uri, "***")
            raise DatabaseError(f"FACEPIC_MONGODB_URI is not a valid MongoDB URI ({msg[:120]})") from None
        db = self.client[name]
        self.db = db
        self.images = db["images"]
        self.faces = db["faces"]
        self.persons = db["persons"]
        self.folders = db["folders"]
        self.meta = db["meta"]
        self.face_moves = db["face_moves"]
        self.changes = db["changes"]
        self.change_part_docs = db["change_parts"]
        self.undo_log = db["undo_log"]
        self.undo_parts = db["undo_parts"]

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn driver errors into one clear line without the URI's credentials."""
        try:
            yield
        except ConnectionFailure:
            raise DatabaseUnavailable(f"cannot reach MongoDB at {self._where}") from None
        except OperationFailure as e:
            if e.code in (13, 18) or "auth" in str(e).lower():
                raise DatabaseError(
                    f"MongoDB at {self._where} rejected the credentials (check FACEPIC_MONGODB_URI)"
                ) from None
            raise DatabaseError(f"MongoDB error {e.code}: {str(e)[:160]}") from None
        except PyMongoError as e:
            raise DatabaseUnavailable(f"MongoDB failure: {type(e).__name__}") from None

    def close(self) -> None:
        self.client.close()

    def on_disk(self) -> None:
        """Everything written so far is on disk once this returns. A client whose writes do
        not wait for the journal (`facepic run` on the embedded server) makes one small write
        that does: the server's log is written in order, so flushing it there flushes every
        write before. A client that waits at every write (MongoDB's default) has nothing to do."""
        if self.client.write_concern.document.get("j") is not False:
            return
        with self.errors():
            self.meta.with_options(write_concern=WriteConcern(j=True)).update_one(
                {"_id": "on_disk"}, {"$inc": {"flushes": 1}}, upsert=True
            )

    def library_model(self) -> str | None:
        with self.errors():
            doc = self.meta.find_one({"_id": "library"})
        return doc.get("model") if doc else None

    def epoch_and_revision(self) -> str | None:
        """Changes when the library is wiped and begun again, or when persons were changed
        outside the index worker (a correction, recluster): caches of it must be dropped."""
        with self.errors():
            doc = self.meta.find_one({"_id": "library"}, {"epoch": 1, "revision": 1})
        if not doc or not doc.get("epoch"):
            return None
        return f"{doc['epoch']}:{doc.get('revision', '')}"

    def claim_model(self, model: str) -> None:
        """Record ``model`` as the library's, or ModelMismatch if it was built with another."""
        with self.errors():
            self.meta.update_one(
                {"_id": "library"},
                {"$setOnInsert": {"model": model, "created_at": now_iso(), "epoch": uuid.uuid4().hex}},
                upsert=True,
            )
        existing = self.library_model()
        if existing != model:
            raise ModelMismatch(str(existing), model)

    @staticmethod
    def _insert_else(
        collection: Collection, docs: list[dict[str, Any]], update: Callable[[dict[str, Any]], UpdateOne]
    ) -> None:
        """Insert ``docs``; those whose id is taken (a replay) get ``update(doc)`` instead."""
        if not docs:
            return
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError as e:
            errors = e.details.get("writeErrors", [])
            if any(err.get("code") != 11000 for err in errors):
                raise
            collection.bulk_write([update(docs[err["index"]]) for err in errors], ordered=False)

    def next_seq(self, count: int) -> int:
        """Reserve ``count`` face sequence numbers; returns the first. New faces are numbered
        in the order they are stored, so that a start can read only those after a snapshot."""
        with self.errors():
            doc = self.meta.find_one_and_update(
                {"_id": "face_seq"}, {"$inc": {"value": count}}, upsert=True, return_document=ReturnDocument.AFTER
            )
        assert doc is not None  # an upsert returning the document after it
        return int(doc["value"]) - count + 1

    def current_seq(self) -> int:
        """The last face sequence number handed out (0: none yet)."""
        with self.errors():
            doc = self.meta.find_one({"_id": "face_seq"})
        return int(doc["value"]) if doc else 0

    def unassigned(self, fields: dict[str, int], query: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """The faces that belong to nobody (matching ``query``), with ``fields``, not those the
        user called not a face. Those are left out here, not by ``ignored: {$ne: true}``: with it
        the embedded server reads every face instead of the person index."""
        with self.errors():
            for d in self.faces.find({**(query or {}), "person_id": None}, fields):
                if not d.get("ignored"):
                    yield d

    def set_persons(self, moves: dict[str | None, list[str]], update: dict[str, dict[str, Any]] | None = None) -> None:
        """Put each list of faces in its person (None: unassigned), with ``update``'s other
        changes: every change of a stored face's person goes through here. The faces are first
        noted in `face_moves` (numbered like new faces), so that a start from the face snapshot
        reads their person again; a crash between the note and the change leaves a note too
        many, never one too few. One note and one bulk write per 10,000 faces."""
        pairs = [(pid, fid) for pid, fids in sorted(moves.items(), key=lambda kv: kv[0] or "") for fid in fids]
        for start in range(0, len(pairs), 10_000):
            part = pairs[start : start + 10_000]
            seq = self.next_seq(1)
            ops: list[UpdateMany] = []
            by_person: dict[str | None, list[str]] = {}
            for pid, fid in part:
                by_person.setdefault(pid, []).append(fid)
            for pid, fids in by_person.items():
                change = {op: dict(fields) for op, fields in (update or {}).items()}
                change.setdefault("$set", {})["person_id"] = pid
                ops += [
                    UpdateMany({"_id": {"$in": fids[i : i + IN_BATCH]}}, change) for i in range(0, len(fids), IN_BATCH)
                ]
            with self.errors():
                self.face_moves.insert_one({"_id": seq, "faces": [fid for _, fid in part], "at": datetime.now(UTC)})
                self.faces.bulk_write(ops, ordered=False)

    def _persons_changed(self, person_ids: Iterable[str]) -> None:
        ids = sorted(set(person_ids))
        version = uuid.uuid4().hex
        change = {"version": version, "ids": ids if len(ids) <= CHANGES_LISTED else None}
        with self.errors():
            self.meta.update_one(
                {"_id": "persons"},
                {"$set": {"version": version}, "$push": {"log": {"$each": [change], "$slice": -CHANGES_KEPT}}},
                upsert=True,
            )
