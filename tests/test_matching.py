from dataclasses import replace

import numpy as np
import pytest

from bench.synthetic import clustered
from facepic import ids
from facepic.matching import PersonIndex, Rules, assign_photo


def unit(*values: float) -> np.ndarray:
    v = np.zeros(512, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def test_empty_index_decides_nobody() -> None:
    assert PersonIndex().decide(unit(1)).person_id is None


def test_joins_the_person_with_a_similar_face_and_nobody_below_both_limits() -> None:
    index = PersonIndex(replace(Rules.default(), threshold=0.4, mean_threshold=0.9))
    index.add("alice", unit(1, 0))
    index.add("bob", unit(0, 1))
    assert index.decide(unit(1, 0.2)).person_id == "alice"
    assert index.decide(unit(0.2, 1)).person_id == "bob"
    below = index.decide(unit(1, 1, 4))  # 0.24 to both
    assert below.person_id is None and not below.ambiguous


def test_mean_similarity_admits_a_person_whose_nearest_face_is_below_the_threshold() -> None:
    index = PersonIndex(replace(Rules.default(), threshold=0.9, mean_threshold=0.3))
    index.add_many(["alice"] * 2, np.stack([unit(1, 0.6), unit(1, -0.6)]))
    decision = index.decide(unit(1, 0, 1.2))  # 0.55 to each face, the mean too
    assert decision.person_id == "alice" and decision.mean == pytest.approx(0.548, abs=0.01)
    assert decision.nearest < 0.9


def test_best_mean_wins_over_the_single_most_similar_face() -> None:
    index = PersonIndex(replace(Rules.default(), threshold=0.4, mean_threshold=0.25, ambiguity_margin=0.01))
    # carol: one face very like the query and two unlike it; dave: three faces fairly like it
    index.add_many(["carol"] * 3, np.stack([unit(1, 0.1), unit(0, 0, 1), unit(0, 0, 0, 1)]))
    index.add_many(["dave"] * 3, np.stack([unit(1, 0.9), unit(1, 0.8), unit(1, 0.7)]))
    decision = index.decide(unit(1, 0.2))
    assert decision.person_id == "dave"
    assert decision.nearest < 0.99  # carol's face (0.995) was nearer


def test_a_face_between_two_equally_close_persons_waits_unassigned() -> None:
    index = PersonIndex(replace(Rules.default(), threshold=0.4, mean_threshold=0.25, ambiguity_margin=0.03))
    index.add("ann", unit(1, 0.5))
    index.add("bea", unit(1, -0.5))
    decision = index.decide(unit(1, 0))
    assert decision.person_id is None and decision.ambiguous
    assert {decision.best, decision.runner_up} == {"ann", "bea"}
    clear = index.decide(unit(1, 0.3))
    assert clear.person_id == "ann"


def test_excluded_persons_are_skipped() -> None:
    index = PersonIndex(replace(Rules.default(), ambiguity_margin=0.0))
    index.add("alice", unit(1, 0))
    index.add("bob", unit(1, 0.5))
    assert index.decide(unit(1, 0.1)).person_id == "alice"
    assert index.decide(unit(1, 0.1), exclude={"alice"}).person_id == "bob"
    assert index.decide(unit(1, 0.1), exclude={"alice", "bob"}).person_id is None


def test_two_faces_of_one_photo_never_share_a_person_and_poor_faces_found_nobody() -> None:
    index = PersonIndex()
    index.add("alice", unit(1, 0))
    faces = ["img-f0", "img-f1", "img-f2"]
    embeddings = np.stack([unit(1, 0.05), unit(1, 0.1), unit(0, 0, 1)])
    persons, founders, _ = assign_photo(index, faces, {}, embeddings, ids.person_id, [True, True, False])
    assert persons["img-f0"] == "alice"
    assert persons["img-f1"] not in (None, "alice") and founders[persons["img-f1"]] == "img-f1"
    assert persons["img-f2"] is None  # too poor to found, and nobody fits
    # A replay keeps every stored decision, the unassigned one included.
    again, founders2, decided = assign_photo(index, faces, persons, embeddings, ids.person_id)
    assert again == persons and not founders2 and not decided


def test_a_clear_face_claims_its_person_before_a_poor_face_of_the_same_photo() -> None:
    index = PersonIndex()
    index.add("alice", unit(1, 0))
    embeddings = np.stack([unit(1, 0.3), unit(1, 0.05)])  # the poor face is listed first
    persons, _, _ = assign_photo(index, ["i-f0", "i-f1"], {}, embeddings, ids.person_id, [False, True])
    assert persons["i-f1"] == "alice" and persons["i-f0"] != "alice"


def test_grows_beyond_initial_capacity_and_keeps_every_face() -> None:
    index = PersonIndex(capacity=2)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, v in enumerate(vectors):
        index.add(f"p{i}", v)
    assert len(index) == 50 and index.persons == 50
    for i in (0, 17, 49):
        decision = index.decide(vectors[i])
        assert decision.person_id == f"p{i}" and abs(decision.nearest - 1.0) < 1e-5


def test_the_inverted_file_index_decides_as_the_full_comparison_does() -> None:
    known, known_persons, queries = clustered(faces=6000, persons=300, queries=300, seed=3)
    exact = PersonIndex(exact_limit=10**9)
    approximate = PersonIndex(exact_limit=2000)
    for index in (exact, approximate):
        index.add_many(known_persons[:1000], known[:1000])
        index.add_many(known_persons[1000:], known[1000:])
    assert not exact.approximate and approximate.approximate and len(approximate) == 6000
    same = sum(exact.decide(q).person_id == approximate.decide(q).person_id for q in queries)
    assert same >= 0.99 * len(queries)
    joined = sum(exact.decide(q).person_id is not None for q in queries)
    assert 0.75 * len(queries) <= joined <= 0.9 * len(queries)  # 20% of the queries are new persons


def test_faces_added_after_the_index_is_built_are_found_and_capped_per_person() -> None:
    known, known_persons, queries = clustered(faces=4000, persons=200, queries=200, seed=5)
    exact = PersonIndex(exact_limit=10**9)
    approximate = PersonIndex(exact_limit=1000, per_person=40)
    for index in (exact, approximate):
        index.add_many(known_persons[:2000], known[:2000])  # builds the inverted file
        for person, face in zip(known_persons[2000:], known[2000:]):  # as the index worker adds
            index.add(person, face)
        index.add("newcomer", queries[-1])  # a person founded after the build
    assert approximate.approximate and len(approximate) == len(exact) == 4001
    assert approximate.decide(queries[-1]).person_id == "newcomer"
    same = sum(exact.decide(q).person_id == approximate.decide(q).person_id for q in queries[:-1])
    assert same >= 0.98 * (len(queries) - 1)
    searched = np.bincount(approximate._codes[: approximate._rows])
    assert searched.max() == 40 and approximate._rows < 4001  # the biggest persons are capped


def test_the_matching_benchmark_measures_what_it_prints() -> None:
    from bench.matching import measure

    row = measure(3000, 40, None)
    assert row["faces"] == 3000 and row["mode"] == "exact" and row["identical"] == 1.0
    assert row["median_ms"] > 0 and row["p99_ms"] >= row["median_ms"]
    assert 2048 <= row["bytes_per_face"] <= 8192  # float32 rows plus bookkeeping, doubled capacity at most


def test_a_prepared_batch_decides_as_photo_after_photo() -> None:
    """``prepare`` compares a whole batch with the index at once; the faces added meanwhile
    (and the persons they change or found) are compared at each decision, so every face is
    decided as when its photo comes alone."""
    known, persons, queries = clustered(3000, 300, 800, seed=3)

    def run(batch: int) -> list[tuple[str | None, str | None]]:
        index = PersonIndex(Rules.default())
        index.add_many(persons, known)
        out = []
        for start in range(0, len(queries), batch):
            part = queries[start : start + batch]
            index.prepare(part)
            for row in range(0, len(part), 4):  # photos of 4 faces
                ids = [f"f{start + row + i}" for i in range(len(part[row : row + 4]))]
                chosen, _, decisions = assign_photo(
                    index, ids, {}, part[row : row + 4], lambda f: f"p-{f}", None, range(row, row + len(ids))
                )
                out += [(chosen[f], decisions[f].runner_up) for f in ids]
        return out

    alone = run(4)
    assert len({p for p, _ in alone if p and p.startswith("p-")}) > 20  # new persons were founded
    assert sum(1 for p, _ in alone if p and not p.startswith("p-")) > 300  # and known ones joined
    assert run(256) == alone == run(800)
