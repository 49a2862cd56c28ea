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

from collections.abc import Callable, Sequence
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
    """Greedy average-linkage merging, most similar compatible pair first (the smallest
    indices on a tie), while the pair's link is above ``threshold + margin / sqrt(n_a n_b)``:
    two single faces need ``threshold + margin``, groups less as the number of face pairs
    behind their mean grows.

    ``neighbours_of(means, floor)`` may give the candidate pairs (i < j, link above ``floor``)
    instead of the blockwise comparison of every pair (a nearest-neighbour search at scale).
    """
    alive = list(groups)
    if len(alive) < 2:
        return alive
    merging = _Merging(alive, threshold, margin)
    merging.start(*_candidates(merging.sums, merging.counts, threshold, block, neighbours_of))
    merging.run()
    survivors = [g for i, g in enumerate(alive) if not merging.dead[i]]
    for g in survivors:
        g.sum = g.sum.copy()  # not a row of the merging's matrix, which goes with it
    return survivors


def _candidates(
    sums: np.ndarray,
    counts: np.ndarray,
    threshold: float,
    block: int,
    neighbours_of: Callable[[np.ndarray, float], list[tuple[int, int, float]]] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The pairs (i < j) of groups whose link is above ``threshold``, their links, and whether
    those are the exact links (float64), in the order of the pairs, rather than
    ``neighbours_of``'s (float32, a nearest-neighbour search)."""
    means = (sums / counts[:, None]).astype(np.float32)
    if neighbours_of is not None:
        pairs = neighbours_of(means, threshold)
        if not pairs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), False
        columns = list(zip(*pairs))
        return (
            np.array(columns[0], np.int64),
            np.array(columns[1], np.int64),
            np.array(columns[2], np.float64),
            False,
        )
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(sums), block):
        # Found in float32, then each pair's link in float64: a row of sums each where they are
        # few (most faces of a large library), one product of the block where they are many.
        rows, cols = np.nonzero(means[start : start + block] @ means.T > threshold - 1e-4)  # by row, then column
        upper = cols > rows + start
        rows, cols = rows[upper] + start, cols[upper]
        if len(rows) < 16 * min(block, len(sums) - start):
            links = np.einsum("ij,ij->i", sums[rows], sums[cols]) / (counts[rows] * counts[cols])
        else:
            found = sums[start : start + block] @ sums.T
            links = found[rows - start, cols] / (counts[rows] * counts[cols])
        above = links > threshold
        parts.append((rows[above], cols[above], links[above]))
    lo, hi, found = (np.concatenate(column) for column in zip(*parts))
    return lo.astype(np.int64), hi.astype(np.int64), found, True


_Known = tuple[float, np.ndarray, np.ndarray, int]  # a group's faces, neighbours, links to them, when


