"""The whole chain on real Redis, MongoDB wire server, S3 server and Celery workers; and the
same photos through the embedded `facepic run`, which must give the same library."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from facepic.context import Context
from facepic.db import Library, embedding_from_bson
from facepic.storage import open_store
from tests.conftest import copy_photos, invoke, ledger_lines, settings_of, wait_for_ledger, wait_until


def library_of(env: dict[str, str]) -> Library:
    settings = settings_of(env)
    return Library(settings.mongodb_uri, settings.mongodb_db)


def check_library(lib: Library, lines: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, Any]:
    """Assert what every finished run must satisfy; return a summary to compare runs by."""
    done = {line["path"]: line for line in lines if line["status"] == "done"}
    expected_paths = set(labels) | {"couple.jpg"}
    assert set(done) == expected_paths
    assert not [line for line in lines if line["status"] == "failed"]

    images = {doc["path"]: doc for doc in lib.images.find({})}
    assert set(images) == expected_paths
    for path, doc in images.items():
        assert doc["_id"] == done[path]["image_id"]
        assert doc["sha256"] == done[path]["sha256"]
        assert doc["width"] > 0 and doc["height"] > 0

    faces = list(lib.faces.find({}))
    for face in faces:
        vector = embedding_from_bson(face["embedding"])
        assert vector.shape == (512,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
        assert face["model"] == "buffalo_s"
        assert face["person_id"] is not None
        assert len(face["landmarks"]) == 5

    # The couple photo: two faces, two different persons.
    couple = [f for f in faces if f["image_id"] == images["couple.jpg"]["_id"]]
    assert len(couple) == 2
    assert couple[0]["person_id"] != couple[1]["person_id"]

    # Labelled photos: one face each; identity <-> person is one to one.
    person_of_path = {}
    for path in labels:
        mine = [f for f in faces if f["image_id"] == images[path]["_id"]]
        assert len(mine) == 1, path
        person_of_path[path] = mine[0]["person_id"]
        assert images[path]["faces"][0]["person_id"] == mine[0]["person_id"]
    persons_by_identity = defaultdict(set)
    for path, identity in labels.items():
        persons_by_identity[identity].add(person_of_path[path])
    for identity, persons in persons_by_identity.items():
        assert len(persons) == 1, f"{identity} split into {len(persons)} persons"
    assert len({next(iter(p)) for p in persons_by_identity.values()}) == len(persons_by_identity)

    persons = list(lib.persons.find({}))
    assert lib.persons.count_documents({}) == len({f["person_id"] for f in faces})
    for person in persons:
        count = sum(1 for f in faces if f["person_id"] == person["_id"])
        assert person["face_count"] == count
        best = max((f for f in faces if f["person_id"] == person["_id"]), key=lambda f: f["quality"]["value"])
        assert person["best_face_id"] == best["_id"]  # the cover: the best quality value
        assert person["best_score"] == best["quality"]["value"]
    for face in faces:
        q = face["quality"]
        assert q["size"] >= 40 and q["sharpness"] > 50 and 0 <= q["frontal"] <= 1 and 0 < q["value"] <= 1
        assert face["can_found"] is True
    return {
        "images": sorted(images),
        "groups": sorted(
            sorted(p for p, pid in person_of_path.items() if pid == person) for person in set(person_of_path.values())
        ),
        "persons": len(persons),
        "faces": len(faces),
    }


def expected_keys(lib: Library) -> set[str]:
    keys = set()
    for doc in lib.images.find({}):
        keys |= {f"{doc['_id']}.{doc['ext']}", f"thumb_{doc['_id']}.jpg"}
    keys |= {f"faces/person_{p['_id']}.jpg" for p in lib.persons.find({})}
    return keys


def test_enqueue_with_workers_builds_the_library(server_env, workers, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    labels = copy_photos(photos)
    result = invoke(server_env, "enqueue", str(photos))
    assert result.exit_code == 0, result.output
    assert (
        f"photos {len(labels) + 1}: already done 0, duplicates 0, queued {len(labels) + 1}, failed 0" in result.output
    )

    settings = settings_of(server_env)
    lines = wait_for_ledger(settings, len(labels) + 1)
    lib = library_of(server_env)
    check_library(lib, lines, labels)

    store = open_store(settings)
    assert set(store.list_keys()) == expected_keys(lib)
    for doc in lib.images.find({}):
        assert doc["uploaded"] is True
        assert doc["keys"] == {"original": f"{doc['_id']}.jpg", "thumbnail": f"thumb_{doc['_id']}.jpg"}
    assert (settings.folder.thumbnails / f"thumb_{lib.images.find_one({})['_id']}.jpg").exists()
    assert not list(settings.folder.work.glob("*.work"))

    again = invoke(server_env, "enqueue", str(photos))
    assert again.exit_code == 0, again.output
    assert (
        f"photos {len(labels) + 1}: done 0 (faces 0, no face 0), already done {len(labels) + 1}, duplicates 0, "
        "failed 0" in again.output
    )

    # The index worker settles the new faces once its queue has drained, and the persons hold.
    newest = max(f["seq"] for f in lib.faces.find({}, {"seq": 1}))
    wait_until(lambda: lib.settle_mark().get("seq", 0) >= newest, "the index worker to settle", 60)
    check_library(lib, ledger_lines(settings), labels)

    status = invoke(server_env, "status")
    assert (
        f"photos {len(labels) + 1}: done {len(labels) + 1} (faces {len(labels) + 2}, no face 0), duplicates 0, "
        "pending 0, failed 0, not uploaded 0" in status.output
    )


def test_embedded_run_gives_the_same_library_as_the_workers(
    finished_library, server_env, workers, tmp_path: Path
) -> None:
    photos = tmp_path / "drive"
    labels = copy_photos(photos)

    run = finished_library()  # `facepic run` of the same photos, in a folder of its own
    assert run.labels == labels
    assert f"photos {len(labels) + 1}: done {len(labels) + 1} (faces {len(labels) + 2}, no face 0)" in run.output
    embedded = settings_of(run.copy(tmp_path / "embedded"))
    from facepic.embedded import embedded_database

    with embedded_database(embedded) as running, Context(running) as ctx:
        local = check_library(ctx.library, ledger_lines(running), labels)
        # No bucket: originals stay where they are, nothing is copied into the data folder.
        assert not running.folder.objects.exists()
        assert ctx.library.images.count_documents({"uploaded": False, "keys": None}) == len(labels) + 1
        assert all((run.photos / doc["path"]).is_file() for doc in ctx.library.images.find({}))

    assert invoke(server_env, "enqueue", str(photos)).exit_code == 0
    distributed = check_library(
        library_of(server_env), wait_for_ledger(settings_of(server_env), len(labels) + 1), labels
    )
    assert local == distributed


def test_disable_upload_then_upload_only(server_env, workers, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    labels = copy_photos(photos, group=False)
    result = invoke(server_env, "enqueue", "--disable-upload", str(photos))
    assert result.exit_code == 0, result.output
    settings = settings_of(server_env)
    lines = wait_for_ledger(settings, len(labels))
    assert all(line["uploaded"] is False for line in lines if line["status"] == "done")
    store = open_store(settings)
    store.ensure_bucket()
    assert list(store.list_keys()) == []
    lib = library_of(server_env)
    assert lib.images.count_documents({"uploaded": False, "keys": None}) == len(labels)
    assert f"not uploaded {len(labels)}" in invoke(server_env, "status").output

    result = invoke(server_env, "enqueue", "--upload-only")
    assert result.exit_code == 0, result.output
    assert f"photos {len(labels)}: already done 0, duplicates 0, queued {len(labels)}" in result.output

    def uploaded_lines() -> int:
        return sum(1 for line in ledger_lines(settings) if line["status"] == "done" and line["uploaded"])

    wait_until(lambda: uploaded_lines() == len(labels), "upload-only to finish")
    assert lib.images.count_documents({"uploaded": True}) == len(labels)
    assert set(store.list_keys()) == expected_keys(lib)
    assert "not uploaded 0" in invoke(server_env, "status").output
