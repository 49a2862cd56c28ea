"""The index worker's start: every known face of the library's model, read back from MongoDB
in seconds rather than minutes.

Reading a million face documents costs the server a decode per document (about 8,500 a
second on the embedded server: two minutes at a million). So the index worker also keeps what
it loaded in `face_snapshots`: face ids, person ids and embeddings, ``CHUNK`` faces per
document, with the last face sequence number they cover. A start reads the snapshot and then
only what changed after it:

- new faces: the index stage numbers every face it stores (`seq`);
- faces put in another person by a correction, recluster or re-embedding: each such change
  is noted in `face_moves` before it is made (`Library.set_person`), and a start reads those
  faces' persons again (notes older than the snapshot by less than ``SETTLE`` are read too,
  in case the change landed after the snapshot read the face).

A face's embedding never changes within a model, and the index stage never changes the
person of a stored face, so "snapshot + new faces + noted faces read again" is what a full
read returns. A wiped library (another epoch), another model, or a snapshot with a part
missing is never used: the faces are then read one by one and a new snapshot is written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from bson.binary import Binary

from facepic.db import SNAPSHOT_META_ID, Library, embedding_from_bson
from facepic.documents import embeddings_from_bson
from facepic.models import EMBEDDING_DIM

log = logging.getLogger(__name__)

CHUNK = 4000  # faces per snapshot document: 8 MB of embeddings, under MongoDB's 16 MB
META_ID = SNAPSHOT_META_ID  # the `meta` document that describes the snapshot in use
SETTLE = timedelta(minutes=2)  # a noted change has landed in the faces well within this


@dataclass
class Known:
    """The faces of one model, as the index worker searches them ("" person: unassigned)."""

    ids: list[str]
    persons: list[str]
    matrix: np.ndarray  # N x 512 float32
    source: str = ""  # how they were read, for the log line

    def assigned(self) -> tuple[list[str], np.ndarray]:
        """Person ids and embeddings of the assigned faces."""
        rows = [i for i, p in enumerate(self.persons) if p]
        if len(rows) == len(self.persons):
            return self.persons, self.matrix
        return [self.persons[i] for i in rows], self.matrix[rows]


def load(lib: Library, model: str, refresh_after: float = 0.1) -> Known:
    """Every face of ``model``, from the snapshot and what changed after it, or read one by
    one (then a new snapshot is written). The snapshot is also rewritten when what changed
    after it is more than ``refresh_after`` of it, so a start never reads many faces one by one."""
    epoch = lib.epoch_alone()
    taken_at = datetime.now(UTC)
    seq = lib.current_seq()
    snap = _read(lib, model, epoch)
    if snap is None:
        known = _read_faces(lib, model)
        known.source = f"{len(known.ids)} faces read one by one"
        if epoch is not None:
            write(lib, model, epoch, seq, taken_at, known)
        return known
    known, covered, covered_at = snap
    position = {fid: i for i, fid in enumerate(known.ids)}
    moved = lib.face_moves_since(covered, covered_at - SETTLE)
    again = [fid for fid in moved if fid in position]
    found = lib.face_persons(again)
    for fid in again:  # a noted face deleted since (its photo replaced) belongs to nobody
        known.persons[position[fid]] = (found.get(fid) or {}).get("person_id") or ""
    new = _read_faces(lib, model, after_seq=covered, skip=position)
    if new.ids:
        known = Known(known.ids + new.ids, known.persons + new.persons, np.concatenate([known.matrix, new.matrix]))
    known.source = (
        f"{len(position)} faces from the snapshot, {len(again)} of them read again, {len(new.ids)} stored after it"
    )
    if len(again) + len(new.ids) > max(CHUNK, refresh_after * len(known.ids)) and epoch is not None:
        write(lib, model, epoch, seq, taken_at, known)
    return known


def _read(lib: Library, model: str, epoch: str | None) -> tuple[Known, int, datetime] | None:
    """The snapshot of ``model`` in this epoch, whole, with the sequence number it covers and
    when it was taken."""
    meta = lib.snapshot_meta()
    if not meta or epoch is None or meta.get("epoch") != epoch or meta.get("model") != model:
        return None
    docs = lib.snapshot_parts(meta["generation"])
    if len(docs) != meta["parts"] or sum(d["count"] for d in docs) != meta["faces"]:
        log.warning("face snapshot incomplete; reading the faces one by one")
        return None
    matrix = np.empty((meta["faces"], EMBEDDING_DIM), dtype=np.float32)
    ids: list[str] = []
    persons: list[str] = []
    row = 0
    for d in docs:
        count = d["count"]
        matrix[row : row + count] = embedding_from_bson(d["embeddings"]).reshape(count, EMBEDDING_DIM)
        if count:
            ids.extend(d["ids"].split("\n"))
            persons.extend(d["persons"].split("\n"))
        row += count
    return Known(ids, persons, matrix), int(meta["seq"]), meta["taken_at"]


def _read_faces(lib: Library, model: str, after_seq: int | None = None, skip: Container[str] = frozenset()) -> Known:
    """The faces of ``model`` (numbered after ``after_seq``), less ``skip``."""
    ids: list[str] = []
    persons: list[str] = []
    rows: list[bytes] = []
    for doc in lib.face_embeddings(model, after_seq):
        if doc["_id"] in skip:
            continue
        ids.append(doc["_id"])
        persons.append(doc.get("person_id") or "")
        rows.append(bytes(doc["embedding"]))
    matrix = embeddings_from_bson(rows, EMBEDDING_DIM)
    return Known(ids, persons, matrix)


def write(lib: Library, model: str, epoch: str, seq: int, taken_at: datetime, known: Known) -> None:
    """Store ``known`` as the snapshot of ``model``, covering faces up to ``seq`` as they were
    at ``taken_at``; the previous snapshot stays in use until the new one is whole."""
    generation = uuid.uuid4().hex
    parts = 0
    for start in range(0, max(1, len(known.ids)), CHUNK):
        end = min(start + CHUNK, len(known.ids))
        lib.add_snapshot_part(
            {
                "_id": f"{generation}:{parts:06d}",
                "generation": generation,
                "part": parts,
                "count": end - start,
                "ids": "\n".join(known.ids[start:end]),
                "persons": "\n".join(known.persons[start:end]),
                "embeddings": Binary(np.ascontiguousarray(known.matrix[start:end], dtype="<f4").tobytes()),
            }
        )
        parts += 1
    lib.commit_snapshot(
        {
            "model": model,
            "epoch": epoch,
            "seq": seq,
            "taken_at": taken_at,
            "generation": generation,
            "parts": parts,
            "faces": len(known.ids),
        }
    )
    # Notes the snapshot has taken in, older than any start will read again.
    lib.drop_face_moves(seq, taken_at - 2 * SETTLE)


def forget(lib: Library) -> None:
    """No start may use the snapshot (the faces' embeddings were replaced)."""
    lib.forget_snapshot()
