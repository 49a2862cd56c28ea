"""Settling: the faces stored since the last settle get their final persons, decided together.

The index stage assigns each face as it arrives (`facepic.matching`): quick, but the result
depends on arrival order, and at thousands of identities its mean-similarity rule joins
strangers. Settling decides the new faces again, all at once, in a way that does not depend on
the order they came in:

1. every new face starts on its own (a face the user placed stays where they put it);
2. the settled persons near them (a new face's mean similarity to the person above the
   threshold; found through the index worker's `PersonIndex`, so the work grows with the new
   faces, not the library) take part as they are, never split;
3. groups merge by average linkage (`facepic.clustering.agglomerate`), most similar pair first,
   while their mean similarity is above ``threshold + margin / sqrt(n_a n_b)``: two single
   faces need 0.4 (the design's rule), large groups 0.2, since a mean over many face pairs
   says more than one pair does;
4. a group holding a settled person keeps that person's id; a group of new faces only becomes
   the person ``ids.person_id(its smallest face id)``, unless all its faces are too poor to
   found a person (they stay unassigned).

What the user decided is never undone (as in `facepic.clustering`): a locked person is never
absorbed, two locked persons never merge, a face never joins a person it rejected (or one that
absorbed it), two faces of one photo never share a person.

A fresh library's first settle sees every face as new: its persons are then the same whatever
the order the photos came in, and ``everything=True`` gives any library that result again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np

from facepic.clustering import Faces, _Group, agglomerate
from facepic.matching import PersonIndex

META_ID = "settle"


@dataclass(frozen=True)
class Linkage:
    """When two groups of faces are one person: mean similarity above
    ``threshold + margin / sqrt(n_a n_b)`` (``bench/quality.py`` is how these were chosen)."""

    threshold: float = 0.2
    margin: float = 0.2


@dataclass
class Settled:
    """A settled person near the new faces: the sum and count of its settled faces, the photos
    among the new faces' photos it has a face in, the persons its faces reject."""

    sum: np.ndarray
    count: int
    photos: set[str] = field(default_factory=set)
    rejects: set[str] = field(default_factory=set)
    locked: bool = False


def near_persons(index: PersonIndex, embeddings: np.ndarray, online: Iterable[str | None],
                 floor: float) -> dict[str, tuple[np.ndarray, int]]:
    """The settled persons whose mean similarity to one of ``embeddings`` (new faces, assigned
    ``online`` by the index stage) is above ``floor``: their settled sum and count (the index
    holds the new faces too; they are taken out)."""
    online = list(online)
    new_sum: dict[str, np.ndarray] = {}
    new_count: dict[str, int] = {}
    for e, p in zip(embeddings, online):
        if p:
            new_sum[p] = new_sum.get(p, 0) + e.astype(np.float64)
            new_count[p] = new_count.get(p, 0) + 1
    found: dict[str, tuple[np.ndarray, int]] = {}
    seen: set[str] = set()
    for e in embeddings:
        for pid in index.near(e, floor - 0.1):  # the index's means still hold the new faces
            if pid in seen:
                continue
            seen.add(pid)
            total, count = index.person_sum(pid)
            total = total.astype(np.float64) - new_sum.get(pid, 0)
            count -= new_count.get(pid, 0)
            if count > 0:
                found[pid] = (total, count)
    if not found:
        return {}
    pids = sorted(found)
    means = np.stack([found[p][0] / found[p][1] for p in pids]).astype(np.float32)
    best = (np.asarray(embeddings, dtype=np.float32) @ means.T).max(axis=0)
    return {p: found[p] for p, b in zip(pids, best) if b > floor}


def settle_faces(new: Faces, persons: Mapping[str, Settled], linkage: Linkage,
                 new_person_id: Callable[[str], str]) -> tuple[list[str | None], dict[str, str]]:
    """The person of each new face (None: unassigned) and the settled persons merged into
    another (merged away -> absorbed by). ``new.person`` is where a locked face stays;
    ``new_person_id(face_id)`` names a group of new faces after its smallest face id."""
    groups: dict[str, _Group] = {}
    for pid in sorted(persons):
        s = persons[pid]
        groups[pid] = _Group(np.asarray(s.sum, dtype=np.float64), [], {pid}, set(s.photos), set(s.rejects),
                             s.locked, pid, unlisted=s.count)
    singles: list[_Group] = []
    for i in sorted(range(len(new.ids)), key=lambda i: new.ids[i]):
        e = new.embeddings[i].astype(np.float64)
        pid = new.person[i]
        if new.locked[i] and pid:
            g = groups.get(pid)
            if g is None:
                g = groups[pid] = _Group(np.zeros_like(e), [], {pid}, set(), set(), True, pid)
            g.locked = True  # a person holding a face the user placed is the user's
            g.sum = g.sum + e
            g.members.append(i)
            g.photos.add(new.photo[i])
            g.rejects |= new.rejected[i]
            continue
        singles.append(_Group(e, [i], set(), {new.photo[i]}, set(new.rejected[i]), False, None))
    merged = agglomerate(list(groups.values()) + singles, linkage.threshold, margin=linkage.margin)
    result: list[str | None] = [p if new.locked[i] else None for i, p in enumerate(new.person)]
    absorbed: dict[str, str] = {}
    for g in merged:
        person = g.person
        if person is None:
            members = sorted(g.members, key=lambda i: new.ids[i])
            if not any(new.can_found[i] for i in members):
                continue  # poor faces alone found nobody
            person = new_person_id(new.ids[members[0]])
        for i in g.members:
            result[i] = person
        absorbed.update((name, person) for name in g.names if name != person)
    return result, absorbed


def settle_batch(new: Faces, index: PersonIndex, linkage: Linkage,
                 describe: Callable[[list[str]], Mapping[str, Settled]],
                 new_person_id: Callable[[str], str]) -> tuple[list[str | None], dict[str, str]]:
    """`settle_faces` with the settled persons near the new faces found in ``index`` (the
    index stage's, holding the new faces as it assigned them); ``describe(person_ids)`` gives
    their photos, rejects and lock (sum and count are filled in from the index)."""
    near = near_persons(index, new.embeddings, new.person, linkage.threshold)
    described = describe(sorted(near))
    persons = {}
    for pid, (total, count) in near.items():
        d = described.get(pid) or Settled(total, count)
        persons[pid] = Settled(total, count, d.photos, d.rejects, d.locked)
    return settle_faces(new, persons, linkage, new_person_id)
