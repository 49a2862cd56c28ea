"""All or nothing: a change to persons (a correction, a recluster, a settle) is written as a
durable intent before any of its writes, and finished by whoever opens the library next if
the process that made it died midway (killed, a power cut).

A change is a list of writes to faces and persons, each one idempotent (it sets what the
change decided: a face's person, a name, a rejection added), plus the persons and photos whose
derived fields (face counts, covers, each photo's face list) follow from the faces. It runs as:

1. the intent (its writes and what they touch) is stored, in parts when large, and made
   pending by one last write of its head: before that write nothing happened, after it the
   change will happen whole;
2. its writes are applied;
3. the touched persons are recounted and given covers, the touched photos' face lists
   rewritten, the library's revision bumped (the index worker reloads its persons);
4. the intent is dropped.

A process that opens the library finishes every pending change whose maker is gone (steps 2
to 4 again: each step sets what the change decided, so doing one twice changes nothing) and
drops the parts of a change that never became pending. This works on any MongoDB server,
with or without transactions.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bson import json_util

from facepic.db import Library
from facepic.derived import Covers, recount
from facepic.procs import alive

if TYPE_CHECKING:  # the pipeline imports this module: no import back at run time
    from facepic.context import Context

# The Library's writes a change may hold: each sets what the change decided.
WRITES = frozenset(
    {
        "set_person",
        "set_persons",
        "reject_for",
        "reject_for_each",
        "forget_rejections",
        "add_not_same",
        "set_person_fields",
        "set_persons_fields",
        "new_person_if_missing",
        "set_settle_mark",
        "delete_images",
        "set_names_applied",
        "log_correction",
        "restore_faces",
        "mark_undone",
    }
)
PART_CHARS = 4_000_000  # of the JSON of a change's writes per stored part (BSON's limit is 16 MB)
# A change whose maker runs on another machine is finished by others only after this long
# (a recluster of a large library may take that long; its maker may still be at work).
STALE_ELSEWHERE = timedelta(hours=2)


class Change:
    """A change to persons being built: the same write methods as `Library`, recorded."""

    def __init__(self, kind: str, bump: bool = True) -> None:
        self.kind = kind
        self.bump = bump  # whether the index worker must read the persons again after it
        self.writes: list[tuple[str, list[Any], dict[str, Any]]] = []
        self.persons: set[str] = set()
        self.images: set[str] = set()
        self.moved: dict[str, dict[str, Any]] = {}  # persons recount may count from the moves
        self.twice: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name not in WRITES:
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> None:
            self.writes.append((name, _plain(args), _plain(kwargs)))

        return record

    def touch(self, persons: Iterable[str | None] = (), images: Iterable[str] = ()) -> None:
        """Persons to recount and photos whose face list to rewrite once the writes are done."""
        self.persons.update(p for p in persons if p)
        self.images.update(images)

    def count_from_moves(self, moved: dict[str, dict[str, Any]]) -> None:
        """Let recount count these of the persons touched from their moves (`counted_moves`).
        A person given twice is read whole: each time saw it as it was before the change."""
        for pid, m in moved.items():
            if pid in self.moved or pid in self.twice:
                self.moved.pop(pid, None)
                self.twice.add(pid)
            else:
                self.moved[pid] = m

    def commit(self, lib: Library, covers: Covers | None) -> tuple[int, int]:
        """Make the change durable, then apply it whole (see the module's docstring). Returns
        the persons its recount created and deleted."""
        if not self.writes and not self.persons and not self.images:
            return 0, 0
        change_id = uuid.uuid4().hex
        body = json_util.dumps(
            {
                "writes": self.writes,
                "persons": sorted(self.persons),
                "images": sorted(self.images),
                "bump": self.bump,
                "moved": self.moved,
            }
        )
        parts = [body[i : i + PART_CHARS] for i in range(0, len(body), PART_CHARS)] or [""]
        for n, part in enumerate(parts):
            lib.store_change_part(change_id, n, part)
        lib.store_change_head(
            {
                "_id": change_id,
                "kind": self.kind,
                "parts": len(parts),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "at": datetime.now(UTC),
            }
        )
        return _finish(lib, covers, change_id, body)


def _plain(value: Any) -> Any:
    """Tuples and sets as lists, so that what is replayed is what was recorded."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    return value


def _finish(lib: Library, covers: Covers | None, change_id: str, body: str) -> tuple[int, int]:
    plan = json_util.loads(body)
    for name, args, kwargs in plan["writes"]:
        if name not in WRITES:
            raise ValueError(f"a stored change holds an unknown write {name!r}")
        getattr(lib, name)(*args, **kwargs)
    counts = recount(lib, plan["persons"], covers, moved=plan.get("moved"))
    lib.refresh_image_faces(plan["images"])
    if plan.get("bump", True):
        lib.bump_revision()
    lib.drop_change(change_id)
    return counts


def finish_pending_of(ctx: Context) -> list[str]:
    """`finish_pending` for a process's context: what every command, the page and the index
    worker do when they open the library (one read when nothing is pending)."""
    return finish_pending(ctx.library, Covers(ctx))


def finish_pending(lib: Library, covers: Covers | None) -> list[str]:
    """Finish the changes left pending by a process that is gone; drop the parts of those that
    never became pending. Returns the kinds of the changes finished."""
    finished: list[str] = []
    host = socket.gethostname()
    now = datetime.now(UTC)
    heads = lib.change_heads()
    for head in heads:
        mine = head.get("host") == host
        if mine and alive(int(head.get("pid", 0))) and head.get("pid") != os.getpid():
            continue
        at = head.get("at")
        if not mine and at is not None and now - at < STALE_ELSEWHERE:
            continue
        body = "".join(lib.change_bodies(head["_id"], int(head["parts"])))
        _finish(lib, covers, head["_id"], body)
        finished.append(str(head.get("kind")))
    lib.drop_orphan_change_parts({h["_id"] for h in heads}, older_than=now - timedelta(minutes=10))
    return finished
