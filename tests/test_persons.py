"""User corrections that last: name, merge, move, reject, cover, hide, through new photos,
`recluster` and a re-run of the pipeline, on the real MongoDB wire server and S3 server."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import monitoring

from facepic import snapshot, storage
from facepic.db import Library
from tests.conftest import PHOTOS, copy_photos, invoke, settings_of

pytestmark = pytest.mark.servers


@pytest.fixture(autouse=True)
def small_snapshot_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots of a few faces a part, rewritten often: starts then come from snapshots
    rather than from the faces stored after them, which is what the checks below test."""
    monkeypatch.setattr(snapshot, "CHUNK", 3)


def library_of(env: dict[str, str]) -> Library:
    settings = settings_of(env)
    return Library(settings.mongodb_uri, settings.mongodb_db)


def person_of_photo(lib: Library) -> dict[str, str | None]:
    """relative path -> person id of its (single) face."""
    out = {}
    for image in lib.images.find({}):
        if len(image["faces"]) == 1:
            out[image["path"]] = image["faces"][0]["person_id"]
    return out


def faces_by_path(lib: Library) -> dict[str, dict[str, Any]]:
    images = {d["_id"]: d["path"] for d in lib.images.find({}, {"path": 1})}
    return {images[f["image_id"]]: f for f in lib.faces.find({}, {"embedding": 0}) if f["index"] == 0}


def check_consistent(lib: Library) -> None:
    """What every change must leave true: counts, the redundant copy, no empty persons."""
    faces = list(lib.faces.find({}, {"embedding": 0}))
    for person in lib.persons.find({}):
        mine = [f for f in faces if f["person_id"] == person["_id"]]
        assert person["face_count"] == len(mine)
        assert mine or person.get("user_locked"), f"empty person {person['_id']} left behind"
        if mine:
            assert person["best_face_id"] in {f["_id"] for f in mine}
    persons = {p["_id"] for p in lib.persons.find({}, {"_id": 1})}
    for face in faces:
        assert face["person_id"] is None or face["person_id"] in persons
    for image in lib.images.find({}):
        stored = {f["_id"]: f["person_id"] for f in faces if f["image_id"] == image["_id"]}
        assert {f["face_id"]: f["person_id"] for f in image["faces"]} == stored
    # The index worker's next start (from its snapshot and the changes noted since) sees
    # exactly the persons the faces have: every change of a person went through set_person.
    model = lib.library_model()
    if model:
        known = snapshot.load(lib, model)
        started = {fid: p for fid, p in zip(known.ids, known.persons) if p}
        assert started == {f["_id"]: f["person_id"] for f in faces if f["person_id"] and f["model"] == model}


