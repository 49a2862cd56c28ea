import numpy as np

from facepic.matching import Matcher


def unit(*values: float) -> np.ndarray:
    v = np.zeros(512, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def test_empty_matcher_matches_nobody() -> None:
    assert Matcher(0.4).match(unit(1)).person_id is None


def test_joins_most_similar_person_above_threshold_only() -> None:
    m = Matcher(0.4)
    m.add("alice", unit(1, 0))
    m.add("bob", unit(0, 1))
    assert m.match(unit(1, 0.2)).person_id == "alice"
    assert m.match(unit(0.2, 1)).person_id == "bob"
    # cosine(unit(1, 3), unit(1, 0)) = 0.316, below 0.4; against bob it is 0.949
    assert m.match(unit(1, 3)).person_id == "bob"
    below = m.match(unit(1, 1, 4))  # 0.24 to both
    assert below.person_id is None and 0.2 < below.similarity < 0.4


def test_excluded_persons_are_skipped() -> None:
    m = Matcher(0.4)
    m.add("alice", unit(1, 0))
    m.add("bob", unit(1, 0.5))
    assert m.match(unit(1, 0.1)).person_id == "alice"
    assert m.match(unit(1, 0.1), exclude={"alice"}).person_id == "bob"
    assert m.match(unit(1, 0.1), exclude={"alice", "bob"}).person_id is None


def test_grows_beyond_initial_capacity_and_keeps_every_row() -> None:
    m = Matcher(0.4, capacity=2)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, v in enumerate(vectors):
        m.add(f"p{i}", v)
    assert len(m) == 50
    for i in (0, 17, 49):
        match = m.match(vectors[i])
        assert match.person_id == f"p{i}" and abs(match.similarity - 1.0) < 1e-5
