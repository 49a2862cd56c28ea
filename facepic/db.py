"""MongoDB: the `images`, `faces`, `persons`, `folders` and `meta` collections, and the notes
(`face_moves`), snapshots (`face_snapshots`) and staged faces (`faces_next`) kept beside them.

`Library` is the only code that touches them: everything else calls its methods, each named
by what it does (tests/test_routing.py checks that no other module takes a collection). Its
methods live by concern in the rooms of `facepic/library/`, one mixin class a module; this
module is the one door, and keeps the indexes.

Every write is an upsert keyed by a content-derived id, so replaying a step changes nothing.
Embeddings are stored as little-endian float32 bytes (2 KiB a face), not as lists of doubles.
"""

from __future__ import annotations

from pymongo import ASCENDING

from facepic.documents import embedding_from_bson, embedding_to_bson, image_faces, new_person, photo_date  # noqa: F401 - re-exported
from facepic.library.base import (  # noqa: F401 - re-exported
    CHANGES_KEPT,
    CHANGES_LISTED,
    COLLECTIONS,
    IN_BATCH,
    RECLUSTER_META_ID,
    SETTLE_META_ID,
    SNAPSHOT_META_ID,
    UNDO_KEPT,
    DatabaseError,
    DatabaseUnavailable,
    LibraryBase,
    answers,
)
from facepic.library.corrections import Corrections
from facepic.library.lookups import Lookups
from facepic.library.page import PageReads
from facepic.library.pipeline import PipelineWrites
from facepic.library.reembedding import Reembedding
from facepic.library.settling import Settling
from facepic.library.snapshots import Snapshots
from facepic.library.upkeep import Upkeep


class Library(PipelineWrites, Lookups, Settling, Corrections, Reembedding, Snapshots, PageReads, Upkeep, LibraryBase):
    """FacePic's metadata in one MongoDB database."""

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
            # The few faces that reject someone, or were answered "not the same": a settle carries
            # each absorbed person's to whoever took it in (a full read of the faces without these).
            self.faces.create_index([("rejected", ASCENDING)], sparse=True)
            self.faces.create_index([("not_same", ASCENDING)], sparse=True)
            # The faces the user placed: a settle reads them, not each person's faces, to know
            # whom they hold.
            self.faces.create_index([("locked", ASCENDING)], sparse=True)
            self.face_moves.create_index([("at", ASCENDING)])
            self.folders.create_index([("parent_id", ASCENDING)])
