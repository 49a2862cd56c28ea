"""Settling (`facepic.settle`): the new faces decided together, in any order, never undoing what
the user decided."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bench.synthetic import _unit
from facepic import ids
from facepic.clustering import Faces
from facepic.matching import PersonIndex
from facepic.settle import Linkage, Settled, near_persons, settle_batch, settle_faces

DIM = 512


def _people(rng: np.random.Generator, sizes: list[int], weight: float = 0.75) -> tuple[np.ndarray, list[int]]:
    centres = _unit(rng.standard_normal((len(sizes), DIM)))
    owners = [p for p, n in enumerate(sizes) for _ in range(n)]
    noise = _unit(rng.standard_normal((len(owners), DIM)))
    return _unit(weight * centres[owners] + np.sqrt(1 - weight**2) * noise).astype(np.float32), owners


def _faces(embeddings: np.ndarray, order: list[int] | None = None, **kw) -> Faces:
    order = order if order is not None else list(range(len(embeddings)))
    return Faces(
        [f"f{i:03d}" for i in order], embeddings[order], [None] * len(order), [f"photo{i}" for i in order], **kw
    )


def _canonical(face_id: str, used: set[str] | None = None) -> str:
    pid, n = ids.person_id(face_id), 0
    while used and pid in used:
        n += 1
        pid = ids.person_id(f"{face_id}:settle:{n}")
    return pid


def test_new_faces_are_grouped_the_same_in_any_order() -> None:
    rng = np.random.default_rng(3)
    embeddings, owners = _people(rng, [6, 4, 3, 1, 1, 2])
    first, _ = settle_faces(_faces(embeddings), {}, Linkage.default(), _canonical)
    by_face = dict(zip([f"f{i:03d}" for i in range(len(owners))], first))
    # One person per identity, named after its smallest face id.
    assert len(set(first)) == len(set(owners))
    for p in set(owners):
        mine = [by_face[f"f{i:03d}"] for i, o in enumerate(owners) if o == p]
        assert len(set(mine)) == 1 and mine[0] == ids.person_id(f"f{owners.index(p):03d}")
    for seed in range(5):
        order = list(np.random.default_rng(seed).permutation(len(owners)))
        again, _ = settle_faces(_faces(embeddings, order), {}, Linkage.default(), _canonical)
        assert dict(zip([f"f{i:03d}" for i in order], again)) == by_face


def test_single_faces_need_the_designs_similarity_groups_less() -> None:
    a, b = _unit(np.random.default_rng(0).standard_normal((2, DIM)))
    c = _unit((a + b)[None])[0]  # similarity to a and b: about 0.71
    pair = np.stack([a, _unit((0.35 * a + np.sqrt(1 - 0.35**2) * b)[None])[0]]).astype(np.float32)  # 0.35
    result, _ = settle_faces(
        _faces(pair), {}, replace(Linkage.default(), threshold=0.2, margin=0.2, per_decade=0.0), _canonical
    )
    assert result[0] != result[1]  # 0.35 < 0.2 + 0.2
    # The same 0.35 against a settled person of 9 faces is enough: 0.2 + 0.2 / 3 < 0.35.
    person = Settled(pair[0].astype(np.float64) * 9, 9)
    joined, _ = settle_faces(
        _faces(pair[1:]),
        {"pbig": person},
        replace(Linkage.default(), threshold=0.2, margin=0.2, per_decade=0.0),
        _canonical,
    )
    assert joined == ["pbig"]
    assert float(c @ a) > 0.7


def test_a_face_bridges_two_settled_persons_unless_the_user_made_both() -> None:
    rng = np.random.default_rng(1)
    a, b = _unit(rng.standard_normal((2, DIM)))
    left = _unit((a + 0.6 * b)[None])[0]
    right = _unit((b + 0.6 * a)[None])[0]
    bridge = _unit((a + b)[None]).astype(np.float32)
    persons = {"pa": Settled(left * 3, 3), "pb": Settled(right * 2, 2)}
    result, merged = settle_faces(
        _faces(bridge), persons, replace(Linkage.default(), threshold=0.2, margin=0.2, per_decade=0.0), _canonical
    )
    assert result == ["pa"] and merged == {"pb": "pa"}  # the larger keeps its id
    persons = {"pa": Settled(left * 3, 3, locked=True), "pb": Settled(right * 2, 2, locked=True)}
    result, merged = settle_faces(
        _faces(bridge), persons, replace(Linkage.default(), threshold=0.2, margin=0.2, per_decade=0.0), _canonical
    )
    assert result[0] in ("pa", "pb") and merged == {}
    # A locked person absorbs, never is absorbed.
    persons = {"pa": Settled(left * 3, 3), "pb": Settled(right * 2, 2, locked=True)}
    result, merged = settle_faces(
        _faces(bridge), persons, replace(Linkage.default(), threshold=0.2, margin=0.2, per_decade=0.0), _canonical
    )
    assert merged == {"pa": "pb"} and result == ["pb"]


def test_rejections_photos_locks_and_the_quality_gate_hold() -> None:
    rng = np.random.default_rng(2)
    embeddings, owners = _people(rng, [4], weight=0.9)
    settled = {"pknown": Settled(embeddings[0].astype(np.float64) * 5, 5, photos={"photo1"})}
    faces = _faces(embeddings, rejected=[frozenset(), frozenset(), frozenset({"pknown"}), frozenset()])
    result, _ = settle_faces(faces, settled, Linkage.default(), _canonical)
    assert result[0] == "pknown"
    assert result[1] != "pknown"  # photo1 already has a face of pknown
    assert result[2] != "pknown"  # rejected it
    # Two faces of one photo never share a person.
    same_photo = Faces(["f0", "f1"], embeddings[:2], [None, None], ["x", "x"])
    result, _ = settle_faces(same_photo, {}, Linkage.default(), _canonical)
    assert result[0] != result[1]
    # A face the user placed stays, even far from its person.
    stranger = _unit(rng.standard_normal((1, DIM))).astype(np.float32)
    placed = Faces(["f9"], stranger, ["pknown"], ["y"], locked=[True])
    assert settle_faces(placed, settled, Linkage.default(), _canonical)[0] == ["pknown"]
    # Poor faces join a person, but alone found none.
    poor = Faces(["f0", "f1"], embeddings[:2], [None, None], ["a", "b"], can_found=[False, False])
    assert settle_faces(poor, {}, Linkage.default(), _canonical)[0] == [None, None]
    mixed = Faces(["f0", "f1"], embeddings[:2], [None, None], ["a", "b"], can_found=[False, True])
    result, _ = settle_faces(mixed, {}, Linkage.default(), _canonical)
    assert result[0] == result[1] == ids.person_id("f0")


def test_settled_persons_are_found_in_the_index_without_the_new_faces() -> None:
    rng = np.random.default_rng(4)
    embeddings, owners = _people(rng, [5, 5], weight=0.85)
    index = PersonIndex()
    index.add_many(["pa"] * 5 + ["pb"] * 4, embeddings[:9])
    # The last face of person 1 arrived, joined pb online, and now settles: pb's settled part
    # is its 4 older faces.
    new = Faces(["fnew"], embeddings[9:], ["pb"], ["photo-new"])
    described: list[list[str]] = []

    def describe(pids: list[str]) -> dict[str, Settled]:
        described.append(pids)
        return {}

    decided, result, merged = settle_batch(new, index, Linkage.default(), describe, _canonical)
    assert decided.ids == ["fnew"] and result == ["pb"] and merged == {} and described == [["pb"]]


def test_near_persons_are_the_settled_ones_and_none_when_every_face_is_new() -> None:
    rng = np.random.default_rng(5)
    embeddings, _ = _people(rng, [5, 5], weight=0.85)
    floor = Linkage.default().floor(2)
    index = PersonIndex()
    index.add_many(["pa"] * 5 + ["pb"] * 5, embeddings)
    # A first settle: the index holds the new faces alone, so no person has settled faces.
    assert near_persons(index, embeddings, ["pa"] * 5 + ["pb"] * 5, floor) == {}
    # pb's last face is new: pb is settled with 4 faces (its sum without the new one); pa holds
    # no face near it.
    near = near_persons(index, embeddings[9:], ["pb"], floor)
    assert list(near) == ["pb"] and near["pb"][1] == 4
    assert np.allclose(near["pb"][0], embeddings[5:9].astype(np.float64).sum(axis=0), atol=1e-4)


def test_a_small_person_is_regrouped_from_its_faces_in_the_library_and_the_users_stays_whole() -> None:
    rng = np.random.default_rng(6)
    embeddings, _ = _people(rng, [4, 4, 1], weight=0.85)
    index = PersonIndex()
    # The index stage's index (not yet reloaded) still holds pa and pb, 4 faces each; the new
    # faces are like pa's and pb's, the first put in pz online.
    index.add_many(["pa"] * 4 + ["pb"] * 4, embeddings[:8])
    new = Faces(["n3", "n7"], embeddings[[3, 7]], ["pz", "pb"], ["photo3", "photo7"])
    asked: list[list[str]] = []

    def members(pids: list[str]) -> tuple[Faces, set[str]]:
        # pa's faces are gone from the library (moved away since the index was built); pb is
        # the user's, so it stays whole and its faces are not given.
        asked.append(pids)
        return Faces([], np.empty((0, DIM), dtype=np.float32), [], []), {"pb"}

    def describe(pids: list[str]) -> dict[str, Settled]:
        asked.append(pids)
        return {p: Settled(np.zeros(DIM), 0, locked=p == "pb") for p in pids}

    decided, result, merged = settle_batch(new, index, Linkage.default(), describe, _canonical, 2, members)
    assert asked == [["pa", "pb"], ["pb"]]  # pa re-formed (from no faces), pb described once
    assert decided.ids == ["n3", "n7"]
    # pa, whose faces are gone, is not joined as the index remembers it (n3 founds a person of
    # its own); pb, whole, is joined.
    assert result == [_canonical("n3"), "pb"] and merged == {}


def test_a_group_of_new_faces_keeps_the_person_the_index_stage_gave_most_of_them() -> None:
    rng = np.random.default_rng(11)
    embeddings, owners = _people(rng, [4, 3, 3])
    # Online: faces 0-3 in "pa", 4-6 in "pb"; faces 7-9 (a third person) split by the index
    # stage into "pc" (7, 8) and "pd" (9). Settling finds three persons.
    online = ["pa"] * 4 + ["pb"] * 3 + ["pc", "pc", "pd"]
    new = Faces([f"f{i:03d}" for i in range(10)], embeddings, list(online), [f"photo{i}" for i in range(10)])
    canonical, _ = settle_faces(new, {}, Linkage.default(), _canonical)
    assert _groups(dict(zip(new.ids, canonical))) == {
        frozenset(f"f{i:03d}" for i in range(n, m)) for n, m in ((0, 4), (4, 7), (7, 10))
    }
    assert canonical[0] == _canonical("f000") and canonical[7] == _canonical("f007")  # without keep
    asked: list[str] = []

    def keep(pid: str) -> bool:
        asked.append(pid)
        return pid != "pb"  # pb has faces elsewhere: it cannot be taken

    kept, _ = settle_faces(new, {}, Linkage.default(), _canonical, keep=keep)
    assert kept == ["pa"] * 4 + [_canonical("f004")] * 3 + ["pc"] * 3  # pc: most of the group
    assert sorted(asked) == ["pa", "pb", "pc"]  # pd is never asked: pc won that group
    # Face 9 rejected pc: it stays out of pc's faces (which keep pc) and keeps its own pd.
    rejecting = replace(new, rejected=[frozenset()] * 9 + [frozenset({"pc"})])
    named, _ = settle_faces(rejecting, {}, Linkage.default(), _canonical, keep=lambda pid: True)
    assert named == ["pa"] * 4 + ["pb"] * 3 + ["pc", "pc", "pd"]


def test_a_face_founding_a_group_never_gets_the_id_a_regrouped_person_kept() -> None:
    """A rejected face alone, whose id names the person it rejected (it founded that person
    once): its group is named afresh, not after the person its old faces kept."""
    rng = np.random.default_rng(3)
    embeddings, _ = _people(rng, [3])
    founder = _canonical("f002")  # the person face f002 founded, then rejected
    faces = Faces(
        ["f000", "f001", "f002"],
        embeddings,
        [founder, founder, None],
        ["photo0", "photo1", "photo2"],
        rejected=[frozenset(), frozenset(), frozenset({founder})],
    )
    result, _ = settle_faces(faces, {}, Linkage.default(), _canonical, reformed=frozenset({founder}))
    assert result[:2] == [founder, founder]
    assert result[2] is not None and result[2] != founder


def test_a_face_never_rejoins_the_faces_of_a_person_it_rejected_when_all_are_grouped_afresh() -> None:
    """`settle --all` after a reject: every face is new, the person's other faces keep it, the
    face that rejected it stays out of their group."""
    rng = np.random.default_rng(9)
    embeddings, _ = _people(rng, [4], weight=0.9)
    faces = Faces(
        [f"f{i:03d}" for i in range(4)],
        embeddings,
        ["pjen", "pjen", "pjen", None],
        [f"photo{i}" for i in range(4)],
        rejected=[frozenset()] * 3 + [frozenset({"pjen"})],
    )
    result, merged = settle_faces(faces, {}, Linkage.default(), _canonical, keep=lambda pid: True)
    assert result[:3] == ["pjen"] * 3 and merged == {}
    assert result[3] != "pjen"


def _persons_by_face(env: dict[str, str]) -> dict[str, str | None]:
    from facepic.db import Library
    from facepic.embedded import embedded_database
    from tests.conftest import settings_of

    with embedded_database(settings_of(env)) as running:
        lib = Library(running.mongodb_uri, running.mongodb_db)
        try:
            return {f["_id"]: f.get("person_id") for f in lib.faces.find({}, {"person_id": 1})}
        finally:
            lib.close()


def _groups(persons: dict[str, str | None]) -> set[frozenset[str]]:
    """Which faces are together, whatever their persons' ids."""
    by_person: dict[str | None, set[str]] = {}
    for face, person in persons.items():
        by_person.setdefault(person, set()).add(face)
    return {frozenset(faces) for faces in by_person.values()}


