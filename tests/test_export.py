"""Acceptance: a real-looking phone and camera export (nested DCIM folders, every format,
photos without faces, a sideways photo, a RAW+JPEG pair, videos and sidecars, a backup copy),
through `facepic run` and through Celery on the real servers. Asserts the summary line, the
ledger, the documents and the persons exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from facepic.context import Context
from facepic.db import Library
from facepic.embedded import embedded_database
from tests import export
from tests.conftest import invoke, ledger_lines, settings_of
from tests.test_pipeline_e2e import library_of


def check(ex: export.Export, root: Path, lib: Library, lines: list[dict[str, Any]]) -> None:
    final = {x["path"]: x for x in lines}
    assert {path for path, x in final.items() if x["status"] == "done"} == set(ex.photos)
    assert {path for path, x in final.items() if x["status"] == "duplicate"} == set(ex.duplicates)
    assert {path: x["category"] for path, x in final.items() if x["status"] == "skipped"} == {
        **ex.skipped,
        **{raw: "RAW+JPEG pair" for raw in ex.pairs},
    }
    assert not [x for x in lines if x["status"] == "failed"]
    for path, identity in ex.photos.items():
        assert final[path]["faces"] == (1 if identity else 0), path
    for raw, jpeg in ex.pairs.items():
        assert final[jpeg]["companions"] == [raw]

    images = {doc["path"]: doc for doc in lib.images.find({})}
    assert set(images) == set(ex.photos)  # a pair is one image, a duplicate none
    for raw, jpeg in ex.pairs.items():
        assert images[jpeg]["companions"] == [raw]
    sideways = images["DCIM/100APPLE/IMG_0005.JPG"]
    # Stored 480x640 on its side; upright (EXIF orientation 6 applied) it is the 640x480 photo.
    assert (sideways["width"], sideways["height"]) == (640, 480) and sideways["orientation"] == 6
    assert images["Camera/2024-07-04/DSC_0002.DNG"]["format"] == "DNG"
    assert images["Camera/2024-07-04/DSC_0002.DNG"]["camera"] == "Canon EOS 5D"
    assert {images[path]["format"] for path in ex.photos} == {
        "JPEG",
        "HEIF",
        "PNG",
        "AVIF",
        "WEBP",
        "DNG",
        "TIFF",
        "BMP",
        "GIF",
    }
    faces = list(lib.faces.find({}, {"embedding": 0}))
    assert len(faces) == sum(1 for identity in ex.photos.values() if identity)
    person_of = {next(p for p, doc in images.items() if doc["_id"] == f["image_id"]): f["person_id"] for f in faces}
    groups = {identity: {person_of[path] for path in paths} for identity, paths in export.identities(ex).items()}
    assert all(len(persons) == 1 and None not in persons for persons in groups.values()), groups
    assert len({next(iter(p)) for p in groups.values()}) == len(groups)  # one person per identity
    assert lib.persons.count_documents({}) == len(groups)
    # The sideways face's box lies within the upright photo.
    (box,) = [f["box"] for f in faces if f["image_id"] == sideways["_id"]]
    assert 0 <= box[0] < box[2] <= 640 and 0 <= box[1] < box[3] <= 480


def test_a_real_looking_export_through_run(offline_env, tmp_path: Path) -> None:
    root = tmp_path / "export"
    ex = export.build(root)
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("photos ")] == [ex.summary()]
    assert not [line for line in result.output.splitlines() if line.startswith(("error", "skipped:"))]
    settings = settings_of(offline_env)
    with embedded_database(settings) as running, Context(running) as ctx:
        check(ex, root, ctx.library, ledger_lines(running))
    status = invoke(offline_env, "status").output.splitlines()[0]
    faces = sum(1 for identity in ex.photos.values() if identity)
    assert status == (
        f"photos {len(ex.photos) + len(ex.duplicates)}: done {len(ex.photos)} (faces {faces}, no face "
        f"{len(ex.photos) - faces}), duplicates {len(ex.duplicates)}, pending 0, failed 0; "
        + ex.summary().split("; ", 1)[1]
    )
    again = invoke(offline_env, "run", str(root))
    assert again.exit_code == 0
    assert (
        f"done 0 (faces 0, no face 0), already done {len(ex.photos) + len(ex.duplicates)}, duplicates 0" in again.output
    )


@pytest.mark.servers
def test_a_real_looking_export_through_the_workers(server_env, workers, tmp_path: Path) -> None:
    root = tmp_path / "export"
    ex = export.build(root)
    result = invoke(server_env, "enqueue", "--wait", str(root))
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("photos ")] == [ex.summary()]
    check(ex, root, library_of(server_env), ledger_lines(settings_of(server_env)))
