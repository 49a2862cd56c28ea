"""The CPU stages across processes: a thumbnails task that lands in another worker process
uses the pixels detect left in the work folder, and nothing of them is left behind."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from facepic.context import Context
from facepic.pipeline.job import received
from facepic.pipeline.policy import run_stage
from facepic.pipeline.stages import BY_NAME
from facepic.settings import Settings
from tests.conftest import PHOTOS


def setup(tmp_path: Path, model_root: Path, image_id: str) -> tuple[Settings, Path, dict]:
    settings = Settings.load(
        env={
            "FACEPIC_DATA_DIR": str(tmp_path / "data"),
            "FACEPIC_MODEL": "buffalo_s",
            "FACEPIC_MODEL_ROOT": str(model_root),
        },
        env_file=None,
    )
    photo = tmp_path / "photo.jpg"
    shutil.copy(sorted(PHOTOS.glob("*/*.jpg"))[0], photo)
    job = {
        "image_id": image_id,
        "sha256": hashlib.sha256(photo.read_bytes()).hexdigest(),  # detect checks it
        "file": str(photo),
        "root": str(tmp_path),
        "path": "photo.jpg",
        "model": "buffalo_s",
        "upload": False,
    }
    return settings, photo, job


def test_thumbnails_in_another_process_reuse_the_decoded_pixels(tmp_path: Path, model_root: Path) -> None:
    settings, photo, job = setup(tmp_path, model_root, "img1")
    detector, other = Context(settings), Context(settings)  # two worker processes' contexts
    job = run_stage(detector, BY_NAME["detect"], job)
    assert not job.get("error") and job["faces"] == 1
    pixels = detector.folder.pixels_file("img1")
    assert pixels.exists()
    photo.unlink()  # the thumbnails stage can no longer decode the photo: it must not need to
    job = run_stage(other, BY_NAME["thumbnails"], job)
    assert not job.get("error"), job.get("error")
    assert other.folder.thumbnail("img1").stat().st_size > 1000
    assert other.folder.face_crop("img1-f0").stat().st_size > 1000
    assert not pixels.exists()  # served and removed; the work file stays for index
    assert detector.folder.work_file("img1").exists()


def test_the_embedded_runner_keeps_no_pixels_and_no_work_file_on_disk(tmp_path: Path, model_root: Path) -> None:
    """`facepic run`'s pool hands the faces to its main process in the job: no file is written,
    and the job carries what the work file would (the index stage reads either the same way)."""
    import pickle

    import numpy as np

    from facepic.pipeline import workfile

    settings, _, job = setup(tmp_path, model_root, "img2")
    ctx = Context(settings, stages_together=True)  # as the runner's pool processes make it
    job = run_stage(ctx, BY_NAME["detect"], job)
    assert not ctx.folder.pixels_file("img2").exists()
    assert not ctx.folder.work_file("img2").exists()
    job = run_stage(ctx, BY_NAME["thumbnails"], job)
    assert not job.get("error") and ctx.folder.thumbnail("img2").exists()
    job = pickle.loads(pickle.dumps(job))  # back to the run's process
    carried = workfile.held(ctx.folder, job)
    assert carried is not None and len(carried["scores"]) == job["faces"] == 1

    # The same photo through a Celery-like chain: the work file holds the same faces.
    apart = Context(settings)
    filed = run_stage(apart, BY_NAME["detect"], {k: v for k, v in job.items() if k not in ("work", "faces", "ext")})
    assert "work" not in filed
    read = workfile.load(apart.folder, "img2")
    assert read is not None and read["info"] == carried["info"]
    for name in ("boxes", "landmarks", "scores", "embeddings", "quality"):
        assert np.array_equal(read[name], carried[name]), name


def test_a_job_sent_by_an_older_version_is_read_with_its_path() -> None:
    """Jobs in flight in Redis across an upgrade carry the photo's path as ``rel``."""
    old = {"image_id": "img3", "root": "/photos", "rel": "a/b.jpg", "file": "/photos/a/b.jpg"}
    assert received(old) == {"image_id": "img3", "root": "/photos", "path": "a/b.jpg", "file": "/photos/a/b.jpg"}
    now = {"image_id": "img3", "root": "/photos", "path": "a/b.jpg"}
    assert received(now) is now
