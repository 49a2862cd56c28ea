"""Reclustering: revisit every person at once, the way arrival order could not.

Arrival-order assignment (`facepic.matching`) splits a person whose first photos happened to
differ, and can only defer an ambiguous face. `recluster` starts from the current persons and:

1. splits each person whose faces form more than one group under average linkage (the
   mean similarity between two groups' faces) at ``rules.mean_threshold``;
2. merges persons greedily, most similar pair first, while their average linkage is above
   the same threshold: the same rule both ways, so a split is not undone by the merge;
3. gives the faces left unassigned (ambiguous, too poor to found a person, rejected) a
   person by the incremental rule against the result.

The result depends on the starting partition only through which groups exist, not on the
order photos arrived in (``bench/quality.py`` shows both orders).

What the user decided is never undone: a locked person (named or merged by the user) is
never split, deleted or merged into another (another may be merged into it); two locked
persons are never merged; a face the user moved stays where they put it; a face never joins
a person it was rejected from, nor the person that absorbed it; two faces of one photo never
share a person.

Average linkage between groups is ``S_a . S_b / (n_a n_b)`` with ``S`` the sum of a group's
unit embeddings, so merging costs one vector addition and no pairwise matrix.
"""

from __future__ import annotations

import heapq
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from facepic.matching import PersonIndex, Rules

SPLIT_LIMIT = 1000  # a person with more faces is not considered for splitting (pairs grow as n^2)


@dataclass
class Faces:
    """The faces of one model, as recluster sees them (index i is one face)."""

    ids: list[str]
    embeddings: np.ndarray  # N x 512, unit rows
    person: list[str | None]
    photo: list[str]
    locked: list[bool] = field(default_factory=list)  # placed by the user
    rejected: list[frozenset[str]] = field(default_factory=list)
    can_found: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.locked = self.locked or [False] * n
        self.rejected = self.rejected or [frozenset()] * n
        self.can_found = self.can_found or [True] * n


@dataclass
class _Group:
    sum: np.ndarray
    members: list[int]
    names: set[str]  # person ids this group is or has absorbed
    photos: set[str]
    rejects: set[str]
    locked: bool  # a locked person: never absorbed by another
    person: str | None
    unlisted: int = 0  # faces counted in ``sum`` but not in ``members`` (a settled person's)
    # Persons its faces were in before (settling): a face that rejected one never joins them,
    # whatever id their group ends with. Unlike ``names``, never reported as absorbed.
    held: set[str] = field(default_factory=set)

    @property
    def n(self) -> int:
        return len(self.members) + self.unlisted


def _compatible(a: _Group, b: _Group) -> bool:
    return (
        not (a.locked and b.locked)
        and not (a.photos & b.photos)
        and not (a.rejects & (b.names | b.held))
        and not (b.rejects & (a.names | a.held))
    )


def _absorb(keep: _Group, gone: _Group) -> None:
    keep.sum = keep.sum + gone.sum
    keep.members += gone.members
    keep.unlisted += gone.unlisted
    keep.names |= gone.names
    keep.photos |= gone.photos
    keep.rejects |= gone.rejects
    keep.held |= gone.held


def _survivor(a: _Group, b: _Group) -> tuple[_Group, _Group]:
    if a.locked != b.locked:
        return (a, b) if a.locked else (b, a)
    if (a.person is None) != (b.person is None):
        return (a, b) if a.person is not None else (b, a)
    if a.n != b.n:
        return (a, b) if a.n > b.n else (b, a)
    return (a, b) if (a.person or "") <= (b.person or "") else (b, a)


def agglomerate(
    groups: list[_Group],
    threshold: float,
    block: int = 2048,
    margin: float = 0.0,
    neighbours_of: Callable[[np.ndarray, float], list[tuple[int, int, float]]] | None = None,
) -> list[_Group]:
    """Greedy average-linkage merging, most similar compatible pair first, while the pair's
    link is above ``threshold + margin / sqrt(n_a n_b)``: two single faces need
    ``threshold + margin``, groups less as the number of face pairs behind their mean grows.

    ``neighbours_of(means, floor)`` may give the candidate pairs (i < j, link above ``floor``)
    instead of the blockwise comparison of every pair (a nearest-neighbour search at scale).
    """
    alive = list(groups)
    if len(alive) < 2:
        return alive

    neighbours, heap = _candidates(alive, threshold, margin, block, neighbours_of)
    dead = _merge_greedily(alive, neighbours, heap, threshold, margin)
    return [g for i, g in enumerate(alive) if not dead[i]]


