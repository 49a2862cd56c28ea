""" "Same person?" suggestions (`facepic.suggest`) on synthetic faces: which pairs are asked
about, and that following changes person by person gives what reading everything again gives."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.synthetic import _unit
from facepic.settle import Linkage
from facepic.suggest import OFFERED, Facts, Likeness, Pair, worth_asking

DIM = 512
LINKAGE = Linkage.default()


def _faces(rng: np.random.Generator, centre: np.ndarray, n: int, weight: float) -> np.ndarray:
    noise = _unit(rng.standard_normal((n, DIM)))
    return _unit(weight * centre + np.sqrt(1 - weight**2) * noise)


def _person(pid: str, faces: np.ndarray, **kw) -> Facts:
    fields = {"photos": frozenset({f"{pid}-photo{i}" for i in range(len(faces))}), "rejects": frozenset()}
    fields.update(named=False, hidden=False)
    fields.update(kw)
    return Facts(pid, faces.astype(np.float64).sum(axis=0), len(faces), **fields)


def _built(facts: dict[str, Facts], linkage: Linkage = LINKAGE) -> list[Pair]:
    likeness = Likeness(linkage)
    likeness.update(facts, facts)
    return likeness.pairs()


def test_a_split_person_is_asked_about_and_strangers_are_not() -> None:
    rng = np.random.default_rng(1)
    alice, bob = _unit(rng.standard_normal((2, DIM)))
    facts = {
        "pa1": _person("pa1", _faces(rng, alice, 3, 0.75)),
        "pa2": _person("pa2", _faces(rng, alice, 1, 0.75)),
        "pbob": _person("pbob", _faces(rng, bob, 2, 0.75)),
    }
    (pair,) = _built(facts)
    # The larger keeps on a "yes"; the similarity is the mean over every pair of their faces.
    assert (pair.a, pair.b) == ("pa2", "pa1")
    assert abs(pair.similarity - float(facts["pa1"].sum @ facts["pa2"].sum) / 3) < 1e-4
    assert pair.needed == LINKAGE.level(2) + LINKAGE.margin / np.sqrt(3)  # two persons of 2 faces or more
    # Named, the smaller one keeps.
    facts["pa2"] = replace(facts["pa2"], named=True)
    assert [(p.a, p.b) for p in _built(facts)] == [("pa1", "pa2")]


def test_the_rule_asks_halfway_from_the_floor_to_what_a_merge_needs() -> None:
    linkage = replace(LINKAGE, threshold=0.2, margin=0.2)
    # Two single faces need 0.4 to be merged; from 0.3 they are asked about.
    assert worth_asking(linkage, 0.31, 1, 1, 100) and not worth_asking(linkage, 0.29, 1, 1, 100)
    # Two persons of 100 faces need 0.202 (a mean over 10,000 pairs): asked from 0.201.
    assert worth_asking(linkage, 0.2015, 100, 100, 100) and not worth_asking(linkage, 0.2005, 100, 100, 100)
    # The floor rises with the library, and so does the question.
    assert not worth_asking(linkage, 0.31, 1, 1, 1_000_000)
    sims = np.array([[0.35, 0.25]])
    assert worth_asking(linkage, sims, np.array([[1]]), np.array([[1, 1]]), 100).tolist() == [[True, False]]


def test_nothing_the_user_decided_is_asked_again() -> None:
    rng = np.random.default_rng(2)
    alice = _unit(rng.standard_normal((1, DIM)))[0]
    one, two = _faces(rng, alice, 2, 0.8), _faces(rng, alice, 2, 0.8)
    base = {"p1": _person("p1", one), "p2": _person("p2", two)}
    assert len(_built(base)) == 1
    for changed in (
        {"p1": replace(base["p1"], named=True), "p2": replace(base["p2"], named=True)},  # two named persons
        {"p2": replace(base["p2"], hidden=True)},
        {"p2": replace(base["p2"], rejects=frozenset({"p1"}))},  # a "no", or a face rejected from p1
        {"p1": replace(base["p1"], rejects=frozenset({"p2"}))},
        {"p2": replace(base["p2"], photos=base["p2"].photos | {"p1-photo0"})},  # one photo holds both
    ):
        assert _built({**base, **changed}) == [], changed


def test_each_unnamed_person_is_offered_its_nearest_few() -> None:
    rng = np.random.default_rng(3)
    alice = _unit(rng.standard_normal((1, DIM)))[0]
    # One identity split into many single faces: each is offered OFFERED others, not all.
    facts = {f"p{i:02d}": _person(f"p{i:02d}", _faces(rng, alice, 1, 0.8)) for i in range(8)}
    pairs = _built(facts)
    for pid in facts:
        mine = [p for p in pairs if pid in (p.a, p.b)]
        assert OFFERED <= len(mine) < len(facts) - 1
    closeness = [p.similarity - p.needed for p in pairs]
    assert closeness == sorted(closeness, reverse=True)


@pytest.mark.parametrize("seed", range(6))
def test_following_changes_gives_what_reading_everything_again_gives(seed: int) -> None:
    """Persons change, go and come, a few or many at a time (the floor moving with their
    number): the pairs followed are exactly the pairs of the library read whole."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((12, DIM)))

    def random_person(pid: str) -> Facts:
        faces = _faces(rng, centres[rng.integers(len(centres))], int(rng.integers(1, 6)), 0.7)
        return _person(pid, faces, named=bool(rng.random() < 0.2), hidden=bool(rng.random() < 0.05))

    facts = {f"p{i:03d}": random_person(f"p{i:03d}") for i in range(60)}
    followed = Likeness(LINKAGE)
    followed.update(facts, facts)
    assert followed.pairs()
    for step in range(20):
        changed = {f"p{i:03d}" for i in rng.choice(100, size=int(rng.integers(1, 25)), replace=False)}
        for pid in sorted(changed):
            roll = rng.random()
            if roll < 0.35:
                facts.pop(pid, None)  # merged away or emptied
            elif roll < 0.45 and pid in facts:
                other = sorted(facts)[int(rng.integers(len(facts)))]
                facts[pid] = replace(facts[pid], rejects=facts[pid].rejects | {other})
            else:
                facts[pid] = random_person(pid)
        followed.update(changed, facts)
        assert followed.pairs() == _built(facts), step
        assert followed.persons == sum(1 for f in facts.values() if f.count > 1)


