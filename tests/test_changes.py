"""Changes to persons are all or nothing, and `facepic check` finds (and `--repair` fixes)
every derived field that drifted.

The kill test runs each correction (and recluster, and settle) in a forked process that
is killed (``os._exit``) just before its Nth write reaches the MongoDB wire server, for every N
up to its number of writes; the library is then opened as the next process would open it
(pending changes finished), checked, and found to be either as before the change or as after it.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymongo import monitoring

from facepic import changes, derived
from facepic import check as consistency
from facepic.context import Context
from facepic.db import COLLECTIONS, Library
from facepic.derived import Covers, recount
from facepic.matching import Rules
from facepic.persons import (
    hide_person,
    merge_persons,
    move_face,
    name_person,
    not_same,
    pick_cover,
    recluster_library,
    reject_face,
)
from facepic.settings import Settings
from facepic.settle import Linkage, settle_behind, settle_library
from tests.conftest import PHOTOS, invoke, offline_settings

WRITES = {"insert", "update", "delete", "findAndModify"}
KILLED = 77


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, mongo_server: str, model_root: Path) -> Iterator[dict[str, Any]]:
    """A library of the committed photos on the wire server, one face of its biggest person
    left unassigned (so that settle and recluster have something to place), saved to restore."""
    data = tmp_path_factory.mktemp("changes")
    env = {
        **offline_settings(data / "data", model_root),
        "FACEPIC_MONGODB_URI": mongo_server,
        "FACEPIC_MONGODB_DB": "facepic_changes",
    }
    result = invoke(env, "run", str(PHOTOS))
    assert result.exit_code == 0, result.output
    settings = Settings.load(env=env, env_file=None)
    with Context(settings) as ctx:
        lib = ctx.library
        persons = sorted(lib.all_persons(), key=lambda p: (-p["face_count"], p["_id"]))
        big = persons[0]
        faces = sorted(f["_id"] for f in lib.faces_with_images([big["_id"]]) if f["_id"] != big["best_face_id"])
        loose = faces[:1]
        lib.set_person(loose, None)
        recount(lib, [big["_id"]], Covers(ctx))
        lib.refresh_image_faces(lib.images_of_faces(loose))
        assert consistency.check(lib, settings.folder).count == 0
        saved = {name: list(lib.db[name].find({})) for name in COLLECTIONS}
        ids = {
            "big": big["_id"],
            "second": persons[1]["_id"],
            "third": persons[2]["_id"],
            "big_face": faces[1],
            "third_face": next(f["_id"] for f in lib.faces_with_images([persons[2]["_id"]])),
        }
    shutil.copytree(settings.folder.thumbnails, data / "thumbnails-saved")
    yield {"env": env, "settings": settings, "saved": saved, "ids": ids, "thumbs": data / "thumbnails-saved"}


def _restore(base: dict[str, Any]) -> None:
    settings = base["settings"]
    lib = Library(settings.mongodb_uri, settings.mongodb_db)
    try:
        for name, docs in base["saved"].items():
            lib.db[name].delete_many({})
            if docs:
                lib.db[name].insert_many(docs)
    finally:
        lib.close()
    shutil.rmtree(settings.folder.thumbnails)
    shutil.copytree(base["thumbs"], settings.folder.thumbnails)


def _state(lib: Library) -> tuple[Any, ...]:
    """What a change decides: each face's person and constraints, each person's user fields."""
    faces = sorted(
        (
            f["_id"],
            f.get("person_id"),
            bool(f.get("locked")),
            tuple(sorted(f.get("rejected") or ())),
            tuple(sorted(f.get("not_same") or ())),
        )
        for f in lib.db["faces"].find({}, {"embedding": 0})
    )
    persons = sorted(
        (p["_id"], p.get("name", ""), bool(p.get("user_locked")), bool(p.get("hidden")), bool(p.get("cover_locked")))
        for p in lib.all_persons()
    )
    return tuple(faces), tuple(persons)


class _Killer(monitoring.CommandListener):
    def __init__(self, at: int, counted: Any) -> None:
        self.at, self.n, self.counted = at, 0, counted

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in WRITES:
            self.n += 1
            self.counted.value = self.n
            if self.n == self.at:
                os._exit(KILLED)  # before the write leaves: the process dies there

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _child(settings: Settings, action: Callable[[Library, Covers, Settings], Any], at: int, counted: Any) -> None:
    monitoring.register(_Killer(at, counted))
    with Context(settings) as ctx:
        action(ctx.library, Covers(ctx), settings)
    os._exit(0)


def _run(settings: Settings, action: Callable[..., Any], at: int) -> tuple[int, int]:
    """Run ``action`` in a forked process killed at its ``at``th write (0: never); returns
    its exit code and the writes it started."""
    fork = multiprocessing.get_context("fork")
    counted = fork.Value("i", 0)
    process = fork.Process(target=_child, args=(settings, action, at, counted))
    process.start()
    process.join(120)
    assert process.exitcode is not None, "the change did not end"
    return process.exitcode, counted.value


ACTIONS: dict[str, Callable[[dict[str, str]], Callable[[Library, Covers, Settings], Any]]] = {
    "name": lambda i: lambda lib, c, s: name_person(lib, i["big"], "Alice"),
    "hide": lambda i: lambda lib, c, s: hide_person(lib, i["second"]),
    "merge": lambda i: lambda lib, c, s: merge_persons(lib, i["big"], [i["second"]], c),
    "not same": lambda i: lambda lib, c, s: not_same(lib, i["big"], i["second"], c),
    "move": lambda i: lambda lib, c, s: move_face(lib, i["third_face"], i["big"], c),
    "new person": lambda i: lambda lib, c, s: move_face(lib, i["big_face"], None, c),
    "reject": lambda i: lambda lib, c, s: reject_face(lib, i["big_face"], c),
    "cover": lambda i: lambda lib, c, s: pick_cover(lib, i["big"], i["big_face"], c),
    "recluster": lambda i: lambda lib, c, s: recluster_library(lib, Rules.from_settings(s), c),
    "settle": lambda i: (
        lambda lib, c, s: settle_library(lib, Linkage.from_settings(s), c, Rules.from_settings(s), everything=True)
    ),
    "settle, persons counted from its moves": lambda i: (
        lambda lib, c, s: _counting_from_moves(
            lambda: settle_library(lib, Linkage.from_settings(s), c, Rules.from_settings(s), everything=True)
        )
    ),
}


def _counting_from_moves(action: Callable[[], Any]) -> Any:
    """``action`` with every person counted from a change's moves, however few its faces (in
    the forked process that runs it; finishing the change after it was killed counts as it
    recorded)."""
    derived.COUNTED_FROM_MOVES = 1
    return action()


@pytest.mark.parametrize("kind", sorted(ACTIONS))
def test_a_change_killed_at_any_write_is_whole_or_absent_once_the_library_is_opened(
    base: dict[str, Any], kind: str
) -> None:
    settings = base["settings"]
    action = ACTIONS[kind](base["ids"])
    _restore(base)
    with Context(settings) as ctx:
        before = _state(ctx.library)
    code, writes = _run(settings, action, 0)
    assert code == 0
    with Context(settings) as ctx:
        after = _state(ctx.library)
        assert consistency.check(ctx.library, settings.folder).count == 0
    assert after != before or kind.startswith(("recluster", "settle")), f"{kind} changed nothing"
    assert writes >= 3
    outcomes = []
    for at in range(1, writes + 1):
        _restore(base)
        code, _ = _run(settings, action, at)
        assert code == KILLED, f"{kind} was not killed at write {at}"
        with Context(settings) as ctx:
            changes.finish_pending(ctx.library, Covers(ctx))
            report = consistency.check(ctx.library, settings.folder)
            state = _state(ctx.library)
        assert report.count == 0, f"{kind} killed at write {at} of {writes}:\n" + "\n".join(report.lines())
        assert state in (before, after), f"{kind} killed at write {at} of {writes} is neither before nor after"
        outcomes.append("after" if state == after else "before")
    # The head's write is the line: killed before it nothing happened, after it all did.
    assert outcomes[0] == "before" and "after" in outcomes, outcomes


def test_check_names_each_broken_field_and_repair_fixes_what_follows_from_the_faces(base: dict[str, Any]) -> None:
    settings = base["settings"]
    ids = base["ids"]
    _restore(base)
    with Context(settings) as ctx:
        lib = ctx.library
        assert consistency.check(lib, settings.folder).count == 0
        third_image = next(iter(lib.images_of_faces([ids["third_face"]])))
        lib.db["persons"].update_one({"_id": ids["big"]}, {"$inc": {"face_count": 5}})
        lib.db["persons"].update_one({"_id": ids["second"]}, {"$set": {"best_face_id": ids["third_face"]}})
        lib.db["images"].update_one({"_id": third_image}, {"$set": {"faces": []}})
        lib.db["faces"].update_one({"_id": ids["big_face"]}, {"$set": {"person_id": "pnobody0000000000"}})
        lib.db["persons"].insert_one({"_id": "pempty00000000000", "face_count": 0, "name": "", "best_face_id": None})
        orphan = dict(lib.db["faces"].find_one({"_id": ids["third_face"]}) or {})
        orphan.update(_id="orphan-face", image_id="no-such-photo")
        lib.db["faces"].insert_one(orphan)
        (settings.folder.thumbnails / "faces" / "face_stray.jpg").write_bytes(b"\xff\xd8\xff\xd9")
        settings.folder.cover(ids["third"]).unlink()
        report = consistency.check(lib, settings.folder)
    found = set(report.problems)
    assert {
        "face count",
        "cover",
        "photo's faces",
        "missing person",
        "empty person",
        "missing photo",
        "unnamed file",
        "missing file",
    } <= found, found
    result = invoke(base["env"], "check")
    assert result.exit_code == 1 and "facepic check --repair" in result.output, result.output
    result = invoke(base["env"], "check", "--repair")
    assert "repaired: deleted 1 face of photos that are gone" in result.output, result.output
    assert "repaired: made 1 person that faces were in" in result.output, result.output
    assert "repaired: deleted 1 file in" in result.output, result.output
    assert result.output.rstrip().endswith("the library is consistent"), result.output
    assert result.exit_code == 0
    with Context(settings) as ctx:
        assert consistency.check(ctx.library, settings.folder).count == 0
        assert ctx.library.person("pnobody0000000000")["face_count"] == 1
        assert ctx.library.person("pempty00000000000") is None
    assert settings.folder.cover(ids["third"]).exists()


def test_the_next_command_finishes_a_change_left_midway(base: dict[str, Any]) -> None:
    settings = base["settings"]
    merge = ACTIONS["merge"](base["ids"])
    _restore(base)
    _run(settings, merge, 0)
    with Context(settings) as ctx:
        after = _state(ctx.library)
    _restore(base)
    code, _ = _run(settings, merge, 4)  # its part, its head, then killed at its first write
    assert code == KILLED
    with Context(settings) as ctx:
        assert [h["kind"] for h in ctx.library.change_heads()] == ["merge"]
        assert "pending change" in consistency.check(ctx.library, settings.folder).problems
    result = invoke(base["env"], "persons")
    assert result.exit_code == 0, result.output
    with Context(settings) as ctx:
        assert consistency.check(ctx.library, settings.folder).count == 0
        assert _state(ctx.library) == after


@contextmanager
def _restored(base: dict[str, Any]) -> Iterator[tuple[Context, Library, str]]:
    """The saved library, opened: its context, its library and its model."""
    _restore(base)
    with Context(base["settings"]) as ctx:
        model = ctx.library.library_model()
        assert model is not None
        yield ctx, ctx.library, model


def test_settling_in_slices_reaches_every_face_a_slice_at_a_time(base: dict[str, Any]) -> None:
    settings = base["settings"]
    with _restored(base) as (ctx, lib, model):
        lib.set_settle_mark(model, 0)
        upto = lib.current_seq()
        slices = []
        while True:
            s = settle_library(
                lib, Linkage.from_settings(settings), Covers(ctx), Rules.from_settings(settings), slice_faces=5
            )
            slices.append(int(lib.settle_mark()["seq"]))
            if not s.more:
                break
        # Each slice takes 5 numbers on; a slice's moves take numbers too (notes), so the last
        # one ends at or past where the first began.
        assert slices[:-1] == list(range(5, 5 * len(slices), 5)) and slices[-1] >= upto, slices
        assert consistency.check(lib, settings.folder).count == 0
        assert lib.unassigned_faces() == 0  # the face left unassigned was placed with the last slice


def test_settling_behind_the_index_stage_waits_for_a_slice_of_faces(base: dict[str, Any]) -> None:
    """The index worker between its batches: nothing while fewer than a slice of faces are
    unsettled, then one slice of them, the rest left to later."""
    with _restored(base) as (ctx, lib, model):
        upto = lib.current_seq()
        assert upto > 10
        lib.set_settle_mark(model, upto - 4)
        assert settle_behind(ctx, 5) is None
        assert lib.settle_mark()["seq"] == upto - 4
        lib.set_settle_mark(model, 0)
        s = settle_behind(ctx, 5)
        assert s is not None and s.more
        assert lib.settle_mark()["seq"] == 5
        assert consistency.check(lib, base["settings"].folder).count == 0


@pytest.mark.servers  # the embedded database
def test_check_compares_the_ledger_and_the_bucket_with_the_library(tmp_path: Path, model_root: Path) -> None:
    """The embedded default with its folder store: a photo done in the ledger but not stored,
    one stored but not done, an object nothing names and one the library names that is gone."""
    env = {**offline_settings(tmp_path / "data", model_root), "FACEPIC_COPY_ORIGINALS": "true"}
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted(PHOTOS.glob("*/*.jpg"))[:3]:
        shutil.copy(src, photos / f"{src.parent.name}-{src.name}")
    assert invoke(env, "run", str(photos)).exit_code == 0
    assert invoke(env, "check").output.strip() == "the library is consistent"
    settings = Settings.load(env=env, env_file=None)
    from facepic.embedded import embedded_database
    from facepic.ledger import Ledger

    with embedded_database(settings) as live, Context(live) as ctx:
        lib = ctx.library
        images = sorted(lib.images_for_check(), key=lambda i: i["path"])
        gone, failed, lost = images[0], images[1], images[2]
        lib.delete_images([gone["_id"]])
        keys = lib.image(lost["_id"])["keys"]
    Ledger(settings.folder.ledger).append({"root": str(photos), "path": failed["path"], "status": "failed"})
    (settings.folder.objects / keys["original"]).unlink()
    stray = "thumb_00000000-0000-4000-8000-000000000000.jpg"  # FacePic's shape, no photo of it
    (settings.folder.objects / stray).write_bytes(b"\xff\xd8\xff\xd9")
    (settings.folder.objects / "notes.txt").write_text("the user's own object: left alone")
    result = invoke(env, "check")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"ledger: {gone['path']} is done in the ledger and not stored (run facepic run again)" in lines
    assert f"ledger: {failed['path']} is stored and not done in the ledger" in lines
    assert (
        f"missing object: {keys['original']} is named by the library and not in the bucket (facepic run --upload-only)"
    ) in lines
    assert f"unnamed object: {stray} in the bucket belongs to nothing in the library" in lines
    assert not any("notes.txt" in line for line in lines)


def test_a_person_a_change_would_count_from_two_sets_of_moves_is_read_whole() -> None:
    """Each set of moves saw the person as it was before the change, so adding either alone
    would lose the other's: recount reads such a person's faces instead."""
    change = changes.Change("settle")
    was = {"face_count": 300, "updated_at": "t"}
    change.count_from_moves(
        {"a": {"was": was, "joined": ["f1"], "left": []}, "b": {"was": was, "joined": [], "left": []}}
    )
    change.count_from_moves({"a": {"was": was, "joined": ["f2"], "left": []}})
    change.count_from_moves({"a": {"was": was, "joined": ["f3"], "left": []}})
    assert set(change.moved) == {"b"}
