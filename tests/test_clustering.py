"""`facepic.clustering.recluster` on synthetic faces: splits, merges, and the user's constraints."""

from __future__ import annotations

import numpy as np

from facepic.clustering import Faces, recluster
from facepic.matching import Rules

RULES = Rules.default()


def people(sizes: dict[str, int], seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Faces of several identities: similarity ~0.5 within one, ~0 across."""
    rng = np.random.default_rng(seed)
    labels, rows = [], []
    for name, n in sizes.items():
        centre = rng.normal(size=512)
        centre /= np.linalg.norm(centre)
        for _ in range(n):
            noise = rng.normal(size=512)
            noise /= np.linalg.norm(noise)
            v = 0.72 * centre + 0.69 * noise
            rows.append(v / np.linalg.norm(v))
            labels.append(name)
    return labels, np.array(rows, dtype=np.float32)


def new_id(face_id: str, taken: set[str]) -> str:
    n = 0
    while f"new-{face_id}-{n}" in taken:
        n += 1
    return f"new-{face_id}-{n}"


def faces_of(labels: list[str], embeddings: np.ndarray, persons: list[str | None], **kw) -> Faces:
    ids = [f"f{i:03d}" for i in range(len(labels))]
    return Faces(ids, embeddings, persons, [f"img{i}" for i in range(len(labels))], **kw)


def groups(result: list[str | None]) -> set[frozenset[int]]:
    out: dict[str, set[int]] = {}
    for i, p in enumerate(result):
        if p is not None:
            out.setdefault(p, set()).add(i)
    return {frozenset(v) for v in out.values()}


def truth(labels: list[str]) -> set[frozenset[int]]:
    return groups(list(labels))  # type: ignore[arg-type]


def test_a_split_person_is_merged_and_a_merged_pair_is_split() -> None:
    labels, emb = people({"ann": 8, "bob": 8, "cid": 6})
    persons: list[str | None] = []
    for i, label in enumerate(labels):
        if label == "ann":
            persons.append("A1" if i % 2 else "A2")  # ann split in two
        else:
            persons.append("BC")  # bob and cid merged
    result = recluster(faces_of(labels, emb, persons), set(), RULES, new_id)
    assert groups(result) == truth(labels)
    # Ids survive where they can: ann keeps one of hers, bob or cid keeps BC.
    assert {result[0], result[1]} <= {"A1", "A2"} and "BC" in result


def test_unassigned_faces_find_their_person_or_wait() -> None:
    labels, emb = people({"ann": 6, "bob": 6})
    persons: list[str | None] = ["A" if lab == "ann" else "B" for lab in labels]
    persons[0] = None  # an ambiguous ann face
    persons[6] = None  # a bob face too poor to found a person
    faces = faces_of(labels, emb, persons, can_found=[i != 6 for i in range(12)])
    result = recluster(faces, set(), RULES, new_id)
    assert result[0] == "A" and result[6] == "B"


def test_result_does_not_depend_on_the_starting_split() -> None:
    labels, emb = people({"ann": 10, "bob": 10, "cid": 10, "dan": 4}, seed=3)
    rng = np.random.default_rng(5)
    outcomes = []
    for _ in range(4):
        # A random over-split start: each face in one of 3 persons per identity.
        persons: list[str | None] = [f"{lab}-{rng.integers(3)}" for lab in labels]
        outcomes.append(groups(recluster(faces_of(labels, emb, persons), set(), RULES, new_id)))
    assert all(o == truth(labels) for o in outcomes)


def test_user_locked_persons_are_never_split_merged_away_or_merged_together() -> None:
    labels, emb = people({"ann": 6, "bob": 6, "cid": 6}, seed=1)
    # The user named "AB" (holding ann and bob) and "A2" (more of ann): both locked.
    persons: list[str | None] = []
    for i, lab in enumerate(labels):
        persons.append({"ann": "AB" if i < 3 else "A2", "bob": "AB", "cid": "C"}[lab])
    result = recluster(faces_of(labels, emb, persons), {"AB", "A2"}, RULES, new_id)
    assert [result[i] for i in range(12)] == persons[:12]  # AB not split, A2 not merged into AB
    assert set(result[12:]) == {"C"}


def test_a_rejected_face_never_returns_and_two_faces_of_a_photo_never_meet() -> None:
    labels, emb = people({"ann": 8}, seed=2)
    persons: list[str | None] = ["A"] * 7 + [None]
    faces = faces_of(labels, emb, persons, rejected=[frozenset()] * 7 + [frozenset({"A"})])
    result = recluster(faces, set(), RULES, new_id)
    assert result[:7] == ["A"] * 7 and result[7] not in ("A", None)  # it founded its own

    # Two halves of ann's faces, each half in one photo with a face of the other half:
    # they must stay two persons, however similar.
    photos = [f"img{i % 4}" for i in range(8)]
    halves: list[str | None] = ["X" if i < 4 else "Y" for i in range(8)]
    faces = Faces([f"f{i}" for i in range(8)], emb, halves, photos)
    assert set(recluster(faces, set(), RULES, new_id)) == {"X", "Y"}


def test_a_face_the_user_placed_stays_where_they_put_it() -> None:
    labels, emb = people({"ann": 6, "bob": 6}, seed=4)
    persons: list[str | None] = ["A" if lab == "ann" else "B" for lab in labels]
    persons[0] = "B"  # an ann face the user moved into bob
    locked = [i == 0 for i in range(12)]
    result = recluster(faces_of(labels, emb, persons, locked=locked), set(), RULES, new_id)
    assert result[0] == "B" and set(result[1:6]) == {"A"} and set(result[6:]) == {"B"}


def test_a_rejected_face_never_joins_the_person_that_absorbed_its_person() -> None:
    labels, emb = people({"ann": 8}, seed=6)
    # ann split in two persons (arrival order); face 7 was rejected from "O".
    persons: list[str | None] = ["O"] * 3 + ["P"] * 4 + [None]
    faces = faces_of(labels, emb, persons, rejected=[frozenset()] * 7 + [frozenset({"O"})])
    merged_into: dict[str, str] = {}
    result = recluster(faces, set(), RULES, new_id, merged_into)
    assert result[:7] == ["P"] * 7 and merged_into == {"O": "P"}  # the larger keeps its id
    assert result[7] not in ("O", "P", None)


def _plain_average_linkage(
    embeddings: np.ndarray, photos: list[str], threshold: float, margin: float
) -> set[frozenset[int]]:
    """The merging `agglomerate` does, written the slow and obvious way: every step, of all
    pairs of groups from different photos whose average similarity is above what they need
    (``threshold + margin / sqrt(n_a n_b)``), merge the most similar (the smallest indices on
    a tie), the larger group (then the lower index) absorbing the other."""
    groups = [[i] for i in range(len(embeddings))]
    sums = [embeddings[i].astype(np.float64) for i in range(len(embeddings))]
    while True:
        best = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if {photos[i] for i in groups[a]} & {photos[i] for i in groups[b]}:
                    continue
                na, nb = len(groups[a]), len(groups[b])
                link = float(sums[a] @ sums[b]) / (na * nb)
                if link > threshold + margin / np.sqrt(na * nb) and (best is None or link > best[0]):
                    best = (link, a, b)
        if best is None:
            return {frozenset(g) for g in groups}
        _, a, b = best
        keep, gone = (b, a) if len(groups[b]) > len(groups[a]) else (a, b)
        groups[keep] += groups[gone]
        sums[keep] = sums[keep] + sums[gone]
        del groups[gone], sums[gone]


def test_the_greedy_merging_is_plain_average_linkage() -> None:
    """`agglomerate` keeps each group's best partner (or a bound on it) and computes a merged
    group's links to all its neighbours at once; it must merge exactly as the plain algorithm
    does, here on a few dense people (every face a neighbour of most of its person's, so that
    best partners are lost and bounds looked at again all the time) with faces sharing photos."""
    from facepic.clustering import _singletons, agglomerate

    for seed in (7, 8):
        labels, embeddings = people({"a": 30, "b": 25, "c": 20, "d": 3}, seed=seed)
        photos = [f"img{i % 40}" for i in range(len(labels))]  # some faces share a photo: never together
        faces = Faces([f"f{i}" for i in range(len(labels))], embeddings, [None] * len(labels), photos)
        for threshold, margin in [(0.3, 0.0), (0.25, 0.1), (0.35, 0.15)]:
            merged = agglomerate(_singletons(faces, range(len(labels))), threshold, margin=margin)
            got = {frozenset(g.members) for g in merged}
            assert got == _plain_average_linkage(embeddings, photos, threshold, margin)
            assert len(got) < len(labels) - 20  # the dense people were merged, not left as singles
