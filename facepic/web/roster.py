"""Every person's sort keys, kept in memory and read again only when a person changed (the
library's persons version): a page of the people page is then a slice and one read of its
persons. The embedded server reads every key of an index before it applies a limit, so asking
it to sort or count 10,000 persons took 400 ms a page; a slice takes a few.

The "same person?" pairs (`Suggested`) are kept the same way: every person's mean face read
once, then only the persons changed since, compared with the others."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facepic import suggest
from facepic.db import Library
from facepic.errors import FacePicError
from facepic.settle import Linkage


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    key: str  # the name casefolded: the order and the filter ignore case
    face_count: int
    updated_at: str
    hidden: bool


ORDERS: dict[str, Callable[[Entry], Any]] = {
    "most": lambda e: (-e.face_count, e.id),
    # Named first A to Z, then the unnamed most faces first.
    "name": lambda e: (not e.key, e.key, -e.face_count, e.id),
}


@dataclass
class _Snapshot:
    version: str
    entries: list[Entry]
    orders: dict[str, list[Entry]] = field(default_factory=dict)

    def ordered(self, sort: str) -> list[Entry]:
        if sort not in self.orders:
            if sort == "recent":  # changed last first; two sorts, as one key cannot reverse a string
                rows = sorted(self.entries, key=lambda e: e.id)
                rows.sort(key=lambda e: e.updated_at, reverse=True)
            else:
                rows = sorted(self.entries, key=ORDERS.get(sort, ORDERS["most"]))
            self.orders[sort] = rows
        return self.orders[sort]


class Roster:
    """The people page's lists, read from a snapshot of every person's sort keys."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def _current(self) -> _Snapshot:
        changes = self.lib.persons_changes()
        version = changes["version"]
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version == version:
            return snapshot
        with self._lock:  # one reader builds it; the others wait for it rather than read too
            snapshot = self._snapshot
            if snapshot is None or snapshot.version != version:
                # The changes are read before the persons: a change in between makes the next
                # request read it again, never keeps a stale person under a newer version.
                changed = _changed_since(snapshot.version, changes["log"]) if snapshot else None
                if snapshot is None or changed is None:
                    entries = [_entry(d) for d in self.lib.web_person_keys()]
                else:
                    fresh = {d["_id"]: _entry(d) for d in self.lib.web_person_keys(sorted(changed))}
                    entries = [e for e in snapshot.entries if e.id not in changed] + list(fresh.values())
                snapshot = self._snapshot = _Snapshot(version, entries)
            return snapshot

    def page(
        self, hidden: bool, skip: int, limit: int, sort: str = "most", name: str = ""
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of persons (hidden ones too with ``hidden``; only those whose name holds
        ``name``, ignoring case, when given), and how many in all. ``sort``: "most" (most faces
        first), "recent" (changed last first) or "name" (named A to Z, then the unnamed)."""
        text = name.casefold()
        rows = [e for e in self._current().ordered(sort) if (hidden or not e.hidden) and text in e.key]
        wanted = [e.id for e in rows[skip : skip + limit]]
        found = self.lib.web_persons_by_id(wanted)
        return [found[p] for p in wanted if p in found], len(rows)

    def find(self, text: str, limit: int) -> list[dict[str, Any]]:
        """Persons whose name holds ``text`` (ignoring case) or whose id starts with it, most
        faces first."""
        text = text.strip()
        key = text.casefold()
        rows = [e for e in self._current().ordered("most") if (key and key in e.key) or e.id.startswith(text)]
        wanted = [e.id for e in rows[:limit]]
        found = self.lib.web_persons_by_id(wanted)
        return [found[p] for p in wanted if p in found]

    def named(self, name: str) -> list[str]:
        """The ids of the persons called ``name``, ignoring case."""
        key = name.strip().casefold()
        return [e.id for e in self._current().entries if key and e.key == key]


class Suggested:
    """The library's "same person?" pairs (`facepic.suggest.Likeness`), brought up to date
    from the library's list of changed persons on each question. Reading every person again
    (after a change too large to list, such as a recluster: seconds at 10,000 persons) is done
    aside, the pairs known before answering meanwhile; only the very first read is waited for."""

    def __init__(self, lib: Library, linkage: Linkage) -> None:
        self.lib = lib
        self.linkage = linkage
        self._likeness: suggest.Likeness | None = None
        self._version = ""
        self._lock = threading.Lock()
        self._aside: threading.Thread | None = None
        self._count: int | None = None  # the pairs at the last question

    def pairs(self, person_id: str | None = None) -> list[suggest.Pair]:
        """Every pair, nearest to a merge first; or those of ``person_id``."""
        with self._lock:  # an update changes the pairs in place: one at a time
            likeness = self._current()
            if person_id:
                return likeness.of(person_id)
            every = likeness.pairs()
            self._count = len(every)
            return every

    def count(self) -> int | None:
        """How many pairs there are, for the people page's link, without waiting on another
        reader: None while the first read of the library is still going on (``warm``, at
        `serve`'s start: 3 s at 10,000 persons, which the first page once waited for); the
        last count while another question holds them. With no reader, it asks itself."""
        if not self._lock.acquire(blocking=False):
            return self._count
        try:
            self._count = len(self._current().pairs())
            return self._count
        finally:
            self._lock.release()

    def warm(self) -> None:
        """Read the library now (`facepic serve` at its start), so the first page need not."""
        try:
            self.pairs()
        except FacePicError:
            pass  # the page that asks next says what failed

    def _current(self) -> suggest.Likeness:
        changes = self.lib.persons_changes()
        if self._likeness is None:
            self._likeness, self._version = self._whole(), changes["version"]
        if changes["version"] == self._version:
            return self._likeness
        changed = _changed_since(self._version, changes["log"])
        if changed is not None:
            self._likeness.update(changed, suggest.read(self.lib, sorted(changed)))
            self._version = changes["version"]
        elif self._aside is None or not self._aside.is_alive():
            self._aside = threading.Thread(target=self._replace, args=(changes["version"],), daemon=True)
            self._aside.start()
        return self._likeness

    def _whole(self) -> suggest.Likeness:
        likeness = suggest.Likeness(self.linkage)
        facts = suggest.read(self.lib)
        likeness.update(facts, facts)
        return likeness

    def _replace(self, version: str) -> None:
        """Read every person again (the library's persons at ``version`` or later), then use that."""
        try:
            likeness = self._whole()
        except FacePicError:
            return  # the next question tries again
        with self._lock:
            self._likeness, self._version = likeness, version


def _entry(doc: dict[str, Any]) -> Entry:
    name = doc.get("name") or ""
    return Entry(
        id=doc["_id"],
        name=name,
        key=name.casefold(),
        face_count=int(doc.get("face_count") or 0),
        updated_at=doc.get("updated_at") or "",
        hidden=bool(doc.get("hidden")),
    )


def _changed_since(version: str, log: list[dict[str, Any]]) -> set[str] | None:
    """The persons changed after ``version``, from the library's list of its last changes;
    None when that list does not reach back to it or a change named too many to list."""
    versions = [c.get("version") for c in log]
    if version not in versions:
        return None
    changed: set[str] = set()
    for c in log[versions.index(version) + 1 :]:
        if c.get("ids") is None:
            return None
        changed.update(c["ids"])
    return changed
