"""A photo that changes while or after it is scanned: the bytes decoded are the bytes hashed,
and a new version of a file replaces its old one, so one file is never stored twice."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from facepic.decode import CHANGED
from tests.conftest import PHOTOS, invoke, ledger_lines, settings_of
from tests.test_faults import distinct_photos, no_traceback, run_cli


def _library(env: dict[str, str]) -> dict[str, Any]:
    """Images, faces and persons of the embedded database, read after the run."""
    from facepic.context import Context
    from facepic.embedded import embedded_database

    with embedded_database(settings_of(env)) as running, Context(running) as ctx:
        lib = ctx.library
        return {
            "images": list(lib.images.find({}, {"path": 1, "sha256": 1})),
            "faces": list(lib.faces.find({}, {"image_id": 1, "person_id": 1})),
            "persons": list(lib.persons.find({}, {"face_count": 1, "user_locked": 1})),
        }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_photo_written_after_its_scan_fails_alone_and_the_next_run_stores_it_once(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, faults = tmp_path / "drive", tmp_path / "faults"
    names = distinct_photos(root, 3)
    faults.mkdir()
    # Half a JPEG when the scan hashes it; the rest is written before the pool reads it.
    whole = (PHOTOS / "tom_hanks" / "07.jpg").read_bytes()
    (root / "late.jpg").write_bytes(whole[: len(whole) // 2])
    (faults / "late.jpg.full").write_bytes(whole)

    first = run_cli(offline_env, "run", str(root), faults=faults)
    output = first.stdout + first.stderr
    assert first.returncode == 1, output
    no_traceback(output)
    assert [line for line in output.splitlines() if line.startswith("error:")] == [
        f"error: cannot process {root / 'late.jpg'}: {CHANGED}"
    ]
    assert "photos 4: done 3 (faces 3, no face 0), already done 0, duplicates 0, failed 1" in first.stdout
    assert not any(doc["path"] == "late.jpg" for doc in _library(offline_env)["images"])

    again = run_cli(offline_env, "run", str(root), faults=faults)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "photos 4: done 1 (faces 1, no face 0), already done 3, duplicates 0, failed 0" in again.stdout
    stored = [doc for doc in _library(offline_env)["images"] if doc["path"] == "late.jpg"]
    assert [doc["sha256"] for doc in stored] == [hashlib.sha256(whole).hexdigest()]
    final = {x["path"]: x for x in ledger_lines(settings_of(offline_env))}
    assert final["late.jpg"]["status"] == "done" and final["late.jpg"]["sha256"] == stored[0]["sha256"]
    assert len(_library(offline_env)["images"]) == len(names) + 1


def test_a_photo_overwritten_with_another_replaces_its_old_version(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "drive"
    root.mkdir()
    for n in ("07", "08", "09"):
        shutil.copy(PHOTOS / "tom_hanks" / f"{n}.jpg", root / f"tom-{n}.jpg")
    photo = root / "p.jpg"
    shutil.copy(PHOTOS / "jessica_alba" / "00.jpg", photo)
    first = invoke(offline_env, "run", str(root))
    assert first.exit_code == 0, first.output
    before = _library(offline_env)
    (old,) = [doc for doc in before["images"] if doc["path"] == "p.jpg"]
    old_faces = [f for f in before["faces"] if f["image_id"] == old["_id"]]
    assert old_faces

    Image.open(PHOTOS / "keanu_reeves" / "00.jpg").save(photo, "JPEG", quality=91)
    second = invoke(offline_env, "run", str(root))
    assert second.exit_code == 0, second.output
    assert (
        f"note: {photo} changed since it was imported: its old version ({len(old_faces)} face"
        f"{'s' if len(old_faces) != 1 else ''}) was replaced" in second.output
    )
    assert "photos 4: done 1 (faces 1, no face 0), changed 1, already done 3, duplicates 0, failed 0" in second.output
    after = _library(offline_env)
    stored = [doc for doc in after["images"] if doc["path"] == "p.jpg"]
    assert [doc["sha256"] for doc in stored] == [_sha(photo)]
    assert not [f for f in after["faces"] if f["image_id"] == old["_id"]]
    counts: dict[str, int] = {}
    for face in after["faces"]:
        if face.get("person_id"):
            counts[face["person_id"]] = counts.get(face["person_id"], 0) + 1
    for person in after["persons"]:  # recounted; none left empty that the user did not make
        assert person["face_count"] == counts.get(person["_id"], 0), person
        assert person["face_count"] or person.get("user_locked"), person
    assert not settings_of(offline_env).folder.thumbnail(old["_id"]).exists()
    assert not any(settings_of(offline_env).folder.face_crop(f["_id"]).exists() for f in old_faces)

    status = invoke(offline_env, "status")
    assert "photos 4: done 4 (faces 4, no face 0), changed 1, duplicates 0, pending 0, failed 0" in status.output

    # Nothing changed since: a rerun does nothing, and stores nothing twice.
    lines = len(ledger_lines(settings_of(offline_env)))
    third = invoke(offline_env, "run", str(root))
    assert third.exit_code == 0, third.output
    assert "photos 4: done 0 (faces 0, no face 0), already done 4, duplicates 0, failed 0" in third.output
    assert "note:" not in third.output
    assert len(ledger_lines(settings_of(offline_env))) == lines
    assert sorted(d["path"] for d in _library(offline_env)["images"]) == sorted(d["path"] for d in after["images"])


def test_a_photo_overwritten_with_a_copy_of_another_is_a_duplicate_and_its_old_version_goes(  # type: ignore[no-untyped-def]
    offline_env, tmp_path
) -> None:
    """A file at a new path with the content of a photo done stays a duplicate (content is
    stored once); the file's old version still leaves the library."""
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(PHOTOS / "tom_hanks" / "07.jpg", root / "tom.jpg")
    photo = root / "p.jpg"
    shutil.copy(PHOTOS / "jessica_alba" / "00.jpg", photo)
    assert invoke(offline_env, "run", str(root)).exit_code == 0
    (old,) = [doc for doc in _library(offline_env)["images"] if doc["path"] == "p.jpg"]

    shutil.copy(root / "tom.jpg", photo)
    second = invoke(offline_env, "run", str(root))
    assert second.exit_code == 0, second.output
    assert f"note: {photo} changed since it was imported: its old version (1 face) was replaced" in second.output
    assert "photos 2: done 0 (faces 0, no face 0), already done 1, duplicates 1, failed 0" in second.output
    after = _library(offline_env)
    assert [doc["path"] for doc in after["images"]] == ["tom.jpg"]
    assert not [f for f in after["faces"] if f["image_id"] == old["_id"]]
    assert all(p["face_count"] or p.get("user_locked") for p in after["persons"])
