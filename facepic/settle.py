"""Settling: the faces stored since the last settle get their final persons, decided together.

The index stage assigns each face as it arrives (`facepic.matching`): quick, but the result
depends on arrival order, and at thousands of identities its mean-similarity rule joins
strangers. Settling decides the new faces again, all at once, in a way that does not depend on
the order they came in:

1. every new face starts on its own (a face the user placed stays where they put it, and so
   does a face the index stage gave a person the user named or merged);
2. the settled persons near them (a new face's mean similarity to the person above the
   floor; found through the index worker's `PersonIndex`, so the work grows with the new
   faces, not the library) take part: the small ones (``REFORM`` faces at most, not the
   user's) face by face like the new faces, so that a person formed early from a few faces
   is not frozen by the order they came in; the others as they are, never split;
3. groups merge by average linkage (`facepic.clustering.agglomerate`), most similar pair first,
   while their mean similarity is above ``floor + margin / sqrt(n_a n_b)``: large groups need
   about the floor, two single faces 0.1 more, since a mean over many face pairs says more
   than one pair does. The floor adapts to the library: it follows how many persons of two
   faces or more it holds (counted by a first, strict pass), since the more people, the more of
   them resemble any face: 0.19 among 20 such persons, 0.23 among 100, 0.29 among 1,000
   (`Linkage`);
4. a group holding a settled person keeps that person's id; a group of new faces only keeps
   the person the index stage gave most of them, where that person has no other faces and none
   of them rejected it (so settling what the index stage grouped alike rewrites nothing, and a
   person's id does not change under the user's eyes), else becomes the person
   ``ids.person_id(its smallest face id)``; unless all its faces are too poor to found a person
   (they stay unassigned).

What the user decided is never undone (as in `facepic.clustering`): a locked person is never
absorbed, two locked persons never merge, a face never joins a person it rejected (or one that
absorbed it), two faces of one photo never share a person.

A fresh library's first settle sees every face as new: its persons (which faces are together)
are then the same whatever the order the photos came in, and ``everything=True`` gives any
library that result again.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facepic import ids
from facepic.changes import Change
from facepic.clustering import Faces, _Group, agglomerate
from facepic.context import Context
from facepic.db import Library
from facepic.derived import Covers, counted_moves
from facepic.documents import embeddings_from_bson
from facepic.matching import PersonIndex, Rules
from facepic.models import EMBEDDING_DIM
from facepic.persons import ReclusterSummary as Summary
from facepic.persons import apply_imported_names
from facepic.settings import Settings


@dataclass(frozen=True)
class Linkage:
    """When two groups of faces are one person: mean similarity above
    ``floor + margin / sqrt(n_a n_b)``. The floor follows how crowded the library is: it is
    ``threshold`` in a library of ``reference`` persons and rises by ``per_decade`` each time
    the persons grow tenfold, since the more people there are, the more of them resemble any
    one face by chance or by kin (measured: a face's most similar stranger is at 0.20 among 23
    people, 0.29 among 5,300). Persons of two faces or more count (strangers seen once in a
    family's photos do not make its people harder to tell apart); they are counted by a first,
    strict pass at ``first``
    (the floor never goes above it, nor above the threshold where that is higher). The margin is about 1.5 standard deviations of the
    similarity of two strangers' faces (0.065-0.075 on every labelled folder), the chance
    spread of a one-pair mean. ``bench/quality.py --held-out`` is how these were chosen."""

    threshold: float
    margin: float
    per_decade: float
    reference: int = 100  # persons at which the floor is ``threshold`` (a fact of the rule, not a setting)
    first: float = 0.32  # the strict pass that counts the persons

    @classmethod
    def from_settings(cls, settings: Settings) -> Linkage:
        return cls(settings.link_threshold, settings.link_margin, settings.link_per_decade)

    @classmethod
    def default(cls) -> Linkage:
        return cls.from_settings(Settings.defaults())

    def floor(self, persons: int) -> float:
        """The floor in a library of ``persons`` persons."""
        return self.threshold + self.per_decade * math.log10(max(persons, 1) / self.reference)

    @property
    def strict(self) -> float:
        """The first pass's floor: ``first``, or the threshold where that is higher."""
        return max(self.first, self.threshold)

    def level(self, persons: int) -> float:
        """What the largest groups need to be one person in a library of ``persons`` persons of
        two faces or more: the floor, never above the strict pass's."""
        return min(self.floor(persons), self.strict)

    def needed(self, n_a: Any, n_b: Any, persons: int) -> Any:
        """The mean similarity two groups of ``n_a`` and ``n_b`` faces need to be one person in a
        library of ``persons`` persons of two faces or more (numbers, or numpy arrays of them)."""
        return self.level(persons) + self.margin / np.sqrt(np.multiply(n_a, n_b))


@dataclass
class Settled:
    """A settled person near the new faces: the sum and count of its settled faces, the photos
    among the new faces' photos it has a face in, the persons its faces reject."""

    sum: np.ndarray
    count: int
    photos: set[str] = field(default_factory=set)
    rejects: set[str] = field(default_factory=set)
    locked: bool = False


def near_persons(
    index: PersonIndex, embeddings: np.ndarray, online: Iterable[str | None], floor: float
) -> dict[str, tuple[np.ndarray, int]]:
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
    if len(index) <= sum(new_count.values()):
        return {}  # the index holds the new faces alone (a library's first settle): no one is settled
    found: dict[str, tuple[np.ndarray, int]] = {}
    for pid in sorted(index.near(embeddings, floor - 0.1)):  # its means still hold the new faces
        total, count = index.person_sum(pid)
        count -= new_count.get(pid, 0)
        if count > 0:
            found[pid] = (total.astype(np.float64) - new_sum.get(pid, 0), count)
    if not found:
        return {}
    pids = sorted(found)
    means = np.stack([found[p][0] / found[p][1] for p in pids]).astype(np.float32)
    best = (np.asarray(embeddings, dtype=np.float32) @ means.T).max(axis=0)
    return {p: found[p] for p, b in zip(pids, best) if b > floor}


EXACT_PAIRS = 10_000  # groups; above, each group's candidates are its NEIGHBOURS most similar
NEIGHBOURS = 32
# Groups from which they are searched by faiss's inverted file, not exactly. On lfw-large (13,446
# faces) the persons were the same as with the exact comparison (F 0.9939 both; 6,251 of 6,257
# persons the same faces) in 17.5 s instead of 40.9 s.
IVF_FROM = 10_000


def _nearest_pairs(means: np.ndarray, floor: float, block: int = 1024) -> list[tuple[int, int, float]]:
    """Each group's ``NEIGHBOURS`` most similar groups above ``floor`` (a faiss inverted-file
    search past ``IVF_FROM`` groups: the exact comparison costs the square of the groups, 19 s
    of a 64 s settle at 40,000 faces): a first settle of a large library keeps its pairs, and
    the memory they take, proportional to its faces rather than to their square."""
    n = len(means)
    k = min(NEIGHBOURS + 1, n)
    means = np.ascontiguousarray(means, dtype=np.float32)
    search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    if n > IVF_FROM:
        import faiss

        quantizer = faiss.IndexFlatIP(means.shape[1])
        ivf = faiss.IndexIVFFlat(quantizer, means.shape[1], int(2 * np.sqrt(n)), faiss.METRIC_INNER_PRODUCT)
        ivf.train(means[np.random.default_rng(0).choice(n, min(n, 100_000), replace=False)])
        ivf.add(means)
        ivf.nprobe = 16
        search = lambda part: ivf.search(part, k)  # noqa: E731
    else:

        def search(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sims = part @ means.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            return np.take_along_axis(sims, top, axis=1), top

    pairs: set[tuple[int, int]] = set()
    out: list[tuple[int, int, float]] = []
    for start in range(0, n, block):
        sims, cols = search(means[start : start + block])
        for r, (row_sims, row_cols) in enumerate(zip(sims.tolist(), cols.tolist())):
            a = start + r
            for sim, c in zip(row_sims, row_cols):
                if c < 0 or c == a or sim <= floor:
                    continue
                key = (a, c) if a < c else (c, a)
                if key not in pairs:
                    pairs.add(key)
                    out.append((key[0], key[1], sim))
    return out


def settle_faces(
    new: Faces,
    persons: Mapping[str, Settled],
    linkage: Linkage,
    new_person_id: Callable[[str, set[str]], str],
    persons_elsewhere: int = 0,
    reformed: frozenset[str] = frozenset(),
    keep: Callable[[str], bool] | None = None,
) -> tuple[list[str | None], dict[str, str]]:
    """The person of each new face (None: unassigned) and the settled persons merged into
    another (merged away -> absorbed by), in a library that holds ``persons_elsewhere`` persons
    of two faces or more besides these: the floor follows the persons of two faces or more a
    first, strict pass finds, those included. ``new.person`` is where a locked face stays; faces of the
    settled persons ``reformed`` are among the new faces and are grouped again like them (a
    group keeps the id most of its faces had). A group of new faces keeps the person the index
    stage gave most of them where ``keep(person_id)`` allows it (a person of these faces only)
    and none of them rejected it, so that settling what the index stage grouped alike rewrites
    nothing; otherwise ``new_person_id(face_id, used)`` names it after its smallest face id,
    with an id not in ``used`` (the ids this settle gave already)."""
    groups = _starting_groups(new, persons)
    merged = _grouped(groups, new, linkage, persons_elsewhere)
    founding = [g for g in merged if g.person is None and any(new.can_found[i] for i in g.members)]
    used = _name_founding(new, founding, set(persons), reformed, new_person_id, keep)
    result: list[str | None] = [p if new.locked[i] else None for i, p in enumerate(new.person)]
    absorbed: dict[str, str] = {}
    for g in merged:
        if g.person is None:
            continue  # poor faces alone found nobody
        for i in g.members:
            result[i] = g.person
        absorbed.update((name, g.person) for name in g.names if name != g.person and name not in reformed)
    for pid in sorted(reformed - used):  # gone: its faces went to other persons
        held = [r for i in range(len(new.ids)) if new.person[i] == pid and (r := result[i])]
        if held:
            absorbed[pid] = max(sorted(set(held)), key=held.count)
    return result, absorbed


def _starting_groups(new: Faces, persons: Mapping[str, Settled]) -> list[_Group]:
    """The settled persons as they are (a face the user placed joins its person), then every
    other new face on its own, in face id order."""
    groups: dict[str, _Group] = {}
    for pid in sorted(persons):
        s = persons[pid]
        groups[pid] = _Group(
            np.asarray(s.sum, dtype=np.float64),
            [],
            {pid},
            set(s.photos),
            set(s.rejects),
            s.locked,
            pid,
            unlisted=s.count,
        )
    singles: list[_Group] = []
    for i in sorted(range(len(new.ids)), key=lambda i: new.ids[i]):
        e = new.embeddings[i].astype(np.float64)
        held_by = new.person[i]
        if new.locked[i] and held_by:
            g = groups.get(held_by)
            if g is None:
                g = groups[held_by] = _Group(np.zeros_like(e), [], {held_by}, set(), set(), True, held_by)
            g.locked = True  # a person holding a face the user placed is the user's
            g.sum = g.sum + e
            g.members.append(i)
            g.photos.add(new.photo[i])
            g.rejects |= new.rejected[i]
            continue
        # Every face carries the person it was in (a re-formed settled person, or the index
        # stage's), so a face that rejected that person never joins its faces, whatever id their
        # group ends with, even when all of them are grouped afresh (`settle --all`).
        was_in = {held_by} if held_by else set()
        singles.append(_Group(e, [i], set(), {new.photo[i]}, set(new.rejected[i]), False, None, held=was_in))
    return list(groups.values()) + singles


def _grouped(groups: list[_Group], new: Faces, linkage: Linkage, persons_elsewhere: int) -> list[_Group]:
    """Average linkage in two passes: a strict one that counts the persons of two faces or more
    (with ``persons_elsewhere``), then on to the floor that count gives."""
    nearest = _nearest_pairs if len(groups) > EXACT_PAIRS else None
    strict = agglomerate(groups, linkage.strict, margin=linkage.margin, neighbours_of=nearest)
    found = persons_elsewhere + sum(
        1 for g in strict if g.n > 1 and (g.names or any(new.can_found[i] for i in g.members))
    )
    nearest = _nearest_pairs if len(strict) > EXACT_PAIRS else None
    return agglomerate(strict, linkage.level(found), margin=linkage.margin, neighbours_of=nearest)


def _name_founding(
    new: Faces,
    founding: list[_Group],
    settled: set[str],
    reformed: frozenset[str],
    new_person_id: Callable[[str, set[str]], str],
    keep: Callable[[str], bool] | None,
) -> set[str]:
    """Give each group of new faces its person id (see `settle_faces`); the ids given."""
    # A re-formed person's id goes to the group holding most of its faces (then the smaller id).
    named: dict[int, str] = {}
    used: set[str] = set()
    for _, voted, _, n in _votes(new, founding, lambda pid: pid in reformed):
        if n not in named and voted not in used:
            named[n], used = voted, used | {voted}
    if keep is not None:
        # Then the index stage's persons of these faces only, the same way. (No face of a group
        # rejected a person another face of it was in: `held` kept them apart.)
        taken = settled | reformed
        for _, voted, _, n in _votes(new, founding, lambda pid: pid not in taken):
            if n not in named and voted not in used and keep(voted):
                named[n], used = voted, used | {voted}
    for n, g in enumerate(founding):
        if n not in named:
            g.person = new_person_id(min(new.ids[i] for i in g.members), used)
            used.add(g.person)
        else:
            g.person = named[n]
    return used


def _votes(new: Faces, groups: list[_Group], eligible: Callable[[str], bool]) -> list[tuple[int, str, str, int]]:
    """(-faces, person, smallest face id, group) for each eligible person the faces of a group
    had, most faces first."""
    return sorted(
        (-sum(1 for i in g.members if new.person[i] == pid), pid, min(new.ids[i] for i in g.members), n)
        for n, g in enumerate(groups)
        for pid in {new.person[i] for i in g.members}
        if pid is not None and eligible(pid)
    )


REFORM = 64  # a settled person of at most this many faces near new faces is grouped again


def settle_batch(
    new: Faces,
    index: PersonIndex,
    linkage: Linkage,
    describe: Callable[[list[str]], Mapping[str, Settled]],
    new_person_id: Callable[[str, set[str]], str],
    library_persons: int = 0,
    members: Callable[[list[str]], tuple[Faces, set[str]]] | None = None,
    keep: Callable[[str], bool] | None = None,
) -> tuple[Faces, list[str | None], dict[str, str]]:
    """`settle_faces` with the settled persons near the new faces found in ``index`` (the
    index stage's, holding the new faces as it assigned them); ``describe(person_ids)`` gives
    their photos, rejects and lock (sum and count are filled in from the index). The small ones
    (``REFORM`` faces at most) are grouped again face by face with the new faces, their faces
    given by ``members(person_ids)`` with the user's persons among them, which stay whole (named,
    or holding a face the user placed): a person formed early from few faces is not frozen by
    the order they came in. Returns the faces decided (the new ones, then the re-formed
    persons'), their persons and the persons merged away."""
    near = near_persons(index, new.embeddings, new.person, linkage.floor(library_persons))
    reformed: frozenset[str] = frozenset()
    small = sorted(p for p, (_, count) in near.items() if count <= REFORM)
    if members is not None and small:
        extra, users = members(small)
        new = _joined(new, extra)
        reformed = frozenset(small) - users
        near = {p: v for p, v in near.items() if p not in reformed}
    described = describe(sorted(near))  # after the re-formed faces joined: their photos count too
    persons = {}
    for pid, (total, count) in near.items():
        d = described.get(pid) or Settled(total, count)
        persons[pid] = Settled(total, count, d.photos, d.rejects, d.locked)
    taking_part = set(persons) | reformed | {p for p in new.person if p}
    elsewhere = max(0, library_persons - len(taking_part))
    result, absorbed = settle_faces(new, persons, linkage, new_person_id, elsewhere, reformed, keep)
    return new, result, absorbed


def _joined(a: Faces, b: Faces) -> Faces:
    return Faces(
        a.ids + b.ids,
        np.concatenate([a.embeddings, b.embeddings]),
        a.person + b.person,
        a.photo + b.photo,
        a.locked + b.locked,
        a.rejected + b.rejected,
        a.can_found + b.can_found,
    )


# --- on the library ----------------------------------------------------------------------------


def _index_of(lib: Library, model: str, rules: Rules) -> PersonIndex:
    """Every assigned face of ``model`` as the index worker loads them at its start."""
    from facepic import snapshot

    index = PersonIndex(rules)
    persons, matrix = snapshot.load(lib, model).assigned()
    if persons:
        index.add_many(persons, matrix)
    return index


def settle_library(
    lib: Library,
    linkage: Linkage,
    covers: Covers,
    rules: Rules | None = None,
    index: Callable[[str], PersonIndex] | None = None,
    everything: bool = False,
    slice_faces: int | None = None,
) -> Summary:
    """Settle the faces stored since the last settle and those still unassigned
    (``everything``: every face the user has not placed or named) and write their persons. ``index(model)``: the index stage's, holding
    every stored face as it is in the library (read from the library when not given).

    Run it when the index queue has drained: a face being stored while it runs may be passed
    over until ``everything`` settles it. ``slice_faces``: settle at most about that many of the
    faces stored since the last settle (the oldest), and say in ``more`` whether others remain;
    the unassigned ones are placed again with the last slice."""
    summary = Summary()
    model = lib.library_model()
    if model is None:
        return summary
    mark = lib.settle_mark()
    upto = lib.current_seq()
    last = 0 if everything or mark.get("model") != model else int(mark.get("seq", 0))
    if slice_faces is not None and not everything and upto - last > slice_faces:
        upto, summary.more = last + slice_faces, True  # numbers go to new faces and to moves alike
    # Faces left unassigned before (poor, ambiguous, rejected) are placed again: a clearer
    # face of their person may have come.
    docs = lib.faces_to_settle(model, None if everything else last, upto, unassigned=not summary.more)
    # Persons the user made, named, merged, picked a cover for or hid: theirs.
    named = lib.persons_of_the_user()
    summary.persons_before = lib.person_count()
    change = Change("settle", bump=False)
    if docs:
        first = last == 0  # from the library's first face of the model
        _settle_docs(lib, model, docs, named, linkage, rules or Rules.default(), index, change, summary, first)
    change.set_settle_mark(model, max(upto, last))
    summary.persons_created, summary.persons_deleted = change.commit(lib, covers)
    summary.persons_after = lib.person_count()
    return summary


class _Batch:
    """What settling a batch of the library's faces asks of the library as it goes: the
    settled persons near them, fresh person ids, the faces of small persons to group again,
    and whether the index stage's person may keep its id."""

    def __init__(self, lib: Library, new: Faces, named: set[str], first: bool = False) -> None:
        self.lib, self.named = lib, named
        self.faces = set(new.ids)  # the faces being decided, the re-formed persons' too
        self.photos = set(new.photo)
        self.taken: set[str] = set()
        self.held = _HeldElsewhere(lib, self.faces, Counter(p for p in new.person if p), named, first)

    def describe(self, person_ids: list[str]) -> dict[str, Settled]:
        out = {p: Settled(np.zeros(EMBEDDING_DIM), 0, locked=p in self.named) for p in person_ids}
        for f in self.lib.constraining_faces(person_ids, self.photos):
            if f["_id"] in self.faces:
                continue
            s = out[f["person_id"]]
            if f["image_id"] in self.photos:
                s.photos.add(f["image_id"])
            s.rejects.update(f.get("rejected") or ())
            s.locked = s.locked or bool(f.get("locked"))
        return out

    def new_id(self, face_id: str, used: set[str]) -> str:
        n = 0
        while True:
            pid = ids.person_id(face_id if n == 0 else f"{face_id}:settle:{n}")
            if pid not in self.taken and pid not in used and not self.held(pid):
                self.taken.add(pid)
                return pid
            n += 1

    def members(self, person_ids: list[str]) -> tuple[Faces, set[str]]:
        """The faces not yet in the batch of those of ``person_ids`` that are not the user's,
        which join it whole; and those that are the user's (named, or holding a face the user
        placed)."""
        wanted = set(person_ids)
        docs = [d for d in self.lib.faces_of_persons(person_ids) if d["_id"] not in self.faces]
        users = (self.named | {d["person_id"] for d in docs if d.get("locked")}) & wanted
        extra = [d for d in docs if d["person_id"] not in users]
        self.faces.update(d["_id"] for d in extra)
        self.held.whole.update(wanted - users)
        self.photos.update(d["image_id"] for d in extra)
        return _faces_of(extra, self.named), users

    def keep(self, person_id: str) -> bool:
        if person_id in self.taken or self.held(person_id):
            return False
        self.taken.add(person_id)
        return True


def _settle_docs(
    lib: Library,
    model: str,
    docs: list[dict[str, Any]],
    named: set[str],
    linkage: Linkage,
    rules: Rules,
    index_of: Callable[[str], PersonIndex] | None,
    change: Change,
    summary: Summary,
    first: bool = False,
) -> None:
    new = _faces_of(docs, named)
    index = index_of(model) if index_of is not None else _index_of(lib, model, rules)
    batch = _Batch(lib, new, named, first)
    decided, result, merged_into = settle_batch(
        new, index, linkage, batch.describe, batch.new_id, lib.recurring_person_count(), batch.members, batch.keep
    )
    # A person all of whose faces went to others (`settle --all` groups every face afresh) is
    # absorbed by the one that took most of them: what rejected it, or was answered "not the
    # same" as it, must not meet its faces there.
    merged_into.update(_absorbed(decided.person, result, merged_into, batch.held))
    _write_settled(lib, decided, result, merged_into, batch.faces, change, summary)


def _absorbed(
    before: Sequence[str | None], result: Sequence[str | None], merged: Mapping[str, str], held: Callable[[str], bool]
) -> dict[str, str]:
    """Each person of ``before`` that no face keeps in ``result`` (and not already ``merged``),
    to the person that took most of its faces (the first by id on a tie), unless ``held``. One
    pass over the faces: a scan per vanished person cost the square of the library (an end of
    run of 100,000 faces with thousands of persons regrouped spent minutes there)."""
    gone = {p for p in before if p} - {p for p in result if p} - set(merged)
    went: dict[str, Counter[str]] = {}
    for b, r in zip(before, result):
        if r and b in gone:
            went.setdefault(b, Counter())[r] += 1
    return {pid: max(sorted(went[pid]), key=went[pid].__getitem__) for pid in sorted(went) if not held(pid)}


def _write_settled(
    lib: Library,
    decided: Faces,
    result: list[str | None],
    merged_into: dict[str, str],
    batch: set[str],
    change: Change,
    summary: Summary,
) -> None:
    """Record in ``change`` the faces' new persons, and the faces of the persons merged away
    (outside ``batch``) joining the person that absorbed each."""
    face_ids, before = decided.ids, decided.person
    moved_out: dict[str, list[str]] = {}
    change.reject_for_each(merged_into)
    for f in lib.faces_with_images(sorted(merged_into)):
        if f["_id"] not in batch:
            moved_out.setdefault(merged_into[f["person_id"]], []).append(f["_id"])
    joining: dict[str | None, list[str]] = {}
    for i, fid in enumerate(face_ids):
        if result[i] != before[i]:
            joining.setdefault(result[i], []).append(fid)
    for kept_id, faces in moved_out.items():
        joining.setdefault(kept_id, []).extend(faces)
    change.set_persons(
        {pid: faces for pid, faces in joining.items() if pid is not None}, {"$unset": {"candidates": ""}}
    )
    if None in joining:
        change.set_person(joining[None], None)
    changed = [i for i in range(len(face_ids)) if before[i] != result[i]]
    touched = {p for i in changed for p in (before[i], result[i]) if p}
    touched |= set(merged_into) | set(merged_into.values())
    summary.faces_moved = sum(1 for i in changed if before[i] and result[i])
    summary.faces_moved += sum(len(f) for f in moved_out.values())
    summary.faces_assigned = sum(1 for i in changed if before[i] is None)
    changed_photos = {decided.photo[i] for i in changed}
    if moved_out:
        changed_photos |= lib.images_of_faces([x for fs in moved_out.values() for x in fs])
    change.touch(touched, changed_photos)
    left: dict[str, list[str]] = {}
    for i in changed:
        was = before[i]
        if was and was not in merged_into:  # an absorbed person is read (it ends empty)
            left.setdefault(was, []).append(face_ids[i])
    change.count_from_moves(counted_moves(lib, {p: f for p, f in joining.items() if p}, left))
    change.bump = bool(joining or merged_into)


def _faces_of(docs: list[dict[str, Any]], named: set[str]) -> Faces:
    # A person the user named or merged keeps the faces the index stage gave it: its faces
    # may be two groups the user said are one, whose mean similarity says nothing.
    embeddings = embeddings_from_bson([d["embedding"] for d in docs], EMBEDDING_DIM)
    return Faces(
        [d["_id"] for d in docs],
        embeddings,
        [d.get("person_id") for d in docs],
        [d["image_id"] for d in docs],
        [bool(d.get("locked")) or d.get("person_id") in named for d in docs],
        [frozenset(d.get("rejected") or ()) for d in docs],
        [bool(d.get("can_found", True)) for d in docs],
    )


class _HeldElsewhere:
    """Whether a person id is one the user made, or has a face outside the batch. Asked once
    per group a settle names: the first question reads, in bulk, the faces of every person the
    batch's faces are in (``persons``) and of every id their faces would found (a question per
    group was a round trip each), less the persons the batch holds ``whole`` (re-formed: every
    face of theirs was read into it); only an id outside those (a collision's second choice)
    is read alone. A settle from the library's ``first`` face counts the library's faces first:
    where the batch holds all of them (a new user's first drive), none is elsewhere and nothing
    is read. (Only then: the embedded server counts by a scan of every face.)"""

    def __init__(
        self, lib: Library, batch: set[str], persons: Counter[str], named: set[str], first: bool = False
    ) -> None:
        self.lib, self.batch, self.persons, self.named = lib, batch, persons, named  # persons: faces in the batch
        self.first = first
        self.whole: set[str] = set()
        self.known: set[str] | None = None
        self.held: set[str] = set()
        self.everything = False  # the batch holds every face of the library

    def __call__(self, person_id: str) -> bool:
        if person_id in self.named:
            return True
        if self.known is None:
            self.known = set(self.persons) | {ids.person_id(f) for f in self.batch}
            # The batch holding every face of the library (its first settle: a new user's
            # first drive), no face is elsewhere: counted instead of reading every face's
            # person (2.9 of lfw-large's 21 s end of run).
            self.everything = self.first and self.lib.holds_faces(len(self.batch))
            if not self.everything:
                self.held = self.lib.persons_with_faces_outside(
                    sorted(self.known - self.whole), self.batch, self.persons
                )
        if self.everything:
            return False
        if person_id not in self.known:
            self.known.add(person_id)
            if person_id not in self.whole and self.lib.persons_with_faces_outside([person_id], self.batch):
                self.held.add(person_id)
        return person_id in self.held


def settle_run(ctx: Context, slice_faces: int | None = None) -> Summary:
    """The settle at the end of `facepic run` (and of the index worker's drains, in slices of
    ``slice_faces``), with the index the index stage built. Names read from the photos' XMP are
    applied first, as corrections that settling respects."""
    settings = ctx.settings
    apply_imported_names(ctx.library, Covers(ctx))
    return settle_library(
        ctx.library,
        Linkage.from_settings(settings),
        Covers(ctx),
        Rules.from_settings(settings),
        ctx.matcher,
        slice_faces=slice_faces,
    )


PAIRS = 1_000_000  # pairs of waiting faces in one person at which `facepic run` settles them


class AsTheRunGoes:
    """`facepic run`'s settle, as its photos are analysed and at its end.

    Average linkage over the faces stored since the last settle costs about 2.5 microseconds a
    pair of them that the index stage put in one person (`bench/endrun.py --persons 20`: 0.7,
    2.9 and 11.5 million pairs settled in 1.9, 6.5 and 24 s), so where a few people fill a run
    (a family's photos) one settle at its end grew with the square of its faces. Once those pairs
    reach ``pairs``, the faces stored so far are settled between two batches, and the end
    settles only what came after. Where the faces spread over many people (lfw-large's 13,447
    faces: about 220,000 such pairs) the one settle at the end is linear in the faces and stays:
    settling those in slices lowered F (0.9932 against 0.9940), since a first slice counts fewer
    persons and so merges at a lower floor (`Linkage`)."""

    def __init__(self, ctx: Context, pairs: int | None = None) -> None:
        self.ctx, self.limit = ctx, PAIRS if pairs is None else pairs
        self.faces = 0  # stored since the last settle, by this run
        self.pairs = 0  # pairs of them in one person
        self._in: Counter[str] = Counter()
        self.summary: Summary | None = None  # the run's settles so far, as one

    def stored(self, persons: Iterable[str | None]) -> None:
        """Faces stored, with the person the index stage gave each, or the first of two it
        hesitated between (None: neither). The faces it left without a person count too: at
        20,000 faces of 20 people it left thousands between a large person and a small one
        split from it, and one settle had to group them all."""
        for person in persons:
            self.faces += 1
            if person is not None:
                self.pairs += self._in[person]
                self._in[person] += 1

    @property
    def due(self) -> bool:
        return self.pairs >= self.limit

    def settle(self) -> Summary:
        """Settle every face stored and not yet settled; the run's settles so far, as one."""
        done = settle_run(self.ctx)
        self.summary = done if self.summary is None else self.summary.then(done)
        self.faces = self.pairs = 0
        self._in.clear()
        return self.summary


def settle_behind(ctx: Context, every: int) -> Summary | None:
    """Settle a slice of ``every`` faces once that many are stored unsettled, though photos
    still wait for the index stage (the index worker, between its batches): None when fewer
    are. Left to the moment its queue drains, a drive's whole backlog was settled in slices
    after the index stage had made its persons large, and the slices kept apart persons that
    one settle joins (`bench/endrun.py --library` on lfw-large's faces: F 0.983, against 0.993
    settled every 2,000 faces as they were stored and 0.994 in one go)."""
    lib = ctx.library
    mark = lib.settle_mark()
    if mark.get("model") == lib.library_model() and lib.current_seq() - int(mark.get("seq", 0)) < every:
        return None
    return settle_run(ctx, every)