def test_settling_brings_any_arrival_order_to_the_result_of_one_run(offline_env, finished_library, tmp_path) -> None:
    """Photos arriving in two runs (settled after each), then `settle --all`: the same persons
    as one run over all of them (the same faces together; their ids are those the index stage
    gave them, which depend on the order)."""
    import shutil

    from tests.conftest import copy_photos, invoke

    one = finished_library(group=False).copy(tmp_path / "one")  # one run over every photo
    expected = _persons_by_face(one)
    assert len(expected) == 21 and None not in expected.values()

    parts = tmp_path / "parts"
    labels = copy_photos(parts, group=False)
    later = sorted(labels)[::2]  # every other photo comes in a second run
    for path in later:
        shutil.move(parts / path, tmp_path / path.replace("/", "_"))
    two = {**offline_env, "FACEPIC_DATA_DIR": str(tmp_path / "two")}
    assert invoke(two, "run", str(parts)).exit_code == 0
    for path in later:
        shutil.move(tmp_path / path.replace("/", "_"), parts / path)
    assert invoke(two, "run", str(parts)).exit_code == 0
    nothing_new = invoke(two, "settle")
    assert nothing_new.exit_code == 0 and "faces moved 0, newly assigned 0" in nothing_new.output
    result = invoke(two, "settle", "--all")
    assert result.exit_code == 0, result.output
    assert _groups(_persons_by_face(two)) == _groups(expected)
    # A settled library settled again from scratch keeps every face where it is, ids included.
    before = _persons_by_face(one)
    again = invoke(one, "settle", "--all")
    assert again.exit_code == 0 and "faces moved 0, newly assigned 0" in again.output, again.output
    assert _persons_by_face(one) == before