# The heap's entries: (-link, i, j, version of i, version of j), i < j, packed into one int that
# orders as that tuple does (``_entry``). Comparing ints costs a fraction of comparing tuples, and
# the heap's comparisons were most of a settle where a few people fill a library (a merged group
# pushes a pair for each of its neighbours: 500,000 pops for 1,920 faces of 21 people).
_Heap = list[int]
_FIELD = 32  # bits for an index or a version
_MASK = (1 << _FIELD) - 1
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_double = struct.Struct(">d").pack


def _entry(neg_link: float, i: int, j: int, vi: int, vj: int) -> int:
    bits = int.from_bytes(_double(neg_link), "big")  # IEEE order, made the ints' order:
    bits = bits ^ _ALL if bits & _SIGN else bits | _SIGN  # negatives flipped, positives above them
    return (((((bits << _FIELD) | i) << _FIELD | j) << _FIELD | vi) << _FIELD) | vj


def _candidates(
    alive: list[_Group],
    threshold: float,
    margin: float,
    block: int,
    neighbours_of: Callable[[np.ndarray, float], list[tuple[int, int, float]]] | None,
) -> tuple[list[set[int]], _Heap]:
    """Each group's neighbours (link above ``threshold``), and the heap of the pairs whose
    link is above what a merge needs (``threshold + margin / sqrt(n_a n_b)``)."""
    means = np.stack([g.sum / g.n for g in alive]).astype(np.float32)
    neighbours: list[set[int]] = [set() for _ in alive]
    heap: _Heap = []
    # A union's link is a weighted mean of its parts' links: a pair can only come above the
    # threshold later if some pair of its parts is above it now (the neighbours).
    if neighbours_of is not None:
        pairs: Iterable[tuple[int, int, float]] = neighbours_of(means, threshold)
    else:
        pairs = _pairs_above(means, threshold, block)
    counts = [g.n for g in alive]
    for a, c, sim in pairs:
        neighbours[a].add(c)
        neighbours[c].add(a)
        if sim > (threshold + margin / math.sqrt(counts[a] * counts[c]) if margin else threshold):
            heap.append(_entry(-sim, a, c, 0, 0))
    heapq.heapify(heap)
    return neighbours, heap


def _merge_greedily(
    alive: list[_Group], neighbours: list[set[int]], heap: _Heap, threshold: float, margin: float
) -> list[bool]:
    """Merges the most similar compatible pair while the heap holds one; which groups were
    absorbed (dead). A pair whose version is past was pushed again with its new link.

    The links of a merged group to its neighbours are computed together (one product of its sum
    with theirs, and their thresholds ``threshold + margin / sqrt(n_a n_b)`` likewise): one by
    one they were a quarter of a settle's time where a few people fill a library (a hundred
    neighbours a face or more, 1,920 faces of 21 people)."""
    version = [0] * len(alive)
    dead = [False] * len(alive)
    while heap:
        e = heapq.heappop(heap)
        vb, va, b, a = e & _MASK, (e >> _FIELD) & _MASK, (e >> 2 * _FIELD) & _MASK, (e >> 3 * _FIELD) & _MASK
        if dead[a] or dead[b] or va != version[a] or vb != version[b]:
            continue
        ga, gb = alive[a], alive[b]
        if not _compatible(ga, gb):
            continue
        keep, gone = _survivor(ga, gb)
        k, g = (a, b) if keep is ga else (b, a)
        _absorb(keep, gone)
        dead[g] = True
        version[k] += 1
        neighbours[k] = (neighbours[k] | neighbours[g]) - {k, g}
        live = [x for x in neighbours[k] if not dead[x]]
        if not live:
            continue
        sums = np.stack([alive[x].sum for x in live])
        counts = np.array([alive[x].n for x in live], dtype=np.float64) * keep.n
        links = (sums @ keep.sum) / counts
        floors = threshold + margin / np.sqrt(counts) if margin else np.full(len(live), threshold)
        for x, link, above in zip(live, links.tolist(), (links > floors).tolist()):
            neighbours[x].discard(g)
            neighbours[x].add(k)
            if above:
                lo, hi = (k, x) if k < x else (x, k)
                heapq.heappush(heap, _entry(-link, lo, hi, version[lo], version[hi]))
    return dead


def _pairs_above(means: np.ndarray, floor: float, block: int) -> Iterator[tuple[int, int, float]]:
    for start in range(0, len(means), block):
        sims = means[start : start + block] @ means.T
        rows, cols = np.nonzero(sims > floor)
        for r, c, sim in zip(rows.tolist(), cols.tolist(), sims[rows, cols].tolist()):
            if c > start + r:
                yield start + r, c, sim


def _singletons(faces: Faces, members: Sequence[int]) -> list[_Group]:
    return [
        _Group(
            faces.embeddings[i].astype(np.float64),
            [i],
            set(),
            {faces.photo[i]},
            set(faces.rejected[i]),
            faces.locked[i],
            None,
        )
        for i in members
    ]


