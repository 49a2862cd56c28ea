"""A photo that changes while or after it is scanned: the bytes decoded are the bytes hashed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from facepic.decode import CHANGED
from tests.conftest import PHOTOS, ledger_lines, settings_of
from tests.test_faults import distinct_photos, no_traceback, run_cli


def _library(env: dict[str, str]) -> dict[str, Any]:
    """Images, faces and persons of the embedded database, read after the run."""
    from facepic.embedded import embedded_database
    from facepic.pipeline import Context

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