def test_corrections_last_through_new_photos_recluster_and_a_rerun(server_env, tmp_path: Path) -> None:
    drive = tmp_path / "drive"
    labels = copy_photos(drive, group=False)
    # Hold back one photo of each identity: "new photos" arriving after the corrections.
    later = {}
    for identity in sorted(set(labels.values())):
        path = sorted(p for p, i in labels.items() if i == identity)[-1]
        later[path] = drive / path
        shutil.move(drive / path, tmp_path / path.replace("/", "_"))
    result = invoke(server_env, "run", str(drive))
    assert result.exit_code == 0, result.output
    lib = library_of(server_env)
    person = person_of_photo(lib)
    ids = sorted(set(labels.values()))
    of_identity = {i: person[sorted(p for p in person if labels[p] == i)[0]] for i in ids}
    assert len(set(of_identity.values())) == len(ids)
    a, b, c, d, e, f = (of_identity[i] for i in ids[:6])
    check_consistent(lib)  # and the index worker's snapshot now holds every face

    # Name A; merge B into A (the user says they are one); the merged person is the user's.
    assert invoke(server_env, "name", a, "Alice Smith").exit_code == 0
    result = invoke(server_env, "merge", "alice smith", b)  # by name, case-insensitive
    assert result.exit_code == 0, result.output
    assert lib.persons.find_one({"_id": b}) is None
    alice = lib.persons.find_one({"_id": a})
    assert alice["name"] == "Alice Smith" and alice["user_locked"] and alice["face_count"] == 4
    check_consistent(lib)

    # "Not this person" for one of B's old faces: it leaves Alice for good.
    faces = faces_by_path(lib)
    b_paths = sorted(p for p in faces if labels.get(p) == ids[1])
    rejected = faces[b_paths[0]]["_id"]
    assert invoke(server_env, "reject", rejected).exit_code == 0
    assert lib.faces.find_one({"_id": rejected})["person_id"] is None
    # Move one of C's faces into D; pick D's cover; hide E.
    c_face = faces[sorted(p for p in faces if labels.get(p) == ids[2])[0]]["_id"]
    assert invoke(server_env, "move", c_face, d).exit_code == 0
    d_faces = [x for x in lib.faces.find({"person_id": d}, {"_id": 1, "quality": 1})]
    worst = min(d_faces, key=lambda x: x["quality"]["value"])["_id"]
    assert invoke(server_env, "cover", d, worst).exit_code == 0
    assert invoke(server_env, "hide", e).exit_code == 0
    check_consistent(lib)

    def corrections_hold() -> None:
        alice = lib.persons.find_one({"_id": a})
        assert alice is not None and alice["name"] == "Alice Smith"
        assert lib.faces.find_one({"_id": rejected})["person_id"] != a
        assert lib.faces.find_one({"_id": c_face})["person_id"] == d
        dd = lib.persons.find_one({"_id": d})
        assert dd["best_face_id"] == worst and dd["cover_locked"]
        assert lib.persons.find_one({"_id": e})["hidden"]
        # B's faces that were merged stay with Alice (a merged person is not split).
        for p in b_paths[1:]:
            assert lib.faces.find_one({"_id": faces[p]["_id"]})["person_id"] == a
        check_consistent(lib)

    # New photos of every identity arrive.
    for path, back in later.items():
        shutil.move(tmp_path / path.replace("/", "_"), back)
    result = invoke(server_env, "run", str(drive))
    assert result.exit_code == 0, result.output
    corrections_hold()
    new_b = faces_by_path(lib)[[p for p in later if labels[p] == ids[1]][0]]
    assert new_b["person_id"] == a  # B's new photo joins Alice, who absorbed B

    # Recluster: may move what nobody corrected, never what the user did.
    result = invoke(server_env, "recluster")
    assert result.exit_code == 0, result.output
    assert "persons" in result.output
    corrections_hold()
    # The rejected face found a person of its own again (it is clear enough), not Alice.
    assert lib.faces.find_one({"_id": rejected})["person_id"] is not None

    # A re-run of the pipeline from scratch (ledger gone): every face keeps its person.
    before = {x["_id"]: x["person_id"] for x in lib.faces.find({}, {"person_id": 1})}
    settings_of(server_env).ledger_path.unlink()
    result = invoke(server_env, "run", str(drive))
    assert result.exit_code == 0, result.output
    assert {x["_id"]: x["person_id"] for x in lib.faces.find({}, {"person_id": 1})} == before
    corrections_hold()

    # Settling every face again decides all that nobody corrected, and nothing the user did.
    result = invoke(server_env, "settle", "--all")
    assert result.exit_code == 0 and result.output.startswith("persons "), result.output
    corrections_hold()
    assert lib.faces.find_one({"_id": rejected})["person_id"] not in (None, a)

    # Listing: the name first, the hidden person only with --all; covers in the bucket.
    listing = invoke(server_env, "persons")
    assert listing.output.splitlines()[0].split()[2:4] == ["Alice", "Smith"]
    assert e not in listing.output
    assert e in invoke(server_env, "persons", "--all").output
    people = json.loads(invoke(server_env, "persons", "--json").output)
    assert {p["id"] for p in people} == {x["_id"] for x in lib.persons.find({"hidden": {"$ne": True}})}
    settings = settings_of(server_env)
    keys = set(storage.open_store(settings).list_keys("faces/"))
    assert keys == {storage.person_key(x["_id"]) for x in lib.persons.find({})}
    assert (settings.folder.thumbnails / storage.person_key(d)).read_bytes() == (
        settings.folder.thumbnails / "faces" / f"face_{worst}.jpg"
    ).read_bytes()
    lib.close()


