"""`facepic reembed`: a library moves to another face model, keeping names and corrections,
and keeps working on the old model until the switch. The second model here is a folder of
the offline pack's ONNX files under another name (the only models reachable offline): the
mechanics are the same for buffalo_l."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from facepic.db import Library
from facepic.models import offline_pack_files
from tests.conftest import PHOTOS, invoke, settings_of

pytestmark = pytest.mark.servers


def test_reembed_keeps_corrections_and_the_old_model_works_until_the_switch(server_env, tmp_path: Path) -> None:
    drive = tmp_path / "drive"
    drive.mkdir()
    sources = sorted(PHOTOS.glob("*/*.jpg"))[:12]  # four identities, three photos each
    for src in sources[:-1]:
        shutil.copy(src, drive / f"{src.parent.name}-{src.name}")
    assert invoke(server_env, "run", str(drive)).exit_code == 0
    settings = settings_of(server_env)
    lib = Library(settings.mongodb_uri, settings.mongodb_db)
    persons_before = {p["_id"] for p in lib.persons.find({})}
    assert len(persons_before) == 4
    named = sorted(persons_before)[0]
    assert invoke(server_env, "name", named, "Grandma").exit_code == 0
    faces = list(lib.faces.find({"person_id": named}, {"_id": 1, "quality": 1}))
    cover = min(faces, key=lambda f: f["quality"]["value"])["_id"]
    assert invoke(server_env, "cover", named, cover).exit_code == 0
    other = sorted(persons_before - {named})[0]
    rejected = lib.faces.find_one({"person_id": other})["_id"]
    assert invoke(server_env, "reject", rejected).exit_code == 0

    pack = offline_pack_files()
    assert pack
    alt = tmp_path / "alt-model"
    alt.mkdir()
    for f in pack:
        (alt / f.name).symlink_to(f)

    # One drive photo is gone by now: its original comes back from the bucket.
    gone = sorted(drive.iterdir())[0]
    gone.unlink()

    # Stage only: the library still runs on buffalo_s; a new photo is processed with it.
    staged = invoke(server_env, "reembed", "--model", str(alt), "--no-switch")
    assert staged.exit_code == 0, staged.output
    assert "staged 11 photos (0 without an original" in staged.output
    assert lib.library_model() == "buffalo_s"
    assert lib.faces.count_documents({"next.model": "alt-model"}) == lib.faces.count_documents({}) == 11
    shutil.copy(sources[-1], drive / "late.jpg")
    assert invoke(server_env, "run", str(drive)).exit_code == 0
    late = lib.images.find_one({"path": "late.jpg"})
    assert late["model"] == "buffalo_s" and "reembed" not in late
    # A run with nothing new reads only the ledger; one with a photo to process is refused.
    other = tmp_path / "other"
    other.mkdir()
    Image.open(sources[1]).save(other / "new.jpg", quality=80)
    wrong = invoke({**server_env, "FACEPIC_MODEL": str(alt)}, "run", str(other))
    assert wrong.exit_code == 1 and "built with face model buffalo_s" in wrong.output

    # The switch: the late photo is staged too, then everything moves to the new model.
    result = invoke(server_env, "reembed", "--model", str(alt))
    assert result.exit_code == 0, result.output
    assert "staged 1 photos" in result.output and "now uses alt-model" in result.output
    assert lib.library_model() == "alt-model"
    assert {f["model"] for f in lib.faces.find({}, {"model": 1})} == {"alt-model"}
    assert lib.faces.count_documents({"next": {"$exists": True}}) == 0
    assert "faces_next" not in lib.db.list_collection_names()
    grandma = lib.persons.find_one({"_id": named})
    assert grandma["name"] == "Grandma" and grandma["best_face_id"] == cover and grandma["model"] == "alt-model"
    assert lib.faces.find_one({"_id": rejected})["person_id"] != other
    assert {p["_id"] for p in lib.persons.find({"name": "Grandma"})} == {named}
    assert lib.faces.find_one({"image_id": late["_id"]})["person_id"] in persons_before

    # From now on the new model is the library's: it runs, the old one is refused.
    shutil.copy(sources[0], drive / "again.jpg")  # a copy of a photo: a duplicate, no work
    assert invoke({**server_env, "FACEPIC_MODEL": str(alt)}, "run", str(drive)).exit_code == 0
    more = tmp_path / "more"
    more.mkdir()
    Image.open(sources[4]).save(more / "x.jpg", quality=80)  # a photo to process (a copy would be a duplicate)
    refused = invoke(server_env, "run", str(more))
    assert refused.exit_code == 1 and "built with face model alt-model" in refused.output
    lib.close()


def test_cleanup_removes_staged_reembedding_data_too(server_env, tmp_path: Path) -> None:
    drive = tmp_path / "drive"
    drive.mkdir()
    for src in sorted(PHOTOS.glob("*/*.jpg"))[:3]:
        shutil.copy(src, drive / f"{src.parent.name}-{src.name}")
    assert invoke(server_env, "run", str(drive)).exit_code == 0
    alt = tmp_path / "alt-model"
    alt.mkdir()
    for f in offline_pack_files() or []:
        (alt / f.name).symlink_to(f)
    staged = invoke(server_env, "reembed", "--model", str(alt), "--no-switch")
    assert staged.exit_code == 0, staged.output
    settings = settings_of(server_env)
    lib = Library(settings.mongodb_uri, settings.mongodb_db)
    assert lib.faces.count_documents({"next": {"$exists": True}}) == 3
    dry = invoke(server_env, "cleanup", "--dry-run")
    assert "(and 3 faces staged for re-embedding)" in dry.output
    assert invoke(server_env, "cleanup", "--yes").exit_code == 0
    left = set(lib.db.list_collection_names())
    assert not left & {"images", "faces", "persons", "folders", "meta", "faces_next", "face_moves", "face_snapshots"}