def recluster(
    faces: Faces,
    locked_persons: set[str],
    rules: Rules,
    new_person_id: Callable[[str, set[str]], str],
    merged_into: dict[str, str] | None = None,
) -> list[str | None]:
    """The person of every face after reclustering (None: still unassigned).

    ``new_person_id(founding_face_id, taken)`` names a person this creates (a split-off group
    or a founder among the unassigned) with an id not in ``taken``. ``merged_into``, when
    given, is filled with each person merged away and the person that absorbed it.
    """
    # A person holding a face the user placed there is the user's too.
    locked_persons = set(locked_persons) | {p for p, lk in zip(faces.person, faces.locked) if lk and p}
    by_person: dict[str, list[int]] = {}
    unassigned: list[int] = []
    for i, p in enumerate(faces.person):
        (by_person.setdefault(p, []) if p else unassigned).append(i)
    taken = set(by_person) | set(locked_persons)
    groups: list[_Group] = []
    for pid, members in sorted(by_person.items()):
        groups += _split_person(faces, pid, members, pid in locked_persons, rules, new_person_id, taken, unassigned)
    merged = agglomerate(groups, rules.mean_threshold)
    result: list[str | None] = [None] * len(faces.ids)
    absorbed: dict[str, str] = {}
    for g in merged:
        for i in g.members:
            result[i] = g.person
        absorbed.update((name, g.person) for name in g.names if name != g.person and g.person)
    _place_unassigned(faces, sorted(set(unassigned)), result, rules, new_person_id, taken, absorbed)
    if merged_into is not None:
        merged_into.update(absorbed)
    return result


def _split_person(
    faces: Faces,
    pid: str,
    members: list[int],
    locked: bool,
    rules: Rules,
    new_person_id: Callable[[str, set[str]], str],
    taken: set[str],
    unassigned: list[int],
) -> list[_Group]:
    """The groups person ``pid`` splits into: the first keeps ``pid``, each other founds a
    person (its id added to ``taken``), or joins ``unassigned`` when no face of it can found one."""
    groups: list[_Group] = []
    for n, part in enumerate(_parts(faces, members, locked, rules)):
        part = sorted(part)
        if n == 0:
            person: str | None = pid
        elif any(faces.can_found[i] for i in part):
            person = new_person_id(faces.ids[part[0]], taken)
            taken.add(person)
        else:
            unassigned.extend(part)
            continue
        groups.append(
            _Group(
                faces.embeddings[part].astype(np.float64).sum(axis=0),
                part,
                {p for p in (person, pid if n == 0 else None) if p},
                {faces.photo[i] for i in part},
                set().union(*(faces.rejected[i] for i in part)),
                locked and n == 0,
                person,
            )
        )
    return groups


def _parts(faces: Faces, members: list[int], locked: bool, rules: Rules) -> list[list[int]]:
    """A person's faces in the groups average linkage finds, the one to keep the person first."""
    if locked or len(members) < 2 or len(members) > SPLIT_LIMIT:
        return [members]
    parts = [g.members for g in agglomerate(_singletons(faces, members), rules.mean_threshold)]
    # The part holding the user's placed faces keeps the person, else the largest.
    parts.sort(key=lambda m: (not any(faces.locked[i] for i in m), -len(m), min(m)))
    return parts


def _place_unassigned(
    faces: Faces,
    pending: list[int],
    result: list[str | None],
    rules: Rules,
    new_person_id: Callable[[str, set[str]], str],
    taken: set[str],
    absorbed: dict[str, str],
) -> None:
    index = PersonIndex(rules)
    assigned = [i for i, p in enumerate(result) if p is not None]
    if assigned:
        index.add_many([result[i] for i in assigned], faces.embeddings[assigned])  # type: ignore[misc]
    in_photo: dict[str, set[str]] = {}
    for i in assigned:
        in_photo.setdefault(faces.photo[i], set()).add(result[i])  # type: ignore[arg-type]
    # Clear faces first, then by id: deterministic, and a poor face cannot claim first.
    for i in sorted(pending, key=lambda i: (not faces.can_found[i], faces.ids[i])):
        if faces.locked[i]:
            continue
        # Rejecting a person rejects whoever absorbed it: the face must not meet it there.
        rejected = set(faces.rejected[i])
        exclude = in_photo.get(faces.photo[i], set()) | rejected | {absorbed[r] for r in rejected if r in absorbed}
        decision = index.decide(faces.embeddings[i], exclude=exclude)
        person = decision.person_id
        if person is None and not decision.ambiguous and faces.can_found[i]:
            person = new_person_id(faces.ids[i], taken)
            taken.add(person)
        result[i] = person
        if person is not None:
            index.add(person, faces.embeddings[i])
            in_photo.setdefault(faces.photo[i], set()).add(person)
