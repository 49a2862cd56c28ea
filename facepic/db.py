"""MongoDB: the `images`, `faces`, `persons`, `folders` and `meta` collections, and the notes
(`face_moves`), snapshots (`face_snapshots`) and staged faces (`faces_next`) kept beside them.

`Library` is the only code that touches them: everything else calls its methods, each named
by what it does (tests/test_routing.py checks that no other module takes a collection).

Every write is an upsert keyed by a content-derived id, so replaying a step changes nothing.
Embeddings are stored as little-endian float32 bytes (2 KiB a face), not as lists of doubles.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, MongoClient, ReturnDocument, UpdateMany, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)

from facepic import storage as storage_keys
from facepic.documents import embedding_from_bson, embedding_to_bson, image_faces, new_person, photo_date  # noqa: F401 - re-exported
from facepic.errors import FacePicError
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
)
UNDO_KEPT = 100  # corrections the undo log keeps, the latest

# Ids per `$in` when looking faces up by id: some servers (the embedded one) slow down
# faster than the list grows (5,000 ids in one `$in` cost 40 s on a million faces there).
IN_BATCH = 100
CHANGES_KEPT = 50  # changes to persons the library lists for the page (``persons_changes``)
CHANGES_LISTED = 500  # persons one listed change names; more: "read them all again"

# The `meta` document that describes the index worker's face snapshot (see facepic/snapshot.py).
SNAPSHOT_META_ID = "face_snapshot"


class DatabaseError(FacePicError):
    """MongoDB refused the request; the message holds no secret."""


class DatabaseUnavailable(DatabaseError):
    """MongoDB could not be reached: worth retrying."""

    setting = "mongodb_uri"  # what the user checks: the CLI names it and where it came from


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


class Library:
    """FacePic's metadata in one MongoDB database."""

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

    def ensure_indexes(self) -> None:
        with self.errors():
            self.images.create_index([("sha256", ASCENDING)], unique=True)
            self.images.create_index([("folder_id", ASCENDING)])
            self.images.create_index([("root", ASCENDING), ("path", ASCENDING)])
            self.images.create_index([("xmp_pending", ASCENDING)])  # every settle asks for these
            # The photo search: a person's photos (the photo's own face list), newest first.
            self.images.create_index([("faces.person_id", ASCENDING)])
            self.images.create_index([("taken_at", ASCENDING)])
            self.faces.create_index([("image_id", ASCENDING)])
            self.faces.create_index([("person_id", ASCENDING)])
            self.faces.create_index([("model", ASCENDING), ("person_id", ASCENDING)])
            self.faces.create_index([("model", ASCENDING), ("seq", ASCENDING)])
            self.face_moves.create_index([("at", ASCENDING)])
            self.folders.create_index([("parent_id", ASCENDING)])

    # --- the library's model -------------------------------------------------

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

    # --- folders and images --------------------------------------------------

    def upsert_folders(self, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        with self.errors():
            self.folders.bulk_write(
                [UpdateOne({"_id": d["_id"]}, {"$setOnInsert": d}, upsert=True) for d in docs],
                ordered=False,
            )

    def upsert_images(self, docs: list[dict[str, Any]]) -> None:
        """Store photos' documents: inserted when new (the common case, and the cheaper write),
        else updated in place, keeping when they were first stored."""
        now = now_iso()
        with self.errors():
            self._insert_else(
                self.images,
                [{**d, "created_at": now, "updated_at": now} for d in docs],
                lambda d: UpdateOne(
                    {"_id": d["_id"]},
                    {"$set": {k: v for k, v in d.items() if k != "created_at"}, "$setOnInsert": {"created_at": now}},
                    upsert=True,
                ),
            )

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

    def set_image_fields(self, image_id: str, fields: dict[str, Any]) -> None:
        with self.errors():
            self.images.update_one({"_id": image_id}, {"$set": {**fields, "updated_at": now_iso()}})

    def image(self, image_id: str) -> dict[str, Any] | None:
        with self.errors():
            return self.images.find_one({"_id": image_id})

    def images_at(self, places: Sequence[tuple[str, str]], other_than: Sequence[str]) -> list[dict[str, Any]]:
        """The photos stored at these (root, path) places under an id not in ``other_than``:
        older versions of files whose content changed since."""
        # One root and a list of paths a read, on the (root, path) index: an $or of pairs with a
        # $nin made the embedded server scan every photo, for every batch the index stage stored
        # (0.9 s a batch at 2,000 photos, and growing with the library).
        by_root: dict[str, list[str]] = {}
        for root, path in places:
            by_root.setdefault(root, []).append(path)
        keep = set(other_than)
        found: list[dict[str, Any]] = []
        fields = {"root": 1, "path": 1, "sha256": 1, "keys": 1}
        with self.errors():
            for root, paths in sorted(by_root.items()):
                for start in range(0, len(paths), IN_BATCH):
                    query = {"root": root, "path": {"$in": paths[start : start + IN_BATCH]}}
                    found += (d for d in self.images.find(query, fields) if d["_id"] not in keep)
        return found

    def faces_of_images(self, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The faces of these photos, without embeddings."""
        with self.errors():
            return list(self.faces.find({"image_id": {"$in": list(image_ids)}}, {"embedding": 0}))

    def delete_images(self, image_ids: Sequence[str]) -> None:
        """Delete these photos and their faces; the faces first, so that a retry after a crash
        in between still finds the photo and finishes."""
        ids = list(image_ids)
        with self.errors():
            self.faces.delete_many({"image_id": {"$in": ids}})
            self.images.delete_many({"_id": {"$in": ids}})

    # --- faces and persons -----------------------------------------------------

    def upsert_faces(self, docs: list[dict[str, Any]], stored: Iterable[str] | None = None) -> None:
        """Store faces with their person and sequence number; a replay leaves a stored face's
        person and number alone. ``stored``: the ids of ``docs`` known to be stored already
        (the others are inserted, the cheaper write; None: any may be)."""
        if not docs:
            return

        def upsert(d: dict[str, Any]) -> UpdateOne:
            fields = {k: v for k, v in d.items() if k not in ("_id", "person_id", "seq")}
            return UpdateOne(
                {"_id": d["_id"]},
                {"$set": fields, "$setOnInsert": {"person_id": d.get("person_id"), "seq": d.get("seq")}},
                upsert=True,
            )

        with self.errors():
            if stored is None:
                self.faces.bulk_write([upsert(d) for d in docs], ordered=True)
                return
            known = set(stored)
            again = [upsert(d) for d in docs if d["_id"] in known]
            if again:
                self.faces.bulk_write(again, ordered=True)
            self._insert_else(self.faces, [d for d in docs if d["_id"] not in known], upsert)

    def next_seq(self, count: int) -> int:
        """Reserve ``count`` face sequence numbers; returns the first. New faces are numbered
        in the order they are stored, so that a start can read only those after a snapshot."""
        with self.errors():
            doc = self.meta.find_one_and_update(
                {"_id": "face_seq"}, {"$inc": {"value": count}}, upsert=True, return_document=ReturnDocument.AFTER
            )
        assert doc is not None  # an upsert returning the document after it
        return int(doc["value"]) - count + 1

    def set_person(
        self, face_ids: Sequence[str], person_id: str | None, update: dict[str, dict[str, Any]] | None = None
    ) -> None:
        """Put faces in a person (None: unassigned), with ``update``'s other changes."""
        self.set_persons({person_id: list(face_ids)}, update)

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

    def current_seq(self) -> int:
        """The last face sequence number handed out (0: none yet)."""
        with self.errors():
            doc = self.meta.find_one({"_id": "face_seq"})
        return int(doc["value"]) if doc else 0

    def faces_of_image(self, image_id: str) -> list[dict[str, Any]]:
        with self.errors():
            return list(self.faces.find({"image_id": image_id}).sort("index", ASCENDING))

    def stored_persons(self, image_ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """The faces of these photos already stored (an earlier try), with their persons."""
        found: dict[str, dict[str, str | None]] = {}
        with self.errors():
            for i in range(0, len(image_ids), IN_BATCH):
                part = list(image_ids[i : i + IN_BATCH])
                for d in self.faces.find({"image_id": {"$in": part}}, {"image_id": 1, "person_id": 1}):
                    found.setdefault(d["image_id"], {})[d["_id"]] = d.get("person_id")
        return found

    def best_scores(self, person_ids: set[str]) -> dict[str, float]:
        """Cover quality of persons; a cover the user picked counts as unbeatable."""
        with self.errors():
            return {
                d["_id"]: math.inf if d.get("cover_locked") else float(d.get("best_score", -1.0))
                for d in self.persons.find({"_id": {"$in": sorted(person_ids)}}, {"best_score": 1, "cover_locked": 1})
            }

    def face_counts(self, person_ids: set[str]) -> dict[str, int]:
        """How many faces each of ``person_ids`` has (absent: none)."""
        with self.errors():
            return {
                d["_id"]: d["n"]
                for d in self.faces.aggregate(
                    [
                        {"$match": {"person_id": {"$in": sorted(person_ids)}}},
                        {"$group": {"_id": "$person_id", "n": {"$sum": 1}}},
                    ]
                )
            }

    def update_persons(
        self,
        model: str,
        founders: dict[str, str],
        covers: dict[str, dict[str, Any]],
        added: dict[str, int],
        recount: set[str],
    ) -> None:
        """Create new persons, set new covers, and count faces: ``added`` are faces inserted
        just now (counted by increment), ``recount`` persons whose faces a replayed photo
        touched (counted again from the faces, so that a replay cannot count twice)."""
        touched = set(added) | set(recount) | set(covers)
        if not touched:
            return
        counts = self.face_counts(recount) if recount else {}
        now = now_iso()
        ops: list[UpdateOne] = []
        bumps: dict[int, list[str]] = {}  # persons that only gain faces, by how many
        for pid in sorted(touched):
            fields: dict[str, Any] = {"updated_at": now}
            change: dict[str, Any] = {"$set": fields}
            if pid in recount:
                fields["face_count"] = counts.get(pid, 0)
            elif added.get(pid):
                if pid not in covers and pid not in founders:
                    bumps.setdefault(added[pid], []).append(pid)
                    continue
                change["$inc"] = {"face_count": added[pid]}
            if pid in covers:
                fields.update(
                    best_face_id=covers[pid]["_id"], best_score=covers[pid]["quality"]["value"], cover_uploaded=False
                )
            # A new person's fields, less those the count and cover set.
            change["$setOnInsert"] = {
                k: v for k, v in new_person(model, now, founders.get(pid)).items() if k not in fields
            }
            ops.append(UpdateOne({"_id": pid}, change, upsert=True))
        with self.errors():
            for n, pids in bumps.items():  # one write for all persons that gain n faces
                change = {"$inc": {"face_count": n}, "$set": {"updated_at": now}}
                if self.persons.update_many({"_id": {"$in": pids}}, change).matched_count < len(pids):
                    # A person gone meanwhile (merged, settled into another): made again, as an
                    # upsert would, so that no face points at nobody.
                    there = {d["_id"] for d in self.persons.find({"_id": {"$in": pids}}, {"_id": 1})}
                    again = {**change, "$setOnInsert": new_person(model, now, None)}
                    ops += [UpdateOne({"_id": pid}, again, upsert=True) for pid in sorted(set(pids) - there)]
            if ops:
                self.persons.bulk_write(ops, ordered=False)
        self._persons_changed(touched)

    def persons_without_uploaded_cover(self, person_ids: list[str]) -> list[str]:
        with self.errors():
            return [
                d["_id"]
                for d in self.persons.find(
                    {"_id": {"$in": list(person_ids)}, "cover_uploaded": {"$ne": True}}, {"_id": 1}
                )
            ]

    def mark_covers_uploaded(self, person_ids: list[str]) -> None:
        if person_ids:
            with self.errors():
                self.persons.update_many({"_id": {"$in": person_ids}}, {"$set": {"cover_uploaded": True}})

    def counts(self) -> dict[str, int]:
        with self.errors():
            return {
                "images": self.images.estimated_document_count(),
                "faces": self.faces.estimated_document_count(),
                "persons": self.persons.estimated_document_count(),
                "folders": self.folders.estimated_document_count(),
            }

    def drop_all(self) -> None:
        """Drop every collection FacePic makes (staged re-embedding data included), and no other."""
        with self.errors():
            for name in COLLECTIONS:
                self.db[name].drop()

    def unassigned_faces(self) -> int:
        """Faces that belong to nobody yet (those the user called not a face aside)."""
        with self.errors():
            return self.faces.count_documents({"person_id": None, "ignored": {"$ne": True}})

    def images_to_reembed(self, model: str) -> int:
        """Photos not staged for ``model`` yet."""
        with self.errors():
            return self.images.count_documents({"reembed": {"$ne": model}})

    def staged_faces(self) -> int:
        """Faces staged by `reembed --no-switch` and not switched yet."""
        with self.errors():
            return self.db["faces_next"].estimated_document_count() + self.faces.count_documents(
                {"next": {"$exists": True}}
            )

    def object_keys(self) -> set[str]:
        """Every bucket key this library recorded: originals, thumbnails, person covers."""
        keys: set[str] = set()
        with self.errors():
            for doc in self.images.find({"keys": {"$ne": None}}, {"keys": 1}):
                keys.update(v for v in (doc.get("keys") or {}).values() if isinstance(v, str))
            for doc in self.persons.find({}, {"_id": 1}):
                keys.add(storage_keys.person_key(doc["_id"]))
        return keys

    # --- looking persons and faces up --------------------------------------------------

    def person(self, person_id: str) -> dict[str, Any] | None:
        with self.errors():
            return self.persons.find_one({"_id": person_id})

    def persons_by_id(self, person_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of ``person_ids``, by id (``IN_BATCH`` ids a read)."""
        wanted = list(person_ids)
        out: dict[str, dict[str, Any]] = {}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                out.update((d["_id"], d) for d in self.persons.find({"_id": {"$in": wanted[start : start + IN_BATCH]}}))
        return out

    def persons_named(self, name: str, other_than: str | None = None) -> list[dict[str, Any]]:
        """Persons called ``name`` (case-insensitive), less ``other_than``."""
        query: dict[str, Any] = {"name": {"$ne": ""}}
        if other_than is not None:
            query["_id"] = {"$ne": other_than}
        with self.errors():
            return [d for d in self.persons.find(query) if d.get("name", "").lower() == name.lower()]

    def persons_with_prefix(self, prefix: str, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` persons (by id) whose id starts with ``prefix``."""
        with self.errors():
            return list(self.persons.find(self._id_prefix(prefix)).sort("_id", ASCENDING).limit(limit))

    def count_persons_with_prefix(self, prefix: str) -> int:
        with self.errors():
            return self.persons.count_documents(self._id_prefix(prefix))

    @staticmethod
    def _id_prefix(prefix: str) -> dict[str, Any]:
        return {"_id": {"$regex": "^" + re.escape(prefix)}}

    # --- settling (facepic.settle) ------------------------------------------------------

    def settle_mark(self) -> dict[str, Any]:
        """Up to which face number the library was settled, and on which model."""
        with self.errors():
            return self.meta.find_one({"_id": SETTLE_META_ID}) or {}

    def set_settle_mark(self, model: str, seq: int) -> None:
        with self.errors():
            self.meta.replace_one({"_id": SETTLE_META_ID}, {"model": model, "seq": seq}, upsert=True)

    def unassigned_state(self) -> dict[str, Any]:
        """What the unassigned faces are, as far as a later look needs to tell whether they
        changed: the library's epoch (every change bumps it), its last face number, their count."""
        return {"epoch": self.epoch_and_revision(), "seq": self.current_seq(), "unassigned": self.unassigned_faces()}

    def recluster_mark(self) -> dict[str, Any]:
        """What the last `recluster` left (``unassigned_state``) and how many faces it placed."""
        with self.errors():
            return self.meta.find_one({"_id": RECLUSTER_META_ID}, {"_id": 0}) or {}

    def set_recluster_mark(self, placed: int) -> None:
        mark = {**self.unassigned_state(), "placed": placed}
        with self.errors():
            self.meta.replace_one({"_id": RECLUSTER_META_ID}, mark, upsert=True)

    def faces_to_settle(
        self, model: str, after_seq: int | None, upto_seq: int, unassigned: bool = True
    ) -> list[dict[str, Any]]:
        """Faces of ``model`` numbered in (after_seq, upto_seq] (None: every face), then (with
        ``unassigned``) the unassigned ones not among them, each without box, landmarks or quality.
        Faces the user called not a face (``ignored``) are never settled."""
        fields = {"landmarks": 0, "box": 0, "quality": 0}
        query: dict[str, Any] = {"model": model, "ignored": {"$ne": True}}
        if after_seq is not None:
            query["seq"] = {"$gt": after_seq, "$lte": upto_seq}
        with self.errors():
            docs = list(self.faces.find(query, fields).sort("_id", 1))
            if after_seq is not None and docs and unassigned:
                fresh = {d["_id"] for d in docs}
                docs += [
                    d
                    for d in self.faces.find(
                        {"model": model, "person_id": None, "ignored": {"$ne": True}}, fields
                    ).sort("_id", 1)
                    if d["_id"] not in fresh
                ]
        return docs

    def persons_of_the_user(self) -> set[str]:
        """Persons the user made, named, merged, picked a cover for or hid."""
        with self.errors():
            return {
                d["_id"]
                for d in self.persons.find(
                    {"$or": [{"user_locked": True}, {"cover_locked": True}, {"hidden": True}]}, {"_id": 1}
                )
            }

    def constraining_faces(self, person_ids: Sequence[str], image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Faces of ``person_ids`` that constrain a merge: in one of ``image_ids``, rejecting
        someone, or placed by the user."""
        out: list[dict[str, Any]] = []
        ids = list(person_ids)
        with self.errors():
            for start in range(0, len(ids), IN_BATCH):
                out += self.faces.find(
                    {
                        "person_id": {"$in": ids[start : start + IN_BATCH]},
                        "$or": [
                            {"image_id": {"$in": sorted(image_ids)}},
                            {"rejected.0": {"$exists": True}},
                            {"locked": True},
                        ],
                    },
                    {"image_id": 1, "person_id": 1, "rejected": 1, "locked": 1},
                )
        return out

    def faces_of_persons(self, person_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Every face of ``person_ids`` with its embedding (no box, landmarks or quality)."""
        with self.errors():
            return list(
                self.faces.find(
                    {"person_id": {"$in": list(person_ids)}}, {"landmarks": 0, "box": 0, "quality": 0}
                ).sort("_id", 1)
            )

    def count_faces_of_model(self, model: str) -> int:
        with self.errors():
            return self.faces.count_documents({"model": model})

    def images_of_faces(self, face_ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        with self.errors():
            for start in range(0, len(face_ids), IN_BATCH):
                part = list(face_ids[start : start + IN_BATCH])
                out.update(f["image_id"] for f in self.faces.find({"_id": {"$in": part}}, {"image_id": 1}))
        return out

    def faces_with_images(self, person_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The ids, persons and photos of the faces of ``person_ids``."""
        wanted = sorted(set(person_ids))
        out: list[dict[str, Any]] = []
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"person_id": {"$in": wanted[start : start + IN_BATCH]}}
                out += self.faces.find(query, {"_id": 1, "image_id": 1, "person_id": 1})
        return out

    def faces_to_name(self, face_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of ``face_ids`` with their photo, person and constraints, by id."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(face_ids)
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"_id": {"$in": wanted[start : start + IN_BATCH]}}
                projection = {"image_id": 1, "person_id": 1, "rejected": 1, "locked": 1}
                found.update((d["_id"], d) for d in self.faces.find(query, projection))
        return found

    def faces_to_correct(self, face_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of ``face_ids`` with what a correction changes and keeps, by id."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(face_ids)
        projection = {"image_id": 1, "person_id": 1, "rejected": 1, "not_same": 1, "locked": 1, "ignored": 1}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                found.update(
                    (d["_id"], d)
                    for d in self.faces.find({"_id": {"$in": wanted[start : start + IN_BATCH]}}, projection)
                )
        return found

    def person_faces_in_images(self, person_id: str, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The faces of ``person_id`` in these photos (id and photo)."""
        wanted = sorted(set(image_ids))
        out: list[dict[str, Any]] = []
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"person_id": person_id, "image_id": {"$in": wanted[start : start + IN_BATCH]}}
                out += self.faces.find(query, {"image_id": 1})
        return out

    def images_with_names_to_apply(self) -> list[dict[str, Any]]:
        """Photos whose imported (XMP) names are not yet applied: their ids and ``xmp_names``."""
        with self.errors():
            return list(self.images.find({"xmp_pending": True}, {"xmp_names": 1}).sort("_id", ASCENDING))

    def set_names_applied(self, image_ids: Sequence[str]) -> None:
        """The photos' imported names are applied (corrections now)."""
        with self.errors():
            for start in range(0, len(image_ids), IN_BATCH):
                part = list(image_ids[start : start + IN_BATCH])
                self.images.update_many({"_id": {"$in": part}}, {"$set": {"xmp_pending": False}})

    def images_with_named_faces(self) -> Iterator[dict[str, Any]]:
        """Photos with a face in a named person, or whose XMP sidecar FacePic wrote before
        (``xmp_exported``), with their faces: what `facepic xmp export` writes."""
        with self.errors():
            named = [d["_id"] for d in self.persons.find({"name": {"$nin": ["", None]}}, {"_id": 1})]
            image_ids: set[str] = set()
            for start in range(0, len(named), IN_BATCH):
                query = {"person_id": {"$in": named[start : start + IN_BATCH]}}
                image_ids.update(f["image_id"] for f in self.faces.find(query, {"image_id": 1}))
            image_ids.update(
                d["_id"] for d in self.images.find({"xmp_exported": {"$exists": True, "$ne": []}}, {"_id": 1})
            )
            ordered = sorted(image_ids)
            for start in range(0, len(ordered), IN_BATCH):
                yield from self.images.find({"_id": {"$in": ordered[start : start + IN_BATCH]}}).sort("_id", ASCENDING)

    def names_of_persons(self) -> dict[str, str]:
        """Every named person's name, by id."""
        with self.errors():
            return {d["_id"]: d["name"] for d in self.persons.find({"name": {"$nin": ["", None]}}, {"name": 1})}

    def user_locked_person_ids(self) -> set[str]:
        """Persons the user made or named: never deleted, split or merged away."""
        with self.errors():
            return {d["_id"] for d in self.persons.find({"user_locked": True}, {"_id": 1})}

    def person_count(self) -> int:
        with self.errors():
            return self.persons.count_documents({})

    def recurring_person_count(self) -> int:
        """Persons of two faces or more (settling's floor follows them)."""
        with self.errors():
            return self.persons.count_documents({"face_count": {"$gte": 2}})

    def all_persons(self) -> Iterator[dict[str, Any]]:
        with self.errors():
            yield from self.persons.find({})

    def face(self, face_id: str) -> dict[str, Any] | None:
        """A face without its embedding."""
        with self.errors():
            return self.faces.find_one({"_id": face_id}, {"embedding": 0})

    def person_face_in_image(self, image_id: str, person_id: str, other_than: str) -> dict[str, Any] | None:
        """A face of ``person_id`` in the photo, other than the face ``other_than``."""
        with self.errors():
            return self.faces.find_one({"image_id": image_id, "person_id": person_id, "_id": {"$ne": other_than}})

    def faces_for_merge(self, target_id: str, source_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The sources' faces, and those of the target that reject the target or a source."""
        one = sorted({target_id, *source_ids})
        with self.errors():
            return list(
                self.faces.find(
                    {
                        "$or": [
                            {"person_id": {"$in": list(source_ids)}},
                            {"person_id": target_id, "rejected": {"$in": one}},
                        ]
                    },
                    {"image_id": 1, "rejected": 1, "not_same": 1, "locked": 1, "person_id": 1},
                )
            )

    def faces_of_model(self, model: str) -> Iterator[dict[str, Any]]:
        """Every face of ``model`` by id, without landmarks and box (what recluster reads); not
        those the user called not a face."""
        query = {"model": model, "ignored": {"$ne": True}}
        with self.errors():
            yield from self.faces.find(query, {"landmarks": 0, "box": 0}).sort("_id", ASCENDING)

    def assigned_faces(self) -> Iterator[dict[str, Any]]:
        """Every face in a person, without its embedding."""
        with self.errors():
            yield from self.faces.find({"person_id": {"$ne": None}}, {"embedding": 0})

    def image_places(self) -> dict[str, dict[str, Any]]:
        """Every photo's path, import root and object keys, by id."""
        with self.errors():
            return {d["_id"]: d for d in self.images.find({}, {"path": 1, "root": 1, "keys": 1})}

    # --- corrections and recluster ------------------------------------------------------

    def bump_revision(self) -> None:
        """Persons changed outside the index worker: its caches of them must be dropped."""
        with self.errors():
            self.meta.update_one({"_id": "library"}, {"$set": {"revision": uuid.uuid4().hex}}, upsert=True)

    def refresh_image_faces(self, image_ids: Iterable[str]) -> None:
        """Rewrite the redundant face list of each photo from the faces collection: one read
        and one bulk write per ``IN_BATCH`` photos."""
        wanted = sorted(set(image_ids))
        fields = {"person_id": 1, "box": 1, "score": 1, "image_id": 1, "index": 1}
        now = now_iso()
        for start in range(0, len(wanted), IN_BATCH):
            part = wanted[start : start + IN_BATCH]
            of: dict[str, list[dict[str, Any]]] = {i: [] for i in part}
            with self.errors():
                for f in self.faces.find({"image_id": {"$in": part}}, fields):
                    of[f["image_id"]].append(f)
                ops = [
                    UpdateOne(
                        {"_id": i},
                        {
                            "$set": {
                                "faces": image_faces(sorted(fs, key=lambda f: f.get("index", 0))),
                                "updated_at": now,
                            }
                        },
                    )
                    for i, fs in of.items()
                ]
                self.images.bulk_write(ops, ordered=False)

    def faces_by_person(self, person_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The faces of each of ``person_ids`` (id, quality, detection score), to count them and
        choose covers: one read per ``IN_BATCH`` persons."""
        wanted = sorted(set(person_ids))
        out: dict[str, list[dict[str, Any]]] = {}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"person_id": {"$in": wanted[start : start + IN_BATCH]}}
                for f in self.faces.find(query, {"person_id": 1, "quality": 1, "score": 1}):
                    out.setdefault(f["person_id"], []).append(f)
        return out

    def persons_with_faces_outside(self, person_ids: Sequence[str], face_ids: set[str]) -> set[str]:
        """Those of ``person_ids`` that have a face not in ``face_ids``."""
        wanted = sorted(set(person_ids))
        out: set[str] = set()
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                query = {"person_id": {"$in": wanted[start : start + IN_BATCH]}}
                out.update(f["person_id"] for f in self.faces.find(query, {"person_id": 1}) if f["_id"] not in face_ids)
        return out

    def write_persons(
        self, changes: dict[str, tuple[dict[str, Any], dict[str, Any] | None]], gone: Sequence[str]
    ) -> None:
        """Set fields of persons (with the fields of a new one where it is missing: ``(set,
        insert)``) and delete ``gone``, in one bulk write each."""
        ops = [
            UpdateOne(
                {"_id": pid}, {"$set": fields, **({"$setOnInsert": insert} if insert else {})}, upsert=bool(insert)
            )
            for pid, (fields, insert) in sorted(changes.items())
        ]
        with self.errors():
            for start in range(0, len(ops), 1000):
                self.persons.bulk_write(ops[start : start + 1000], ordered=False)
            for start in range(0, len(gone), IN_BATCH):
                self.persons.delete_many({"_id": {"$in": list(gone[start : start + IN_BATCH])}})
        self._persons_changed([*changes, *gone])

    def new_person_if_missing(self, person_id: str, doc: dict[str, Any]) -> None:
        """Create the person with ``doc`` (from `documents.new_person`) unless it exists."""
        with self.errors():
            self.persons.update_one({"_id": person_id}, {"$setOnInsert": doc}, upsert=True)
        self._persons_changed([person_id])

    def set_person_fields(self, person_id: str, fields: dict[str, Any]) -> None:
        with self.errors():
            self.persons.update_one({"_id": person_id}, {"$set": fields})
        self._persons_changed([person_id])

    def set_persons_fields(self, person_ids: Sequence[str], fields: dict[str, Any]) -> None:
        with self.errors():
            self.persons.update_many({"_id": {"$in": list(person_ids)}}, {"$set": fields})
        self._persons_changed(person_ids)

    def delete_person(self, person_id: str) -> None:
        with self.errors():
            self.persons.delete_one({"_id": person_id})
        self._persons_changed([person_id])

    def reject_for(self, absorbed_ids: Sequence[str], target_id: str) -> None:
        """Every face that rejects one of ``absorbed_ids`` rejects ``target_id`` too (it took
        them in, by a merge or a recluster)."""
        self.reject_for_each({a: target_id for a in absorbed_ids})

    def reject_for_each(self, absorbed_by: dict[str, str]) -> None:
        """`reject_for` for many (absorbed -> target) at once: one bulk write. A face answered
        "not the same" as an absorbed person (``not_same``) is answered so as the target too."""
        ops = [
            UpdateMany({"rejected": gone}, {"$addToSet": {"rejected": kept}})
            for gone, kept in sorted(absorbed_by.items())
        ]
        with self.errors():
            for start in range(0, len(ops), 1000):
                self.faces.bulk_write(ops[start : start + 1000], ordered=True)
            # One read for every absorbed person (few faces carry an answer), then by id.
            answered = list(self.faces.find({"not_same": {"$in": sorted(absorbed_by)}}, {"not_same": 1}))
            carried = [
                UpdateOne({"_id": f["_id"]}, {"$addToSet": {"not_same": {"$each": kept}}})
                for f in answered
                if (kept := sorted({absorbed_by[p] for p in f["not_same"] if p in absorbed_by}))
            ]
            for start in range(0, len(carried), 1000):
                self.faces.bulk_write(carried[start : start + 1000], ordered=False)

    def add_not_same(self, face_ids: Sequence[str], person_id: str) -> None:
        """``face_ids`` were answered "not the same" as ``person_id``: they reject it."""
        wanted = list(face_ids)
        change = {"$addToSet": {"rejected": person_id, "not_same": person_id}}
        with self.errors():
            for start in range(0, len(wanted), IN_BATCH):
                self.faces.update_many({"_id": {"$in": wanted[start : start + IN_BATCH]}}, change)

    def forget_rejections(self, face_ids: Sequence[str], person_ids: Sequence[str]) -> None:
        """``face_ids`` no longer reject any of ``person_ids`` (nor were answered "not the same")."""
        gone = {"$in": sorted(person_ids)}
        with self.errors():
            self.faces.update_many({"_id": {"$in": list(face_ids)}}, {"$pull": {"rejected": gone, "not_same": gone}})

    # --- facepic check ---------------------------------------------------------------------

    def faces_for_check(self) -> Iterator[dict[str, Any]]:
        """Every face's links and order, without embedding, box or landmarks."""
        with self.errors():
            yield from self.faces.find({}, {"person_id": 1, "image_id": 1, "index": 1, "box": 1, "score": 1})

    def images_for_check(self) -> Iterator[dict[str, Any]]:
        """Every photo's path, model and face list."""
        with self.errors():
            yield from self.images.find({}, {"path": 1, "root": 1, "model": 1, "faces": 1})

    def delete_faces(self, face_ids: Sequence[str]) -> None:
        with self.errors():
            for start in range(0, len(face_ids), IN_BATCH):
                self.faces.delete_many({"_id": {"$in": list(face_ids[start : start + IN_BATCH])}})

    # --- pending changes (facepic.changes) --------------------------------------------------

    def store_change_part(self, change_id: str, n: int, body: str) -> None:
        with self.errors():
            self.change_part_docs.replace_one(
                {"_id": f"{change_id}:{n}"},
                {"change": change_id, "n": n, "body": body, "at": datetime.now(UTC)},
                upsert=True,
            )

    def store_change_head(self, head: dict[str, Any]) -> None:
        """The one write that makes a stored change pending."""
        with self.errors():
            self.changes.insert_one(head)

    def change_heads(self) -> list[dict[str, Any]]:
        with self.errors():
            return list(self.changes.find({}).sort("at", ASCENDING))

    def change_bodies(self, change_id: str, parts: int) -> list[str]:
        with self.errors():
            found = {d["n"]: d["body"] for d in self.change_part_docs.find({"change": change_id})}
        if sorted(found) != list(range(parts)):
            raise DatabaseError(f"the pending change {change_id} is missing parts (it cannot be finished)")
        return [found[n] for n in range(parts)]

    def drop_change(self, change_id: str) -> None:
        """The change is done: its head first (it is no longer pending), then its parts."""
        with self.errors():
            self.changes.delete_one({"_id": change_id})
            self.change_part_docs.delete_many({"change": change_id})

    def drop_orphan_change_parts(self, pending: set[str], older_than: datetime) -> None:
        """Parts of changes that never became pending (their maker died before the head)."""
        with self.errors():
            self.change_part_docs.delete_many({"change": {"$nin": sorted(pending)}, "at": {"$lt": older_than}})

    # --- the undo log (facepic.persons.undo_last) --------------------------------------------

    def log_correction(self, entry: dict[str, Any]) -> None:
        """Keep what a correction changes as it was before (ids sort by time); the oldest
        beyond UNDO_KEPT go."""
        with self.errors():
            self.undo_log.replace_one({"_id": entry["_id"]}, entry, upsert=True)
            old = [d["_id"] for d in self.undo_log.find({}, {"_id": 1}).sort("_id", -1).skip(UNDO_KEPT)]
            if old:
                self.undo_log.delete_many({"_id": {"$in": old}})

    def last_correction(self) -> dict[str, Any] | None:
        """The latest correction not undone yet."""
        with self.errors():
            found = list(self.undo_log.find({"undone": {"$ne": True}}).sort("_id", -1).limit(1))
        return found[0] if found else None

    def mark_undone(self, entry_id: str) -> None:
        with self.errors():
            self.undo_log.update_one({"_id": entry_id}, {"$set": {"undone": True}})

    def restore_faces(self, faces: list[dict[str, Any]]) -> None:
        """Put faces back as they were, in the fields each face's document names: its person
        (through `set_persons`), ``locked``, ``rejected``, ``not_same``, ``ignored``."""
        moves: dict[str | None, list[str]] = {}
        for f in faces:
            if "person_id" in f:
                moves.setdefault(f.get("person_id"), []).append(f["_id"])
        self.set_persons(moves)
        ops = []
        for f in faces:
            fields: dict[str, Any] = {k: bool(f[k]) for k in ("locked",) if k in f}
            fields.update({k: list(f[k] or []) for k in ("rejected", "not_same") if k in f})
            change: dict[str, Any] = {}
            if f.get("ignored"):
                fields["ignored"] = True
            elif "ignored" in f:
                change["$unset"] = {"ignored": ""}
            if fields:
                change["$set"] = fields
            if change:
                ops.append(UpdateOne({"_id": f["_id"]}, change))
        with self.errors():
            for start in range(0, len(ops), 1000):
                self.faces.bulk_write(ops[start : start + 1000], ordered=False)

    def faces_rejecting(self, person_ids: Sequence[str]) -> list[str]:
        """The faces that reject one of ``person_ids``."""
        with self.errors():
            return [d["_id"] for d in self.faces.find({"rejected": {"$in": sorted(person_ids)}}, {"_id": 1})]

    # --- re-embedding ---------------------------------------------------------------------

    def images_pending_reembed(self, model: str) -> list[dict[str, Any]]:
        """Photos not staged for ``model`` yet, by id."""
        with self.errors():
            return list(self.images.find({"reembed": {"$ne": model}}).sort("_id", ASCENDING))

    def face_boxes(self, image_id: str) -> list[dict[str, Any]]:
        """The photo's faces (id, box, index) in index order."""
        with self.errors():
            return list(self.faces.find({"image_id": image_id}, {"box": 1, "index": 1}).sort("index", ASCENDING))

    def stage_reembedding(
        self, image_id: str, model: str, staged: dict[str, dict[str, Any] | None], new_faces: list[dict[str, Any]]
    ) -> None:
        """Stage ``model``'s fields on the photo's faces (None: it does not find that face) and
        its new faces in `faces_next`; then mark the photo staged."""
        with self.errors():
            if staged:
                self.faces.bulk_write(
                    [UpdateOne({"_id": fid}, {"$set": {"next": fields}}) for fid, fields in staged.items()],
                    ordered=False,
                )
            for doc in new_faces:
                self.db["faces_next"].replace_one({"_id": doc["_id"]}, doc, upsert=True)
            self.images.update_one({"_id": image_id}, {"$set": {"reembed": model}})

    def switch_model(self, model: str, old_model: str | None) -> set[str]:
        """Make the staged faces the library's and ``model`` its model; the ids of the photos
        whose faces changed."""
        with self.errors():
            staged = list(self.faces.find({"next": {"$exists": True}}, {"next": 1, "image_id": 1}))
            ops = []
            for face in staged:
                nxt = face["next"]
                if nxt is None:  # the new model does not find it: keep its person, stop comparing it
                    ops.append(UpdateOne({"_id": face["_id"]}, {"$unset": {"next": ""}}))
                else:
                    ops.append(UpdateOne({"_id": face["_id"]}, {"$set": nxt, "$unset": {"next": "", "candidates": ""}}))
            for start in range(0, len(ops), 1000):
                self.faces.bulk_write(ops[start : start + 1000], ordered=False)
            extra = list(self.db["faces_next"].find({}))
            for doc in extra:
                self.faces.update_one({"_id": doc["_id"]}, {"$setOnInsert": {**doc, "person_id": None}}, upsert=True)
            self.meta.update_one(
                {"_id": "library"}, {"$set": {"model": model, "model_before": old_model, "reembedded_at": now_iso()}}
            )
            self.persons.update_many({}, {"$set": {"model": model}})
            self.images.update_many({}, {"$set": {"model": model}})
            self.db["faces_next"].drop()
            everyone = [d["_id"] for d in self.persons.find({}, {"_id": 1})]
        self._persons_changed(everyone)  # every person's faces have new embeddings
        return {f["image_id"] for f in staged} | {d["image_id"] for d in extra}

    # --- the index worker's face snapshot (its format: facepic/snapshot.py) ------------------

    def epoch_alone(self) -> str | None:
        """The library's epoch alone (changes only when it is wiped and begun again)."""
        with self.errors():
            doc = self.meta.find_one({"_id": "library"}, {"epoch": 1})
        return doc.get("epoch") if doc else None

    def snapshot_meta(self) -> dict[str, Any] | None:
        with self.errors():
            return self.meta.find_one({"_id": SNAPSHOT_META_ID})

    def snapshot_parts(self, generation: str) -> list[dict[str, Any]]:
        """The parts of one snapshot, in order."""
        with self.errors():
            return list(self.db["face_snapshots"].find({"generation": generation}).sort("part", ASCENDING))

    def add_snapshot_part(self, doc: dict[str, Any]) -> None:
        with self.errors():
            self.db["face_snapshots"].insert_one(doc)

    def commit_snapshot(self, meta: dict[str, Any]) -> None:
        """Make the snapshot ``meta`` describes (its parts all stored) the one in use, and drop
        the parts of every other."""
        with self.errors():
            self.meta.replace_one({"_id": SNAPSHOT_META_ID}, meta, upsert=True)
            self.db["face_snapshots"].delete_many({"generation": {"$ne": meta["generation"]}})

    def forget_snapshot(self) -> None:
        with self.errors():
            self.meta.delete_one({"_id": SNAPSHOT_META_ID})
            self.db["face_snapshots"].drop()

    def face_moves_since(self, seq: int, since: datetime) -> list[str]:
        """Faces noted as changing person after sequence number ``seq`` or at ``since`` or later."""
        with self.errors():
            notes = self.face_moves.find({"$or": [{"_id": {"$gt": seq}}, {"at": {"$gte": since}}]}, {"faces": 1})
            return list(dict.fromkeys(fid for note in notes for fid in note["faces"]))

    def drop_face_moves(self, through_seq: int, before: datetime) -> None:
        """Forget the notes numbered up to ``through_seq`` and made before ``before``."""
        with self.errors():
            self.face_moves.delete_many({"_id": {"$lte": through_seq}, "at": {"$lt": before}})

    def face_persons(self, face_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The person of each of ``face_ids`` (documents with ``person_id``), by id."""
        found: dict[str, dict[str, Any]] = {}
        ids = list(face_ids)
        with self.errors():
            for start in range(0, len(ids), IN_BATCH):
                part = ids[start : start + IN_BATCH]
                found.update((d["_id"], d) for d in self.faces.find({"_id": {"$in": part}}, {"person_id": 1}))
        return found

    def face_embeddings(self, model: str, after_seq: int | None = None) -> Iterator[dict[str, Any]]:
        """Id, person and embedding of the faces of ``model`` (numbered after ``after_seq``).
        The person is no condition here: one makes some servers scan the whole collection
        instead of the (model, seq) index."""
        query: dict[str, Any] = {"model": model}
        if after_seq is not None:
            query["seq"] = {"$gt": after_seq}
        with self.errors():
            yield from self.faces.find(query, {"_id": 1, "person_id": 1, "embedding": 1}, batch_size=10_000)

    # --- the web page's reads (facepic.web): pages of persons, faces and photos ----------

    def persons_changes(self) -> dict[str, Any]:
        """The persons' version, changed whenever a person is created, changed or deleted, and
        the last CHANGES_KEPT changes (``version``, ``ids``: the persons it touched, None for
        more than CHANGES_LISTED): the page reads only those persons again (``web.roster``)."""
        with self.errors():
            doc = self.meta.find_one({"_id": "persons"}, {"version": 1, "log": 1})
        return {"version": str((doc or {}).get("version") or ""), "log": list((doc or {}).get("log") or [])}

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

    def web_person_keys(self, person_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The sort and filter keys (name, face count, last change, hidden) of every person, or
        of those of ``person_ids`` that are stored (``IN_BATCH`` ids a read)."""
        fields = {"name": 1, "face_count": 1, "updated_at": 1, "hidden": 1}
        with self.errors():
            if person_ids is None:
                return list(self.persons.find({}, fields))
            wanted = sorted(set(person_ids))
            return [
                d
                for i in range(0, len(wanted), IN_BATCH)
                for d in self.persons.find({"_id": {"$in": wanted[i : i + IN_BATCH]}}, fields)
            ]

    def suggestion_persons(self, person_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """What "same person?" suggestions need of every person (or of those of ``person_ids``
        that are stored): name and hidden."""
        fields = {"name": 1, "hidden": 1}
        with self.errors():
            if person_ids is None:
                return list(self.persons.find({}, fields))
            wanted = sorted(set(person_ids))
            return [
                d
                for i in range(0, len(wanted), IN_BATCH)
                for d in self.persons.find({"_id": {"$in": wanted[i : i + IN_BATCH]}}, fields)
            ]

    def suggestion_faces(self, person_ids: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """The person, photo, rejections and embedding of every face in a person (or in one of
        ``person_ids``)."""
        fields = {"person_id": 1, "image_id": 1, "rejected": 1, "embedding": 1}
        with self.errors():
            if person_ids is None:
                yield from self.faces.find({"person_id": {"$ne": None}}, fields, batch_size=10_000)
                return
            wanted = sorted(set(person_ids))
            for i in range(0, len(wanted), IN_BATCH):
                yield from self.faces.find({"person_id": {"$in": wanted[i : i + IN_BATCH]}}, fields)

    def web_person(self, person_id: str) -> dict[str, Any] | None:
        with self.errors():
            return self.persons.find_one({"_id": person_id})

    def web_persons_by_id(self, person_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted({p for p in person_ids if p})
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                for doc in self.persons.find(
                    {"_id": {"$in": wanted[i : i + IN_BATCH]}},
                    {"name": 1, "face_count": 1, "hidden": 1, "best_face_id": 1},
                ):
                    found[doc["_id"]] = doc
        return found

    def web_face_photos(self, person_id: str) -> list[dict[str, Any]]:
        """Every face of a person: its id and its photo's, nothing more (to order them by date)."""
        with self.errors():
            return list(self.faces.find({"person_id": person_id}, {"image_id": 1}))

    def web_photo_dates(self, image_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The photos' ``taken_at``, ``file_time`` and ``path``, by id."""
        wanted = sorted(set(image_ids))
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                for doc in self.images.find(
                    {"_id": {"$in": wanted[i : i + IN_BATCH]}}, {"taken_at": 1, "file_time": 1, "path": 1}
                ):
                    found[doc["_id"]] = doc
        return found

    def web_faces(self, face_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The faces (without embeddings) in the order given; those not stored left out."""
        wanted = sorted(set(face_ids))
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                query = {"_id": {"$in": wanted[i : i + IN_BATCH]}}
                found.update((d["_id"], d) for d in self.faces.find(query, {"embedding": 0, "landmarks": 0}))
        return [found[f] for f in face_ids if f in found]

    def web_unassigned(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the faces that belong to nobody, ambiguous ones (with candidates) first."""
        # Their ids and candidates in one read, counted and ordered here, then the page's
        # faces by id: the embedded server counted, then sorted, every whole face (with its
        # embedding) again for each page (260 ms for 2,000 faces; this takes 70).
        with self.errors():
            rows = list(self.faces.find({"person_id": None, "ignored": {"$ne": True}}, {"candidates": 1}))
        rows.sort(key=lambda d: d["_id"])
        rows.sort(key=lambda d: max((c for c in d.get("candidates") or [] if c), default=""), reverse=True)
        return self.web_faces([d["_id"] for d in rows[skip : skip + limit]]), len(rows)

    def web_images(self, image_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted(set(image_ids))
        found: dict[str, dict[str, Any]] = {}
        with self.errors():
            for i in range(0, len(wanted), IN_BATCH):
                for doc in self.images.find({"_id": {"$in": wanted[i : i + IN_BATCH]}}, {"faces": 0}):
                    found[doc["_id"]] = doc
        return found

    def web_photos_with(
        self,
        person_ids: Sequence[str],
        skip: int,
        limit: int,
        since: str | None = None,
        until: str | None = None,
        folder: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the photos holding every one of ``person_ids``, newest first, and how many;
        only those dated (``photo_date``: taken, else the file's time) from ``since`` through
        ``until`` (YYYY-MM-DD), and under ``folder`` (a path relative to the import root)."""
        # Each person's photos from the faces, intersected here: the embedded database
        # (SecantusDB) uses an index only for a lone equality, and scanned every photo for
        # an $and of two (400 ms at 21,000 photos; this takes a few).
        common: set[str] | None = None
        with self.errors():
            for pid in sorted(set(person_ids)):
                mine = {f["image_id"] for f in self.faces.find({"person_id": pid}, {"image_id": 1})}
                common = mine if common is None else common & mine
                if not common:
                    return [], 0
        prefix = (folder or "").strip("/")
        keyed = []
        for image_id, doc in self.web_photo_dates(sorted(common or ())).items():
            date = (photo_date(doc)[0] or "")[:10]
            path = doc.get("path") or ""
            if since and not (date and date >= since):
                continue
            if until and not (date and date <= until):
                continue
            if prefix and not path.startswith(prefix + "/"):
                continue
            keyed.append((date, path, image_id))
        keyed.sort(key=lambda k: (k[1], k[2]))
        keyed.sort(key=lambda k: k[0], reverse=True)  # stable: one date's photos stay by path
        page = [k[2] for k in keyed[skip : skip + limit]]
        found = self.web_images(page)
        return [found[i] for i in page if i in found], len(keyed)
