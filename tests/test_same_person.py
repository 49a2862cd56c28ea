""" "Same person?" on a library whose persons are split: `persons --suggest` lists the pairs (exact
lines), `not-same` keeps a pair apart through `recluster` and `settle --all` and out of the
suggestions, `undo` takes it back, a later merge overrules it. The embedded database of
`facepic run`, real photos, and a library of synthetic faces for what ids alone decide."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.synthetic import _unit
from facepic.context import Context
from facepic.db import Library
from facepic.derived import Covers, recount
from facepic.documents import embedding_from_bson, embedding_to_bson, face, new_person
from facepic.embedded import embedded_database
from facepic.library import base
from facepic.models import EMBEDDING_DIM
from facepic.persons import merge_persons, not_same, undo_last
from facepic.settle import Linkage, settle_library
from tests.conftest import PHOTOS, invoke, settings_of
from tests.test_corrections_hold import SPLIT_EVERYTHING

IDENTITIES = ("jessica_alba", "tom_hanks")


@contextmanager
def opened(env: dict[str, str]) -> Iterator[Context]:
    with embedded_database(settings_of(env)) as running, Context(running) as ctx:
        yield ctx


def split_library(env: dict[str, str], drive: Path) -> dict[str, str]:
    """The photos of IDENTITIES, each a person of its own (as a hard library splits them):
    {photo file: identity}."""
    drive.mkdir()
    labels = {}
    for identity in IDENTITIES:
        for src in sorted((PHOTOS / identity).glob("*.jpg")):
            shutil.copy(src, drive / f"{identity}-{src.name}")
            labels[f"{identity}-{src.name}"] = identity
    result = invoke({**env, **SPLIT_EVERYTHING}, "run", str(drive))
    assert result.exit_code == 0, result.output
    return labels


def persons_of(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = invoke(env, "persons", "--json", "--all")
    assert result.exit_code == 0, result.output
    return {p["id"]: p for p in json.loads(result.output)}


def person_of_photo(env: dict[str, str]) -> dict[str, str]:
    return {f["photo"]: p["id"] for p in persons_of(env).values() for f in p["faces"]}


def mean_faces(env: dict[str, str]) -> dict[str, np.ndarray]:
    """Each person's mean face, read here from its faces' embeddings."""
    with opened(env) as ctx:
        faces = list(ctx.library.faces.find({"person_id": {"$ne": None}}, {"person_id": 1, "embedding": 1}))
    rows: dict[str, list[np.ndarray]] = {}
    for f in faces:
        rows.setdefault(f["person_id"], []).append(embedding_from_bson(f["embedding"]))
    return {p: np.mean(r, axis=0) for p, r in rows.items()}


def listing(env: dict[str, str], pairs: list[tuple[str, str]]) -> str:
    """What `persons --suggest` prints for these (asked, kept) pairs of unnamed persons."""
    people, means = persons_of(env), mean_faces(env)
    linkage = Linkage.from_settings(settings_of(env))
    grown = sum(1 for p in people.values() if p["face_count"] > 1)  # the linkage counts these

    def who(pid: str) -> str:
        n = people[pid]["face_count"]
        return f"{pid}  (unnamed)  {n} face{'' if n == 1 else 's'}"

    scored = []
    for a, b in pairs:
        needed = linkage.needed(people[a]["face_count"], people[b]["face_count"], grown)
        scored.append((needed - float(means[a] @ means[b]), a, b, float(means[a] @ means[b]), needed))
    lines = [
        f"{n:4d}  {who(a)}  ~  {who(b)}  similarity {sim:.2f} (a merge needs {needed:.2f})\n"
        for n, (_, a, b, sim, needed) in enumerate(sorted(scored), 1)
    ]
    tail = (
        f"{len(pairs)} pair{'' if len(pairs) == 1 else 's'} may be one person: `facepic merge SECOND FIRST` joins a "
        "pair, `facepic not-same FIRST SECOND` keeps it apart\n"
    )
    return "".join(lines) + tail


def test_a_no_keeps_a_split_person_apart_through_recluster_and_settle_and_out_of_the_suggestions(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    env = offline_env
    labels = split_library(env, tmp_path / "drive")
    person = person_of_photo(env)
    assert len(set(person.values())) == 6
    # Every two persons of one identity are asked about (the larger id keeps, as each has one
    # face), strangers never.
    pairs = []
    for identity in IDENTITIES:
        mine = sorted(person[p] for p in labels if labels[p] == identity)
        pairs += [(b, a) for i, a in enumerate(mine) for b in mine[i + 1 :]]
    result = invoke(env, "persons", "--suggest")
    assert result.exit_code == 0 and result.output == listing(env, pairs), result.output
    rows = json.loads(invoke(env, "persons", "--suggest", "--json").output)
    assert {(r["a"]["id"], r["b"]["id"]) for r in rows} == set(pairs)

    # "Not the same" for two photos of Jessica Alba.
    x0, x1, x2 = sorted(p for p in labels if labels[p] == IDENTITIES[0])
    a, b = person[x0], person[x1]
    result = invoke(env, "not-same", a, b)
    assert result.exit_code == 0, result.output
    assert result.output == f"{a} and {b} are not the same person: they stay apart and are not suggested again\n"
    rest = [p for p in pairs if set(p) != {a, b}]
    assert invoke(env, "persons", "--suggest").output == listing(env, rest)

    def apart() -> None:
        now = person_of_photo(env)
        assert now[x0] != now[x1]
        assert not {
            (r["a"]["id"], r["b"]["id"]) for r in json.loads(invoke(env, "persons", "--suggest", "--json").output)
        } & {
            (now[x0], now[x1]),
            (now[x1], now[x0]),
        }
        assert invoke(env, "check").output == "the library is consistent\n"

    # recluster joins what is alike, never these two; nor does settling every face afresh.
    result = invoke(env, "recluster")
    assert result.exit_code == 0, result.output
    apart()
    now = person_of_photo(env)
    assert now[x2] in (now[x0], now[x1])  # the third photo joined one of them
    tom = {now[p] for p in labels if labels[p] == IDENTITIES[1]}
    assert len(tom) == 1  # the other identity, asked about and not answered, is one person again
    for _ in range(2):
        result = invoke(env, "settle", "--all")
        assert result.exit_code == 0, result.output
        apart()
        assert invoke(env, "recluster").exit_code == 0
        apart()

    # Undo takes the "no" back: the pair is asked about again.
    result = invoke(env, "undo")
    assert result.exit_code == 0 and result.output.startswith("undid the not same of "), result.output
    now = person_of_photo(env)
    (row,) = json.loads(invoke(env, "persons", "--suggest", "--json").output)
    assert {row["a"]["id"], row["b"]["id"]} == {now[x0], now[x1]}


def test_a_merge_after_a_no_overrules_it(offline_env: dict[str, str], tmp_path: Path) -> None:
    env = offline_env
    labels = split_library(env, tmp_path / "drive")
    person = person_of_photo(env)
    x0, x1, _ = sorted(p for p in labels if labels[p] == IDENTITIES[0])
    y0 = sorted(p for p in labels if labels[p] == IDENTITIES[1])[0]
    a, b, stranger = person[x0], person[x1], person[y0]
    assert invoke(env, "not-same", a, b).exit_code == 0
    assert invoke(env, "not-same", b, stranger).exit_code == 0
    # The user changes their mind: one person, every face kept (none leaves for the "no").
    result = invoke(env, "merge", b, a)
    assert result.exit_code == 0, result.output
    merged = persons_of(env)[b]
    assert sorted(f["photo"] for f in merged["faces"]) == [x0, x1]
    with opened(env) as ctx:
        faces = list(ctx.library.faces.find({}, {"person_id": 1, "rejected": 1, "not_same": 1}))
    # The other "no" stays, on the faces it was answered for (x0 was not in b then).
    answers = sorted((f["rejected"], f["not_same"]) for f in faces if f["person_id"] == b)
    assert answers == [([], []), ([stranger], [stranger])]
    assert [(f["rejected"], f["not_same"]) for f in faces if f["person_id"] == stranger] == [([b], [b])]
    assert invoke(env, "check").output == "the library is consistent\n"


def test_a_no_holds_when_settling_gives_both_persons_other_ids(offline_env: dict[str, str]) -> None:
    """Four faces of one look, each its own person; "no" for the two whose ids lose the vote
    when `settle --all` groups each with another: the faces that rejected a person gone that
    way reject the person that took its faces, so the next settle keeps the two apart too."""
    rng = np.random.default_rng(0)
    look = _unit(rng.standard_normal((1, EMBEDDING_DIM)))[0]
    faces = _unit(0.8 * look + 0.6 * _unit(rng.standard_normal((4, EMBEDDING_DIM))))
    # p2 is nearest p0 and p3 nearest p1, so settling pairs them so; p2 < p0 and p3 < p1 keep.
    faces[2] = _unit((faces[0] + 0.5 * faces[2])[None])[0]
    faces[3] = _unit((faces[1] + 0.5 * faces[3])[None])[0]
    ids = ["pd0000000000000", "pd0000000000001", "pc0000000000000", "pc0000000000001"]
    with opened(offline_env) as ctx:
        lib = ctx.library
        lib.claim_model("buffalo_s")
        _store(lib, ids, faces, Covers(ctx))
        not_same(lib, ids[0], ids[1], Covers(ctx))
        linkage = Linkage.default()
        for _ in range(2):
            settle_library(lib, linkage, Covers(ctx), everything=True)
            persons = {f["_id"]: f["person_id"] for f in lib.faces.find({}, {"person_id": 1})}
            assert persons["f0"] == persons["f2"] == ids[2] and persons["f1"] == persons["f3"] == ids[3]
            rejected = {f["_id"]: set(f.get("rejected") or ()) for f in lib.faces.find({}, {"rejected": 1})}
            assert {ids[1], ids[3]} <= rejected["f0"] and {ids[0], ids[2]} <= rejected["f1"]


def test_undo_entries_of_many_faces_are_kept_in_parts_and_undone_whole(
    offline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge and a "no" over more faces than one stored part holds (BSON's 16 MB limit is
    about 130,000 faces of "before" state): their faces are kept in parts, and undo puts every
    face back; the parts of entries beyond the kept ones go with them."""
    monkeypatch.setattr(base, "UNDO_PART_FACES", 4)
    rng = np.random.default_rng(1)
    faces = _unit(rng.standard_normal((11, EMBEDDING_DIM)))
    ids = ["pa0000000000000"] * 6 + ["pb0000000000000"] * 5
    with opened(offline_env) as ctx:
        lib, covers = ctx.library, Covers(ctx)
        lib.claim_model("buffalo_s")
        _store(lib, ids, faces, covers)

        def placed() -> dict[str, str]:
            return {f["_id"]: f["person_id"] for f in lib.faces.find({}, {"person_id": 1})}

        before = placed()
        not_same(lib, ids[0], ids[-1], covers)
        assert lib.undo_parts.count_documents({}) == 3  # 11 faces in parts of 4
        rejected = {f["_id"]: f.get("rejected") for f in lib.faces.find({}, {"rejected": 1})}
        assert sum(1 for r in rejected.values() if r) == 11
        merge_persons(lib, ids[0], [ids[-1]], covers)
        assert lib.undo_parts.count_documents({}) == 6
        assert set(placed().values()) == {ids[0]}
        undo_last(lib, covers)  # the merge: every face where it was
        assert placed() == before
        undo_last(lib, covers)  # the "no": no face rejects anyone
        assert not any(f.get("rejected") for f in lib.faces.find({}, {"rejected": 1}))
        monkeypatch.setattr("facepic.library.corrections.UNDO_KEPT", 1)
        not_same(lib, ids[0], ids[-1], covers)
        assert lib.undo_log.count_documents({}) == 1 and lib.undo_parts.count_documents({}) == 3