def test_a_large_batch_finds_the_same_persons_through_its_nearest_pairs(monkeypatch) -> None:
    import facepic.settle as settle_module

    rng = np.random.default_rng(5)
    embeddings, owners = _people(rng, [1 + n % 7 for n in range(60)])
    exact, _ = settle_faces(_faces(embeddings), {}, Linkage.default(), _canonical)
    monkeypatch.setattr(settle_module, "EXACT_PAIRS", 10)
    monkeypatch.setattr(settle_module, "NEIGHBOURS", 8)
    nearest, _ = settle_faces(_faces(embeddings), {}, Linkage.default(), _canonical)
    assert nearest == exact and len(set(exact)) == len(set(owners))


def test_a_face_that_rejected_a_settled_person_never_joins_its_faces_when_they_are_grouped_again() -> None:
    rng = np.random.default_rng(7)
    centre = rng.normal(size=512)
    pair = np.stack([centre + rng.normal(scale=0.3, size=512) for _ in range(3)])
    pair /= np.linalg.norm(pair, axis=1, keepdims=True)
    # Faces 0 and 1 belong to settled person "pold" (grouped again, as small persons near new
    # faces are); face 2, of the same look, rejected "pold".
    faces = Faces(
        ["f0", "f1", "f2"],
        pair,
        ["pold", "pold", None],
        ["i0", "i1", "i2"],
        [False, False, False],
        [frozenset(), frozenset(), frozenset({"pold"})],
        [True, True, True],
    )
    result, _ = settle_faces(faces, {}, Linkage.default(), _canonical, reformed=frozenset({"pold"}))
    assert result[0] == result[1] == "pold"
    assert result[2] != "pold"