class _Merging:
    """The state of `agglomerate`'s merging, in arrays: each live group's best partner (the
    most similar compatible neighbour whose link is above what the pair needs) and that link,
    so that the next merge is the group with the highest best link, found by one ``argmax``.

    A merge computes the merged group's links to its neighbours at once (from its two parts'
    links where both knew them, else one product of its sum with theirs) and updates their best
    partners together. A neighbour whose best partner was one of the two merged groups and
    whose link to the union fell below its second best's bound keeps a bound (``bound``): none
    of its links is higher, so it is looked at again (its links to the groups changed since
    computed) only once that bound is the highest. This replaced a heap of every pair's link,
    where a merged group pushed a pair for each of its neighbours: where a few people fill a
    library (hundreds of neighbours a face) that heap's work grew with the cube of the faces
    (8,000 faces of 20 people: 29 s)."""

    def __init__(self, alive: list[_Group], threshold: float, margin: float) -> None:
        n = len(alive)
        self.alive, self.threshold, self.margin = alive, threshold, margin
        self.sums = np.empty((n, len(alive[0].sum)), dtype=np.float64)
        for i, g in enumerate(alive):  # each group's sum becomes a row of one matrix
            self.sums[i] = g.sum
            g.sum = self.sums[i]
        self.counts = np.array([g.n for g in alive], dtype=np.float64)
        self.dead = np.zeros(n, dtype=bool)
        self.best = np.full(n, -np.inf)  # each live group's best link; -inf: none
        self.partner = np.zeros(n, dtype=np.int64)
        self.bound = np.zeros(n, dtype=bool)  # best is only a bound: look again before merging
        self.second = np.full(n, -np.inf)  # at least each group's best link to another partner
        self.root = np.arange(n)  # the live group each group is now part of
        self.parts: list[list[int]] = [[i] for i in range(n)]
        self.neighbours: list[np.ndarray] = []
        self.excluded: dict[int, set[int]] = {}  # pairs found incompatible since either merged
        # Groups with a face in one photo are never one person, whatever they absorb: each
        # group's links leave out those sharing a photo with it (``clash``: the groups it was
        # made of, and the groups that shared a photo with any of them).
        in_photo: dict[str, list[int]] = {}
        for i, g in enumerate(alive):
            for photo in g.photos:
                in_photo.setdefault(photo, []).append(i)
        together = {photo: np.array(members) for photo, members in in_photo.items()}
        self.clash = [
            together[next(iter(g.photos))]
            if len(g.photos) == 1
            else np.concatenate([np.array([i]), *(together[p] for p in g.photos)])
            for i, g in enumerate(alive)
        ]
        self.mark = np.zeros(n, dtype=bool)
        self.seen_flag = np.zeros(n, dtype=bool)  # `_distinct`'s scratch
        # Each group's links to its neighbours as last computed, and when (``clock`` counts the
        # merges): looking again, only the links to groups changed since are computed.
        self.clock = 0
        self.changed = np.zeros(n, dtype=np.int64)
        self.seen = np.full(n, -1, dtype=np.int64)
        self.cached: list[np.ndarray] = [np.zeros(0)] * n

    def _needed(self, counts: np.ndarray) -> np.ndarray | float:
        return self.threshold + self.margin / np.sqrt(counts) if self.margin else self.threshold

    def start(self, lo: np.ndarray, hi: np.ndarray, links: np.ndarray, exact: bool) -> None:
        """Neighbours (links above the threshold) and best partners from the candidate pairs;
        with ``exact`` links of pairs in order, each group's links as known (``cached``)."""
        n = len(self.alive)
        # Each group's edges in the order of their other end: those where it is the pair's
        # second, then its first (pairs come in order, and the sort by group keeps that order).
        src, dst, val = np.concatenate((hi, lo)), np.concatenate((lo, hi)), np.concatenate((links, links))
        order = np.argsort(src, kind="stable")
        src, dst, val = src[order], dst[order], val[order]
        edges = np.searchsorted(src, np.arange(n + 1))
        self.neighbours = [dst[edges[i] : edges[i + 1]] for i in range(n)]
        if exact:
            self.cached = [val[edges[i] : edges[i + 1]] for i in range(n)]
            self.seen[:] = 0  # known at the start, before any merge
        if not len(src):
            return
        val = np.where(val > self._needed(self.counts[src] * self.counts[dst]), val, -np.inf)
        sizes = np.diff(edges)
        has = np.flatnonzero(sizes)
        starts, sizes = edges[has], sizes[has]
        top = np.maximum.reduceat(val, starts)
        first = np.minimum.reduceat(np.where(val == np.repeat(top, sizes), dst, n), starts)  # the smallest partner
        second = np.maximum.reduceat(np.where(dst == np.repeat(first, sizes), -np.inf, val), starts)
        found = top > -np.inf
        self.best[has[found]] = top[found]
        self.partner[has[found]] = first[found]
        self.second[has[found]] = second[found]

    def run(self) -> None:
        while True:
            x = int(np.argmax(self.best))
            if self.best[x] == -np.inf:
                return
            if self.bound[x]:
                self._look_again(x)
                continue
            y = int(self.partner[x])
            if not _compatible(self.alive[x], self.alive[y]):
                self.excluded.setdefault(x, set()).add(y)
                self.excluded.setdefault(y, set()).add(x)
                self._look_again(x)
                continue
            self._merge(x, y)

    def _links(
        self, x: int, parts: tuple[_Known | None, _Known | None] = (None, None)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``x``'s live neighbours (sorted), its links to them, and whether each is above what
        the pair needs and not found incompatible. ``parts``: what the two groups ``x`` was just
        made of knew of their links (``_known``), from which most of its own follow."""
        near = self._distinct(self.root[self.neighbours[x]])
        near = near[near != x]
        counts = self.counts[near] * self.counts[x]
        links = np.empty(len(near))
        if parts[0] is not None and parts[1] is not None:
            # A union's link is its parts' links weighted by their faces, S_z . (S_a + S_b) /
            # (n_z (n_a + n_b)): no sum is read where both parts knew theirs.
            (na, a, known_a), (nb, b, known_b) = (self._recall(part, near) for part in parts)
            fresh = ~(known_a & known_b)
            links[~fresh] = (na * a[~fresh] + nb * b[~fresh]) / (na + nb)
        elif (own := self._known(x)) is None:  # new, or changed itself: every link
            fresh = np.ones(len(near), dtype=bool)
        else:
            _, known, held = self._recall(own, near)
            fresh = ~held  # changed since, or not a neighbour then
            links[held] = known[held]
        links[fresh] = (self.sums[near[fresh]] @ self.sums[x]) / counts[fresh]
        self.neighbours[x], self.cached[x], self.seen[x] = near, links, self.clock
        ok = links > self._needed(counts)
        clash = self.root[self.clash[x]]
        self.mark[clash] = True
        ok &= ~self.mark[near]
        self.mark[clash] = False
        if x in self.excluded:
            ok &= ~np.isin(near, list(self.excluded[x]))
        return near, links, ok

    def _distinct(self, groups: np.ndarray) -> np.ndarray:
        """``groups`` sorted, each once. Where they are many against all the groups (a few
        people's many faces), flagged and read back in one pass: ``np.unique`` on those took a
        quarter of a settle of 8,000 faces of 20 people."""
        if 16 * len(groups) < len(self.dead):
            ordered = np.sort(groups)
            return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered
        self.seen_flag[groups] = True
        found = np.flatnonzero(self.seen_flag)
        self.seen_flag[found] = False
        return found

    def _known(self, x: int) -> _Known | None:
        """``x``'s faces, and its neighbours and links to them as last computed, and when; None
        if it changed since."""
        if self.seen[x] < self.changed[x]:
            return None
        return self.counts[x], self.neighbours[x], self.cached[x], int(self.seen[x])

    def _recall(self, known: _Known | None, near: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The faces of the group ``known`` describes, its links to ``near`` as it knew them, and
        where they still hold (a neighbour then, unchanged since)."""
        if known is None or not len(known[1]):
            return 0.0, np.zeros(len(near)), np.zeros(len(near), dtype=bool)
        faces, neighbours, links, seen = known
        at = np.minimum(np.searchsorted(neighbours, near), len(neighbours) - 1)
        return faces, links[at], (neighbours[at] == near) & (self.changed[near] <= seen)

    def _choose(self, x: int, near: np.ndarray, links: np.ndarray, ok: np.ndarray) -> None:
        self.bound[x] = False
        candidates = np.where(ok, links, -np.inf)
        i = int(np.argmax(candidates)) if len(near) else 0  # the first highest: the smallest partner
        if not len(near) or candidates[i] == -np.inf:
            self.best[x] = -np.inf
            return
        self.best[x], self.partner[x] = candidates[i], near[i]
        candidates[i] = -np.inf
        self.second[x] = candidates.max()

    def _look_again(self, x: int) -> None:
        self._choose(x, *self._links(x))

    def _merge(self, x: int, y: int) -> None:
        keep, gone = _survivor(self.alive[x], self.alive[y])
        k, g = (x, y) if keep is self.alive[x] else (y, x)
        parts = (self._known(k), self._known(g))
        _absorb(keep, gone)
        self.clock += 1
        self.changed[k] = self.clock
        self.sums[k] = keep.sum
        keep.sum = self.sums[k]
        self.counts[k] = keep.n
        self.dead[g] = True
        self.best[g] = -np.inf
        self.root[self.parts[g]] = k
        self.parts[k] += self.parts[g]
        self.parts[g] = []
        for w in self.excluded.pop(k, set()) | self.excluded.pop(g, set()):
            self.excluded[w] -= {k, g}
        self.neighbours[k] = np.concatenate((self.neighbours[k], self.neighbours[g]))
        self.neighbours[g] = self.neighbours[g][:0]
        self.clash[k] = np.concatenate((self.clash[k], self.clash[g]))
        self.clash[g] = self.clash[g][:0]
        near, links, ok = self._links(k, parts)
        self._choose(k, near, links, ok)
        # The neighbours' best partners. ``second`` bounds every link of a neighbour but its
        # best: where the best was one of the two merged groups and the union's link stays above
        # that bound, the union is still the best; where it falls short, the best is known only
        # to be at most the larger of the two, a bound looked at again when it is the highest.
        best, partner, bound, second = self.best[near], self.partner[near], self.bound[near], self.second[near]
        union = np.where(ok, links, -np.inf)
        was = ~bound & ((partner == k) | (partner == g))
        other = ~bound & ~was
        beats = ok & ((links > best) | (other & (links == best) & (k < partner)))  # ties: the smaller index
        takes = ((bound | other) & beats) | (was & ok & (links > second))
        fell = was & ~takes
        self.second[near] = np.where(takes & ~was, best, np.where(other & ~takes, np.maximum(second, union), second))
        self.best[near] = np.where(takes, links, np.where(fell, np.maximum(second, union), best))
        self.partner[near] = np.where(takes, k, partner)
        self.bound[near] = np.where(takes, False, bound | fell)


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