def test_a_pair_is_asked_about_once_the_library_shrinks_enough_to_lower_the_floor() -> None:
    """Two single faces at 0.30: among 1,000 persons (floor 0.285, asked from 0.335) not asked;
    once all but 10 are gone (floor 0.175, asked from 0.225), asked, though neither changed."""
    rng = np.random.default_rng(6)
    look = np.zeros(DIM)
    look[0] = 1.0
    other = np.zeros(DIM)
    other[:2] = (0.3, np.sqrt(1 - 0.3**2))
    facts = {"pa": _person("pa", look[None]), "pb": _person("pb", other[None])}
    fillers = {f"f{n:04d}": _person(f"f{n:04d}", _unit(rng.standard_normal((2, DIM)))) for n in range(1000)}
    facts.update(fillers)
    followed = Likeness(LINKAGE)
    followed.update(facts, facts)
    assert followed.pairs() == []
    gone = sorted(fillers)[10:]
    for start in range(0, len(gone), 100):  # a hundred at a time: each step lowers the floor a little
        for pid in gone[start : start + 100]:
            del facts[pid]
        followed.update(gone[start : start + 100], facts)
        assert followed.pairs() == _built(facts)
    (pair,) = followed.pairs()
    assert (pair.a, pair.b) == ("pb", "pa") and abs(pair.similarity - 0.3) < 1e-6