def test_undo_gives_an_ambiguous_face_its_candidates_back(offline_env: dict[str, str]) -> None:
    """A face the index stage found between two persons keeps them as ``candidates`` until a
    correction decides it (a move unsets them); undoing the move puts them back, and a face
    that had none gets none."""
    from facepic.persons import move_faces

    rng = np.random.default_rng(2)
    faces = _unit(rng.standard_normal((3, EMBEDDING_DIM)))
    ids = ["pa0000000000000", "pb0000000000000", "pc0000000000000"]
    with opened(offline_env) as ctx:
        lib, covers = ctx.library, Covers(ctx)
        lib.claim_model("buffalo_s")
        _store(lib, ids, faces, covers)
        lib.faces.update_one({"_id": "f0"}, {"$set": {"candidates": [ids[0], ids[1]]}})
        move_faces(lib, ["f0", "f2"], ids[1], covers)
        moved = {f["_id"]: f for f in lib.faces.find({"_id": {"$in": ["f0", "f2"]}})}
        assert "candidates" not in moved["f0"] and moved["f0"]["person_id"] == ids[1]
        undo_last(lib, covers)
        back = {f["_id"]: f for f in lib.faces.find({"_id": {"$in": ["f0", "f2"]}})}
        assert back["f0"]["candidates"] == [ids[0], ids[1]] and back["f0"]["person_id"] == ids[0]
        assert "candidates" not in back["f2"] and back["f2"]["person_id"] == ids[2]


