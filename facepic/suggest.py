""" "Same person?": the pairs of persons that may be one, for the user to answer.

However good the grouping, some people stay split: two persons whose faces are alike, but not
alike enough for settling to merge them (`facepic.settle.Linkage`: mean similarity above
``floor + margin / sqrt(n_a n_b)``, the margin being the evidence a mean over few faces lacks).
A pair is worth asking about when its mean similarity is at least halfway from the floor to what
a merge needs (`worth_asking`, the one rule): the user supplies the evidence. Each unnamed
person is offered its ``OFFERED`` pairs nearest to a merge. Never asked: two named persons,
a hidden one, two persons with a face in one photo, or two kept apart by a rejection (a face
of one rejects the other, which is how a "no" is stored: `facepic.persons.not_same`). "Yes" is
a merge into the named one, else the larger (`Pair.b`).

The mean similarity of two persons' faces is the dot product of their mean faces, so a person
is one row: a change to a few persons costs their rows against the others
(`Likeness.update`), not the square of the library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facepic.db import Library
from facepic.documents import embeddings_from_bson
from facepic.models import EMBEDDING_DIM
from facepic.settle import Linkage

OFFERED = 3  # pairs offered for each unnamed person, nearest to a merge first
# How far below what a merge needs a pair is still asked about, as a share of the way down to the
# floor. Chosen on the labelled folders: under the grouping before the floor followed the persons,
# at 0.5 the 4 pairs asked on ../shared/photos and photos-varied were one identity each (at 1.0 one
# more; a fixed 0.1 below the need asked about 5 strangers of ../shared/photos' 29 persons). Under
# today's grouping neither folder has a split near a merge (none is asked at up to 1.25), and
# lfw-dev's 761 persons get 14 questions at 0.5 (56 at 1.0): kept at 0.5, few questions.
WITHIN = 0.5
NEIGHBOURS = 32  # candidates a person's row keeps when it is compared with the others
# Pairs are kept this far below the rule, so that the floor may drop as much (the library losing
# a third of its persons) before every person is compared again: the floor moves with the library.
SLACK = 0.01
BLOCK = 1024  # rows compared at once


def worth_asking(linkage: Linkage, similarity: Any, n_a: Any, n_b: Any, persons: int, slack: float = 0.0) -> Any:
    """Whether two persons of ``n_a`` and ``n_b`` faces whose faces have this mean similarity,
    in a library of ``persons`` persons of two faces or more, may be one person (numbers, or
    numpy arrays of them); ``slack``: or would be, ``slack`` more alike."""
    needed, floor = linkage.needed(n_a, n_b, persons), linkage.level(persons)
    return similarity + slack > needed - WITHIN * (needed - floor)


@dataclass(frozen=True)
class Facts:
    """What suggestions know of a person: the sum of its faces, and what keeps it apart."""

    id: str
    sum: np.ndarray  # of its unit embeddings
    count: int
    photos: frozenset[str]
    rejects: frozenset[str]  # persons its faces reject (a "no" among them)
    named: bool
    hidden: bool


@dataclass(frozen=True)
class Pair:
    """Two persons that may be one: ``a`` is asked about (unnamed), ``b`` keeps on a "yes"
    (the named one, else the one with more faces)."""

    a: str
    b: str
    similarity: float  # the mean similarity of their faces
    needed: float  # what settling needs to merge them


def askable(x: Facts, y: Facts) -> bool:
    """Whether the pair may be offered at all, however alike."""
    return not (
        (x.named and y.named)
        or x.hidden
        or y.hidden
        or x.id in y.rejects
        or y.id in x.rejects
        or bool(x.photos & y.photos)
    )


def keeper_rank(named: bool, faces: int, person_id: str) -> tuple[bool, int, str]:
    """Of two persons answered "yes", the one ranked first keeps: the named one, else the one
    with more faces, else the smaller id."""
    return (not named, -faces, person_id)


def _keeper(x: Facts, y: Facts) -> bool:
    """Whether ``x`` keeps on a "yes" with ``y``."""
    return keeper_rank(x.named, x.count, x.id) < keeper_rank(y.named, y.count, y.id)


class Likeness:
    """Every person's mean face and facts, and the pairs worth asking about among them."""

    def __init__(self, linkage: Linkage) -> None:
        self.linkage = linkage
        self.facts: dict[str, Facts] = {}
        self.persons = 0  # of two faces or more: the library's size for the linkage's floor
        self._row: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []
        self._means = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        self._counts = np.zeros(0, dtype=np.int64)
        self._near: dict[str, dict[str, float]] = {}  # person -> person -> mean similarity
        self._compared: int | None = None  # persons of two faces or more when all were last compared
        self._pairs: list[Pair] | None = None

    def update(self, changed: Iterable[str], facts: Mapping[str, Facts]) -> None:
        """Persons ``changed`` are now as ``facts`` says (one missing or without faces: gone)."""
        changed = sorted(set(changed))
        for pid in changed:
            self._drop(pid)
        fresh = [facts[p] for p in changed if p in facts and facts[p].count > 0]
        for f in fresh:
            self._put(f)
        rows = [self._row[f.id] for f in fresh]
        if self._compared is None or self.linkage.level(self.persons) < self.linkage.level(self._compared) - SLACK:
            # The floor dropped below what the kept pairs were compared against: all again.
            self._near, self._compared = {}, self.persons
            rows = sorted(self._row.values())
        # Pairs need an unnamed person: a named one is compared only as a changed one's other.
        self._compare(rows, full=len(rows) == len(self.facts))
        self._pairs = None

    def pairs(self) -> list[Pair]:
        """Each unnamed person's ``OFFERED`` pairs nearest to a merge, nearest first."""
        if self._pairs is None:
            # Every unnamed person's candidates in a row, the rule applied to them all at once.
            starts, others, similarity = [0], list[str](), list[float]()
            askers = [pid for pid in self._near if not self.facts[pid].named]
            for pid in askers:
                others += self._near[pid]
                similarity += self._near[pid].values()
                starts.append(len(others))
            mine = np.repeat([self.facts[p].count for p in askers], np.diff(starts))
            theirs = np.array([self.facts[o].count for o in others], dtype=np.int64)
            needed = self.linkage.needed(mine, theirs, self.persons)
            asked = worth_asking(self.linkage, np.asarray(similarity), mine, theirs, self.persons)
            chosen: dict[tuple[str, str], Pair] = {}
            for n, pid in enumerate(askers):
                x = self.facts[pid]
                ranked = sorted(
                    (float(needed[i]) - similarity[i], others[i], similarity[i], float(needed[i]))
                    for i in range(starts[n], starts[n + 1])
                    if asked[i]
                )
                for _, other, sim, need in ranked[:OFFERED]:
                    a, b = (other, pid) if _keeper(x, self.facts[other]) else (pid, other)
                    chosen[(a, b)] = Pair(a, b, sim, need)
            self._pairs = sorted(chosen.values(), key=lambda p: (p.needed - p.similarity, p.a, p.b))
        return self._pairs

    def of(self, person_id: str) -> list[Pair]:
        return [p for p in self.pairs() if person_id in (p.a, p.b)]

    def _drop(self, pid: str) -> None:
        old = self.facts.pop(pid, None)
        if old is None:
            return
        self.persons -= old.count > 1
        row = self._row.pop(pid)
        self._ids[row] = None
        self._means[row] = 0
        self._counts[row] = 0
        self._free.append(row)
        for other in self._near.pop(pid, {}):
            self._near[other].pop(pid, None)

    def _put(self, f: Facts) -> None:
        if self._free:
            row = self._free.pop()
        else:
            row = len(self._ids)
            self._ids.append(None)
            if row >= len(self._means):
                grow = max(1024, len(self._means))
                self._means = np.concatenate([self._means, np.zeros((grow, EMBEDDING_DIM), dtype=np.float32)])
                self._counts = np.concatenate([self._counts, np.zeros(grow, dtype=np.int64)])
        mean = np.asarray(f.sum, dtype=np.float64) / f.count
        self._means[row] = np.where(np.isfinite(mean), mean, 0.0)  # a broken embedding likens nobody
        self._counts[row] = f.count
        self._ids[row] = f.id
        self._row[f.id] = row
        self.facts[f.id] = f
        self.persons += f.count > 1

    def _compare(self, rows: list[int], full: bool) -> None:
        """Compare ``rows`` with every person (all persons: ``full``, and then only the
        unnamed ones' rows, each pair once from either side) and keep the pairs worth asking,
        and those ``SLACK`` less alike, in the library as it was when all were compared."""
        assert self._compared is not None
        if full:
            rows = [r for r in rows if not self.facts[self._ids[r]].named]  # type: ignore[index]
        n = len(self._ids)
        means, counts = self._means[:n], self._counts[:n]
        for start in range(0, len(rows), BLOCK):
            part = np.asarray(rows[start : start + BLOCK], dtype=np.int64)
            sims = means[part] @ means.T
            # Persons of endless faces need the least: below that no pair is asked about, and
            # the few above it get the exact test.
            r, c = np.nonzero(worth_asking(self.linkage, sims, np.inf, np.inf, self._compared, SLACK))
            mine = part[r]
            # Each pair's similarity again in float64, the same from either side (a float32
            # product differs in its last bits with the block it was computed in).
            similarity = np.einsum("ij,ij->i", means[mine].astype(np.float64), means[c].astype(np.float64))
            with np.errstate(divide="ignore"):  # a free row has no faces: it needs the impossible
                asked = worth_asking(self.linkage, similarity, counts[mine], counts[c], self._compared, SLACK)
                asked &= mine != c
                closeness = similarity - self.linkage.needed(counts[mine], counts[c], self.persons)
            kept: dict[int, int] = {}
            order = np.lexsort((-closeness, mine))  # by row, nearest a merge first
            for i in order[asked[order]].tolist():
                row, col = int(mine[i]), int(c[i])
                kept[row] = kept.get(row, 0) + 1
                if kept[row] > NEIGHBOURS:
                    continue
                x, y = self.facts[self._ids[row]], self.facts[self._ids[col]]  # type: ignore[index]
                if askable(x, y):
                    self._near.setdefault(x.id, {})[y.id] = float(similarity[i])
                    self._near.setdefault(y.id, {})[x.id] = float(similarity[i])