def test_persons_absorbed_by_a_settle_go_to_whoever_took_most_of_their_faces() -> None:
    """`_absorbed` in one pass decides what a scan of the faces per vanished person decided."""
    import random

    from facepic.settle import _absorbed

    def by_scan(before, result, merged, held):  # type: ignore[no-untyped-def]
        out = {}
        for pid in sorted({p for p in before if p} - {p for p in result if p} - set(merged)):
            went = [r for b, r in zip(before, result) if b == pid and r]
            if went and not held(pid):
                out[pid] = max(sorted(set(went)), key=went.count)
        return out

    rng = random.Random(5)
    for _ in range(200):
        people = [f"p{i}" for i in range(rng.randint(1, 12))]
        before = [rng.choice([*people, None]) for _ in range(rng.randint(0, 40))]
        result = [rng.choice([*people[: len(people) // 2], "pnew", None]) for _ in before]
        merged = {p: "pnew" for p in people if rng.random() < 0.1}
        held = {p for p in people if rng.random() < 0.2}
        assert _absorbed(before, result, merged, held.__contains__) == by_scan(
            before, result, merged, held.__contains__
        )
    assert _absorbed(["a", "a", "b", "b"], ["c", "d", "d", "c"], {}, lambda p: False) == {"a": "c", "b": "c"}
    assert _absorbed(["a", "a", "a"], ["d", "c", "d"], {}, lambda p: False) == {"a": "d"}


def test_a_run_settles_as_it_goes_once_its_waiting_faces_pair_up_in_one_person(
    offline_env, finished_library, tmp_path, monkeypatch
) -> None:
    """`facepic run` settles the faces stored so far between two batches once the pairs of
    them that one person holds reach ``PAIRS`` (a few people's many faces, where one settle at
    the end grows with their square), and the rest at its end: every face settled, the
    persons those of one settle, and the summary that of all the run's settles."""
    import facepic.runner as runner
    import facepic.settle as settle_module
    from facepic.db import Library
    from facepic.embedded import embedded_database
    from tests.conftest import copy_photos, invoke, settings_of

    expected = _groups(_persons_by_face(finished_library(group=False).copy(tmp_path / "one")))
    root = tmp_path / "drive"
    copy_photos(root, group=False)
    monkeypatch.setattr(runner, "BATCH", 2)
    monkeypatch.setattr(settle_module, "PAIRS", 1)  # as soon as one person holds two waiting faces
    waiting: list[int] = []
    real = settle_module.settle_run

    def settle_run(ctx, slice_faces=None):  # type: ignore[no-untyped-def]
        lib = ctx.library
        waiting.append(lib.current_seq() - int(lib.settle_mark().get("seq", 0)))
        return real(ctx, slice_faces)

    monkeypatch.setattr(settle_module, "settle_run", settle_run)
    env = {**offline_env, "FACEPIC_DATA_DIR": str(tmp_path / "data"), "FACEPIC_WORKERS": "1"}
    result = invoke(env, "run", str(root))
    assert result.exit_code == 0, result.output
    assert len(waiting) > 2 and sum(waiting) == 21 and max(waiting[:-1]) < 21  # slices, then the rest
    assert _groups(_persons_by_face(env)) == expected
    with embedded_database(settings_of(env)) as running:
        lib = Library(running.mongodb_uri, running.mongodb_db)
        try:
            assert int(lib.settle_mark()["seq"]) == lib.current_seq() == 21
        finally:
            lib.close()
    assert not (tmp_path / "data").joinpath("unsettled").exists()


def test_the_pairs_that_make_a_settle_due_are_those_of_waiting_faces_in_one_person() -> None:
    from facepic.settle import AsTheRunGoes

    settling = AsTheRunGoes(None, pairs=4)  # type: ignore[arg-type]  # no library: only counting
    settling.stored(["a", "b", None, "a", None, "c"])
    assert (settling.faces, settling.pairs, settling.due) == (6, 1, False)
    settling.stored(["a", "b", "a"])  # a: 4 faces (6 pairs), b: 2 (1)
    assert (settling.faces, settling.pairs, settling.due) == (9, 7, True)


def _twins(rng: np.random.Generator, faces: int) -> np.ndarray:
    """Faces of three pairs of look-alike people (centres at a similarity near 0.3), most of one
    pair: the index stage splits and mixes them, and settling moves faces between persons."""
    centres = []
    for base in _unit(rng.standard_normal((3, DIM))):
        for _ in range(2):
            centres.append(
                _unit((np.sqrt(0.3) * base + np.sqrt(0.7) * _unit(rng.standard_normal((1, DIM)))[0])[None])[0]
            )
    owners = rng.choice(6, size=faces, p=np.array([6, 5, 4, 3, 2, 1]) / 21)
    weight = rng.uniform(0.6, 0.85, size=(faces, 1))
    noise = _unit(rng.standard_normal((faces, DIM)))
    return _unit(weight * np.array(centres)[owners] + np.sqrt(1 - weight**2) * noise).astype(np.float32)


def _derived_of_persons(lib) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    """Each person's stored count and cover quality (its cover must be one of its faces), and
    what its faces make them (a full recount; the faces of equal quality are equally good)."""
    from facepic.derived import quality_of

    faces: dict[str | None, dict[str, float]] = {}
    for f in lib.faces.find({}, {"person_id": 1, "quality": 1, "score": 1}):
        faces.setdefault(f.get("person_id"), {})[f["_id"]] = quality_of(f)
    out = {}
    for p in lib.persons.find({}):
        mine = faces.get(p["_id"], {})
        cover = mine.get(p["best_face_id"])
        out[p["_id"]] = ((p["face_count"], p["best_score"], cover), (len(mine), max(mine.values()), max(mine.values())))
    return out


def test_settling_as_the_run_goes_counts_large_persons_from_their_moves_as_their_faces_would(
    tmp_path, monkeypatch
) -> None:
    """A few people's many faces indexed and settled in slices, as `facepic run` does: counting
    the large persons from each slice's moves (a compare and set on what the slice saw), not by
    reading their faces, gives every person the count and cover its faces give it, and the same
    persons as reading them."""
    import facepic.derived as derived
    from bench.endrun import _index
    from facepic.context import Context
    from facepic.embedded import embedded_database
    from facepic.settings import Settings
    from facepic.settle import AsTheRunGoes

    counted: list[str] = []
    real = derived._count_moves

    def count_moves(*args):  # type: ignore[no-untyped-def]
        done = real(*args)
        counted.extend(done)
        return done

    monkeypatch.setattr(derived, "_count_moves", count_moves)
    from facepic.pipeline import workfile

    save, sharpness = workfile.save, iter(20 + 270 * np.random.default_rng(6).random(10_000) ** 6)

    def save_sharpness(folder, image_id, arrays):  # type: ignore[no-untyped-def]
        arrays["quality"] = arrays["quality"] * [1, 0, 1] + [0, next(sharpness), 0]  # the covers differ
        return save(folder, image_id, arrays)

    monkeypatch.setattr(workfile, "save", save_sharpness)
    known = _twins(np.random.default_rng(5), 1200)
    groups = []
    for n, threshold in enumerate((10**9, 16)):  # every person read, then the large ones counted
        monkeypatch.setattr(derived, "COUNTED_FROM_MOVES", threshold)
        env = {"FACEPIC_DATA_DIR": str(tmp_path / str(n)), "FACEPIC_MODEL": "buffalo_s"}
        with embedded_database(Settings.load(env=env, env_file=None)) as live, Context(live) as ctx:
            ctx.library.ensure_indexes()
            settling = AsTheRunGoes(ctx, pairs=5_000)
            _index(ctx, 0, known, settling)
            summary = settling.settle()
            derived_fields = _derived_of_persons(ctx.library)
            groups.append(_groups({d["_id"]: d.get("person_id") for d in ctx.library.faces.find({}, {"person_id": 1})}))
        assert summary.faces_moved > 0  # the slices moved faces between persons
        assert all(stored == truth for stored, truth in derived_fields.values()), (
            threshold,
            {p: v for p, v in derived_fields.items() if v[0] != v[1]},
        )
        assert (len(counted) > 0) == (threshold == 16)
    assert groups[0] == groups[1]
    assert len({truth[1] for stored, truth in derived_fields.values()}) > 1  # the covers' quality differs


def test_a_library_s_first_settle_counts_its_faces_instead_of_reading_who_holds_faces_elsewhere(
    tmp_path, monkeypatch
) -> None:
    """The settle of a library that holds nothing but its batch (a new user's first drive)
    knows, by counting, that no person has a face elsewhere: it does not read every face's
    person, and finds the same persons as reading them. A later run's settle, with faces elsewhere, reads them."""
    from bench.endrun import _index
    from facepic.context import Context
    from facepic.db import Library
    from facepic.embedded import embedded_database
    from facepic.settings import Settings
    from facepic.settle import settle_run

    asked: list[str] = []
    for name in ("persons_with_faces_outside", "holds_faces"):
        real = getattr(Library, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            asked.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Library, name, spy)
    rng = np.random.default_rng(11)
    known, _ = _people(rng, [1, 1, 2, 3, 5, 8, 13, 1, 2, 40, 1, 1, 6] * 6)
    known = known.astype(np.float32)[rng.permutation(len(known))]
    first, rest = known[: len(known) * 2 // 3], known[len(known) * 2 // 3 :]
    persons = []

    def never_all(self, total: int) -> bool:  # type: ignore[no-untyped-def]
        asked.append("holds_faces")
        return False

    for counted in (True, False):
        if not counted:  # the faces' persons read, as before
            monkeypatch.setattr(Library, "holds_faces", never_all)
        env = {"FACEPIC_DATA_DIR": str(tmp_path / str(counted)), "FACEPIC_MODEL": "buffalo_s"}
        with embedded_database(Settings.load(env=env, env_file=None)) as live, Context(live) as ctx:
            ctx.library.ensure_indexes()
            _index(ctx, 0, first)
            asked.clear()
            settle_run(ctx)
            assert "holds_faces" in asked
            assert ("persons_with_faces_outside" in asked) == (not counted)
            persons.append(
                _groups({d["_id"]: d.get("person_id") for d in ctx.library.faces.find({}, {"person_id": 1})})
            )
            _index(ctx, len(first), rest)  # a second drive: the first's persons hold faces elsewhere
            asked.clear()
            settle_run(ctx)
            assert "persons_with_faces_outside" in asked
            assert "holds_faces" not in asked  # a later settle never counts (a scan on the embedded server)
    assert persons[0] == persons[1]
    assert len(persons[0]) < len(first)  # faces were grouped