def test_corrections_refuse_what_makes_no_sense(server_env, tmp_path: Path) -> None:
    drive = tmp_path / "drive"
    drive.mkdir()
    for src in sorted(PHOTOS.glob("*/*.jpg"))[:6]:
        shutil.copy(src, drive / src.name)
    assert invoke(server_env, "run", str(drive)).exit_code == 0
    lib = library_of(server_env)
    person_ids = sorted(x["_id"] for x in lib.persons.find({}))
    face = lib.faces.find_one({"person_id": person_ids[0]})
    other_face = lib.faces.find_one({"person_id": {"$ne": person_ids[0]}})
    cases = [
        (("name", "nobody-here", "X"), "no person 'nobody-here'"),
        (("merge", person_ids[0], person_ids[0]), "cannot be merged into itself"),
        (("move", "no-such-face", person_ids[0]), "no face 'no-such-face'"),
        (("move", face["_id"], person_ids[0]), "already in person"),
        (("cover", person_ids[0], other_face["_id"]), "is not a face of person"),
        (("name", person_ids[0], " "), "a name is 1 to 200 printable characters"),
    ]
    for args, message in cases:
        result = invoke(server_env, *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert sorted(x["_id"] for x in lib.persons.find({})) == person_ids  # nothing changed
    result = invoke(server_env, "move", face["_id"])
    assert result.exit_code == 2  # usage: a person or --new
    # A unique id prefix names a person too.
    assert invoke(server_env, "hide", person_ids[0][:8]).exit_code == 0
    assert lib.persons.find_one({"_id": person_ids[0]})["hidden"] is True
    lib.close()


def test_small_or_blurred_faces_are_kept_but_found_no_person(server_env, tmp_path: Path) -> None:
    from PIL import Image, ImageFilter

    drive = tmp_path / "drive"
    drive.mkdir()
    identities = sorted({p.parent.name for p in PHOTOS.glob("*/*.jpg")})
    # One identity with three sharp photos, plus a blurred photo of it.
    sharp = sorted((PHOTOS / identities[0]).glob("*.jpg"))
    for src in sharp:
        shutil.copy(src, drive / src.name)
    # A blurred photo and a tiny face, of two identities not otherwise in the folder.
    blurred_src = sorted((PHOTOS / identities[1]).glob("*.jpg"))[0]
    Image.open(blurred_src).convert("RGB").filter(ImageFilter.GaussianBlur(8)).save(drive / "blurred.jpg", quality=90)
    tiny_src = Image.open(sorted((PHOTOS / identities[2]).glob("*.jpg"))[0]).convert("RGB")
    canvas = Image.new("RGB", (640, 480), (128, 128, 128))
    canvas.paste(tiny_src.resize((tiny_src.width // 9, tiny_src.height // 9), Image.Resampling.LANCZOS), (200, 150))
    canvas.save(drive / "tiny.jpg", quality=92)

    result = invoke(server_env, "run", str(drive))
    assert result.exit_code == 0, result.output
    lib = library_of(server_env)
    faces = faces_by_path(lib)
    assert set(faces) == {s.name for s in sharp} | {"blurred.jpg", "tiny.jpg"}  # all stored
    blurred, tiny = faces["blurred.jpg"], faces["tiny.jpg"]
    assert blurred["quality"]["sharpness"] < 50 and blurred["can_found"] is False
    assert tiny["quality"]["size"] < 40 and tiny["can_found"] is False
    assert blurred["person_id"] is None and tiny["person_id"] is None
    assert lib.persons.count_documents({}) == 1  # only the sharp identity is a person
    assert {faces[s.name]["person_id"] for s in sharp} == {lib.persons.find_one({})["_id"]}
    check_consistent(lib)
    listing = invoke(server_env, "persons").output
    assert "\n1 person;" in listing and "2 faces belong to nobody yet" in listing
    lib.close()


def test_a_running_index_worker_sees_corrections_made_meanwhile(server_env, workers, tmp_path: Path) -> None:
    from tests.conftest import wait_for_ledger

    drive = tmp_path / "drive"
    drive.mkdir()
    identities = sorted({p.parent.name for p in PHOTOS.glob("*/*.jpg")})[:2]
    first = {i: sorted((PHOTOS / i).glob("*.jpg")) for i in identities}
    for i in identities:
        shutil.copy(first[i][0], drive / f"{i}-0.jpg")
    assert invoke(server_env, "enqueue", str(drive)).exit_code == 0
    settings = settings_of(server_env)
    wait_for_ledger(settings, 2)
    lib = library_of(server_env)
    person = person_of_photo(lib)
    a, b = person[f"{identities[0]}-0.jpg"], person[f"{identities[1]}-0.jpg"]
    assert a != b
    # While the index worker runs (its persons in memory), the user merges b into a.
    assert invoke(server_env, "merge", a, b).exit_code == 0
    time.sleep(2.5)  # the worker looks at the library's revision every 2 s at most
    shutil.copy(first[identities[1]][1], drive / f"{identities[1]}-1.jpg")
    assert invoke(server_env, "enqueue", str(drive)).exit_code == 0
    wait_for_ledger(settings, 3)
    person = person_of_photo(lib)
    assert person[f"{identities[1]}-1.jpg"] == a  # not the merged-away b, which is not recreated
    assert lib.persons.find_one({"_id": b}) is None
    check_consistent(lib)
    lib.close()


def test_a_face_that_rejected_an_absorbed_person_rejects_who_took_it_in() -> None:
    from facepic.library.corrections import _taken_in_by

    absorbed = {"a": "b", "b": "c", "x": "y"}
    assert _taken_in_by(["a"], absorbed) == ["b", "c"]  # b was absorbed in turn
    assert _taken_in_by(["x", "y"], absorbed) == []  # y is rejected already
    assert _taken_in_by(["q"], absorbed) == []
    assert _taken_in_by(["x", "b"], {**absorbed, "c": "b"}) == ["c", "y"]  # a cycle ends


@pytest.mark.servers
def test_rejections_and_not_same_answers_follow_absorbed_persons_in_the_library(mongo_server: str) -> None:
    """`reject_for_each` on the wire server: a face that rejected (or was answered "not the
    same" as) an absorbed person gets the person that took it in, chains followed for
    rejections; faces naming nobody, or whose list was emptied, are left alone."""
    lib = Library(mongo_server, "facepic_carry")
    try:
        lib.faces.insert_many(
            [
                {"_id": "f1", "person_id": "q", "rejected": ["a"], "not_same": ["a"]},
                {"_id": "f2", "person_id": "q", "rejected": ["x", "z"]},
                {"_id": "f3", "person_id": "q", "rejected": []},  # emptied by a $pull
                {"_id": "f4", "person_id": "q"},  # never rejected anyone
                {"_id": "f5", "person_id": "q", "rejected": ["z"], "not_same": ["z"]},
            ]
        )
        lib.reject_for_each({"a": "b", "b": "c", "x": "y"})
        faces = {f["_id"]: f for f in lib.faces.find()}
        assert faces["f1"]["rejected"] == ["a", "b", "c"]
        assert faces["f1"]["not_same"] == ["a", "b"]  # one step: the answer was about a alone
        assert faces["f2"]["rejected"] == ["x", "z", "y"]
        assert faces["f3"]["rejected"] == [] and "rejected" not in faces["f4"]
        assert faces["f5"] == {"_id": "f5", "person_id": "q", "rejected": ["z"], "not_same": ["z"]}
    finally:
        lib.client.drop_database("facepic_carry")
        lib.close()


@pytest.mark.servers
def test_the_faces_to_settle_leave_out_those_called_not_a_face(mongo_server: str) -> None:
    """A settle's faces: those numbered since the mark, then the unassigned ones, by id, never
    a face the user called not a face; the unassigned count leaves those out too."""
    lib = Library(mongo_server, "facepic_to_settle")
    try:
        lib.faces.insert_many(
            [
                {"_id": "f5", "model": "m", "seq": 5, "person_id": "p"},
                {"_id": "f4", "model": "m", "seq": 4, "person_id": None},
                {"_id": "f6", "model": "m", "seq": 6, "person_id": None, "ignored": True},
                {"_id": "f1", "model": "m", "seq": 1, "person_id": None},  # settled before, still nobody's
                {"_id": "f0", "model": "m", "seq": 0, "person_id": None, "ignored": True},
                {"_id": "f2", "model": "m", "seq": 2, "person_id": "p"},
                {"_id": "f9", "model": "other", "seq": 9, "person_id": None},
            ]
        )
        assert [d["_id"] for d in lib.faces_to_settle("m", 3, 6)] == ["f4", "f5", "f1"]
        assert [d["_id"] for d in lib.faces_to_settle("m", 3, 6, unassigned=False)] == ["f4", "f5"]
        assert [d["_id"] for d in lib.faces_to_settle("m", None, 6)] == ["f1", "f2", "f4", "f5"]
        assert lib.unassigned_faces() == 3  # f1, f4 and the other model's f9
    finally:
        lib.client.drop_database("facepic_to_settle")
        lib.close()


class _Reads(monitoring.CommandListener):
    """The documents the server sends back to a Library's reads (a pymongo command listener)."""

    def __init__(self) -> None:
        self.docs = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") or {}
        self.docs += len(cursor.get("firstBatch") or cursor.get("nextBatch") or [])

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def counting_reads(uri: str, db_name: str) -> tuple[Library, _Reads]:
    """A Library on ``db_name`` whose client counts the documents its reads return."""
    from functools import partial
    from unittest.mock import patch

    from pymongo import MongoClient

    reads = _Reads()
    with patch("facepic.library.base.MongoClient", partial(MongoClient, event_listeners=[reads])):
        return Library(uri, db_name), reads


@pytest.mark.servers
def test_the_faces_that_constrain_a_settle_are_read_by_the_batch_s_photos_not_by_whole_persons(
    mongo_server: str,
) -> None:
    """Which faces of the persons near a settle's batch constrain a merge (in the batch's photos,
    rejecting someone, placed by the user): read by the photos and the user's few, so a large
    person is not read whole; the same faces as filtering each person's faces."""
    lib, reads = counting_reads(mongo_server, "facepic_constraining")
    try:
        lib.ensure_indexes()
        big = [{"_id": f"b{n:04d}", "person_id": "pbig", "image_id": f"i{n:04d}"} for n in range(2000)]
        big[7]["rejected"] = ["pother"]
        big[8]["locked"] = True
        big[9]["locked"] = False  # placed by the user once, then set free
        big[10]["rejected"] = []
        small = [
            {"_id": "s0", "person_id": "psmall", "image_id": "i0001"},  # in a photo of the batch
            {"_id": "s1", "person_id": "psmall", "image_id": "j0001", "locked": True},
            {"_id": "s2", "person_id": "psmall", "image_id": "j0002"},
            {"_id": "o0", "person_id": "pfar", "image_id": "i0002", "locked": True},  # not asked about
        ]
        lib.faces.insert_many([*big, *small])
        photos = {"i0001", "i0002", "i0003"}
        reads.docs = 0
        found = {f["_id"] for f in lib.constraining_faces(["pbig", "psmall"], photos)}
        expected = {
            f["_id"]
            for f in [*big, *small]
            if f["person_id"] in ("pbig", "psmall")
            and (f["image_id"] in photos or f.get("rejected") or f.get("locked"))
        }
        assert found == expected == {"b0001", "b0002", "b0003", "b0007", "b0008", "s0", "s1"}
        assert reads.docs <= 5 + 2 + 4  # the photos' faces, those rejecting, those placed (and set free)
        reads.docs = 0
        assert lib.constraining_faces([], photos) == []  # no settled person near (a first settle)
        assert reads.docs == 0
    finally:
        lib.client.drop_database("facepic_constraining")
        lib.close()


@pytest.mark.servers
def test_a_large_person_is_counted_from_a_change_s_moves_unless_its_document_changed_or_its_cover_left(
    mongo_server: str,
) -> None:
    """Recounting a large person after a settle: from the faces that joined and left it (a
    compare and set on the count and time its document had before the change), not by reading
    its faces; read whole where the document is no longer what the change saw (the change
    replayed, another writer) or its cover left; the result is what its faces give either way."""
    from facepic.derived import COUNTED_FROM_MOVES, counted_moves, quality_of, recount

    lib = Library(mongo_server, "facepic_counted")
    asked: list[str] = []
    read_whole = lib.faces_by_person

    def faces_by_person(person_ids):  # type: ignore[no-untyped-def]
        asked.extend(person_ids)
        return read_whole(person_ids)

    lib.faces_by_person = faces_by_person  # type: ignore[method-assign]

    def truth() -> tuple[int, str, float]:
        mine = list(lib.faces.find({"person_id": "pbig"}, {"quality": 1}))
        best = max(mine, key=lambda f: (quality_of(f), f["_id"]))
        return len(mine), best["_id"], quality_of(best)

    def stored() -> tuple[int, str, float]:
        doc = lib.persons.find_one({"_id": "pbig"}) or {}
        return doc["face_count"], doc["best_face_id"], doc["best_score"]

    def move(joined: list[str], left: list[str], change=None, picked=False):  # type: ignore[no-untyped-def]
        moved = counted_moves(lib, {"pbig": joined}, {"pbig": left})
        lib.faces.update_many({"_id": {"$in": joined}}, {"$set": {"person_id": "pbig"}})
        lib.faces.update_many({"_id": {"$in": left}}, {"$set": {"person_id": "pother"}})
        if change:
            change()
        asked.clear()
        recount(lib, ["pbig", "pother"], None, moved=moved)
        assert stored()[: 1 if picked else 3] == truth()[: 1 if picked else 3]
        return moved

    try:
        n = COUNTED_FROM_MOVES + 44
        lib.faces.insert_many(
            [{"_id": f"f{i:04d}", "person_id": "pbig", "quality": {"value": i / 10_000}} for i in range(n)]
            + [
                {"_id": f"n{i}", "person_id": None, "quality": {"value": q}}
                for i, q in enumerate([0.2, 0.9, 0.3, 0.95, 0.05, 0.01])
            ]
        )
        best = f"f{n - 1:04d}"
        doc = {"face_count": n, "best_face_id": best, "best_score": (n - 1) / 10_000, "cover_of": best}
        lib.persons.insert_one({"_id": "pbig", **doc, "updated_at": "2026-12-01T00:00:00.000+00:00"})
        moved = move(["n0", "n1"], ["f0000", "f0001"])  # a better face joins, two others leave
        assert stored() == (n, "n1", 0.9) and "pbig" not in asked and "pother" in asked
        recount(lib, ["pbig"], None, moved=moved)  # the change replayed: read whole
        assert stored() == truth() and "pbig" in asked
        move(
            ["n2"],
            ["f0002"],
            lambda: lib.persons.update_one({"_id": "pbig"}, {"$inc": {"face_count": 0}, "$set": {"updated_at": "x"}}),
        )
        assert "pbig" in asked  # another writer touched it meanwhile: read whole
        move([], ["n1"])  # its cover left: read whole, the next best is its cover
        assert "pbig" in asked and stored()[:2] == (n - 1, "n2")
        move(["n4"], [], lambda: lib.faces.delete_one({"_id": "n4"}))  # deleted by another process
        assert "pbig" in asked
        for i in range(n):  # a new model's qualities (`reembed`): the stored cover's is stale
            lib.faces.update_one({"_id": f"f{i:04d}"}, {"$set": {"quality": {"value": i / 100_000}}})
        lib.faces.update_one({"_id": "n2"}, {"$set": {"quality": {"value": 0.25}}})
        move(["n5"], [])
        assert "pbig" in asked and stored() == (n, "n2", 0.25)
        lib.persons.update_one({"_id": "pbig"}, {"$set": {"cover_locked": True}})
        move(["n3"], [], picked=True)  # a better face joins a cover the user picked: it stays
        assert "pbig" not in asked and stored() == (n + 1, "n2", 0.25)
    finally:
        lib.client.drop_database("facepic_counted")
        lib.close()


@pytest.mark.servers
def test_a_person_with_faces_outside_a_batch_is_found_without_reading_all_of_a_large_one(mongo_server: str) -> None:
    """Whether a person has a face outside a settle's batch: a person of many faces is asked
    for one face more than the batch holds of it (a read bounded by the batch, not by the
    person), the others together; the answers are the same either way."""
    from facepic.library.corrections import ASKED_ALONE

    lib, reads = counting_reads(mongo_server, "facepic_outside")
    try:
        big = [{"_id": f"b{n:04d}", "person_id": "pbig"} for n in range(ASKED_ALONE + 2000)]
        small = [{"_id": f"s{n}", "person_id": "psmall"} for n in range(3)]
        lib.faces.insert_many([*big, *small])
        lib.persons.insert_many([{"_id": "pbig", "face_count": len(big)}, {"_id": "psmall", "face_count": 3}])
        for held in (300, 5):  # the batch holds many of the large person's faces, or a few
            batch = {f["_id"] for f in big[:held]} | {"s0", "s1"}
            holding = {"pbig": held, "psmall": 2}
            reads.docs = 0
            assert lib.persons_with_faces_outside(["pbig", "psmall"], batch, holding) == {"pbig", "psmall"}
            assert reads.docs <= 1 + held + 1 + 3  # its count, held + 1 of its faces, the small one's
            reads.docs = 0
            assert lib.persons_with_faces_outside(["pbig", "psmall"], batch) == {"pbig", "psmall"}  # read whole
            assert reads.docs == len(big) + 3
        # Every face of both in the batch: none outside, whichever way it is asked.
        batch = {f["_id"] for f in big} | {"s0", "s1", "s2"}
        holding = {"pbig": len(big), "psmall": 3}
        assert lib.persons_with_faces_outside(["pbig", "psmall", "pnone"], batch, holding) == set()
        assert lib.persons_with_faces_outside(["pbig", "psmall", "pnone"], batch) == set()
        lib.persons.update_one({"_id": "pbig"}, {"$set": {"face_count": 1}})  # a stale count: still right
        assert lib.persons_with_faces_outside(["pbig"], batch - {"b0000"}, {"pbig": len(big) - 1}) == {"pbig"}
    finally:
        lib.client.drop_database("facepic_outside")
        lib.close()