def read(lib: Library, person_ids: Sequence[str] | None = None) -> dict[str, Facts]:
    """The facts of every person (or of those of ``person_ids`` that are stored), read from the
    library: their faces' embeddings, photos and rejections, and their names."""
    docs = {d["_id"]: d for d in lib.suggestion_persons(person_ids)}
    owners: list[str] = []
    rows: list[bytes] = []
    photos: dict[str, set[str]] = {p: set() for p in docs}
    rejects: dict[str, set[str]] = {p: set() for p in docs}
    for f in lib.suggestion_faces(person_ids):
        pid = f["person_id"]
        if pid not in docs:
            continue  # a face of a person gone meanwhile
        owners.append(pid)
        rows.append(f["embedding"])
        photos[pid].add(f["image_id"])
        if f.get("rejected"):
            rejects[pid].update(f["rejected"])
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    if owners:
        # Each person's sum in one unbuffered add (0.3 s for 100,000 faces; a cumulative sum down
        # the rows took a second). Not SciPy's sparse product, four times faster: the page runs
        # where the face engine, and so SciPy, is not installed (the web service's image).
        persons, which, sizes = np.unique(np.asarray(owners), return_inverse=True, return_counts=True)
        totals = np.zeros((len(persons), EMBEDDING_DIM))
        np.add.at(totals, which, embeddings_from_bson(rows, EMBEDDING_DIM).astype(np.float64))
        sums = dict(zip(persons.tolist(), totals))
        counts = dict(zip(persons.tolist(), sizes.tolist()))
    return {
        p: Facts(
            p,
            sums.get(p, np.zeros(EMBEDDING_DIM)),
            counts.get(p, 0),
            frozenset(photos[p]),
            frozenset(rejects[p]),
            bool(d.get("name")),
            bool(d.get("hidden")),
        )
        for p, d in docs.items()
    }


def suggestions(lib: Library, linkage: Linkage) -> list[Pair]:
    """The library's pairs worth asking about, nearest to a merge first (read whole: the
    page keeps a `Likeness` and reads only the persons changed since)."""
    likeness = Likeness(linkage)
    facts = read(lib)
    likeness.update(facts, facts)
    return likeness.pairs()