def _store(lib: Library, person_ids: list[str], embeddings: np.ndarray, covers: Covers) -> None:
    """A face of its own photo for each person."""
    docs = []
    for n, (pid, e) in enumerate(zip(person_ids, embeddings)):
        fields = {"box": [10.0, 10.0, 90.0, 90.0], "score": 0.9, "quality": {"value": 0.5}, "model": "buffalo_s"}
        docs.append(face(f"f{n}", f"photo{n}", 0, {**fields, "embedding": embedding_to_bson(e)}, pid, n + 1))
        lib.new_person_if_missing(pid, new_person("buffalo_s", "2024-01-01T00:00:00"))
    lib.next_seq(len(docs))
    lib.upsert_faces(docs)
    recount(lib, person_ids, covers)


def test_the_pages_pairs_follow_the_library_and_read_it_whole_aside(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """`web.roster.Suggested`: a change to a few persons is read at once; after one too large
    to list (a recluster), the pairs known before answer while every person is read again."""
    from facepic.web.roster import Suggested

    env = offline_env
    labels = split_library(env, tmp_path / "drive")
    person = person_of_photo(env)
    x0, x1, _ = sorted(p for p in labels if labels[p] == IDENTITIES[0])
    y0, y1, _ = sorted(p for p in labels if labels[p] == IDENTITIES[1])
    with opened(env) as ctx:
        lib, covers = ctx.library, Covers(ctx)
        kept = Suggested(lib, Linkage.default())

        def asked() -> set[frozenset[str]]:
            return {frozenset((p.a, p.b)) for p in kept.pairs()}

        everything = asked()
        assert len(everything) == 6
        not_same(lib, person[x0], person[x1], covers)
        assert asked() == everything - {frozenset((person[x0], person[x1]))}
        # A change naming more persons than the library lists, then another "no".
        lib.set_persons_fields([f"p{n:015x}" for n in range(600)], {"updated_at": "2024-01-01T00:00:00"})
        not_same(lib, person[y0], person[y1], covers)
        assert asked() == everything - {frozenset((person[x0], person[x1]))}  # known before
        assert kept._aside is not None
        kept._aside.join(60)
        assert asked() == everything - {frozenset((person[x0], person[x1])), frozenset((person[y0], person[y1]))}


def test_the_people_page_does_not_wait_for_the_first_read_of_the_pairs(
    offline_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` reads every person's faces for the "same person?" pairs as it starts (seconds at
    10,000 persons). The people page's link to them has no count while that read goes on,
    instead of the page waiting for it; once read, the count is there."""
    import threading

    from facepic import suggest
    from facepic.web.roster import Suggested

    split_library(offline_env, tmp_path / "drive")
    release = threading.Event()
    real = suggest.read

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(suggest, "read", slow)
    with opened(offline_env) as ctx:
        kept = Suggested(ctx.library, Linkage.default())
        warming = threading.Thread(target=kept.warm)
        warming.start()
        while not kept._lock.locked():
            warming.join(0.01)
        assert kept.count() is None  # answered at once, the read still going on
        release.set()
        warming.join(60)
        assert kept.count() == len(kept.pairs()) == 6


def test_the_pairs_are_read_where_scipy_is_not_installed(
    offline_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web service's image has no face engine, and so no SciPy: reading the persons' sums
    for the "same person?" pairs needs numpy alone (it raised ModuleNotFoundError there)."""
    import sys

    from facepic import suggest
    from facepic.web.roster import Suggested

    split_library(offline_env, tmp_path / "drive")
    with opened(offline_env) as ctx:
        importable = suggest.read(ctx.library)
        for name in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy: ModuleNotFoundError
        blocked = suggest.read(ctx.library)
        kept = Suggested(ctx.library, Linkage.default())
        kept.warm()
        assert kept.count() == len(kept.pairs()) == 6
    assert importable.keys() == blocked.keys() and len(blocked) > 2
    for pid, facts in blocked.items():
        other = importable[pid]
        assert np.array_equal(facts.sum, other.sum) and facts.count == other.count > 0
        assert (facts.photos, facts.rejects, facts.named) == (other.photos, other.rejects, other.named)
