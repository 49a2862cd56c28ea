"""The index stage over batches decides exactly what it decides photo after photo: the same
persons, candidates, covers, sequence numbers, photos and ledger lines, whatever the batch
sizes; a photo twice in one batch (a replayed task) and a failed photo included. Real photos,
the real MongoDB wire server."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from facepic.context import Context
from facepic.pipeline.job import Job
from facepic.pipeline.policy import execute, run_stage
from facepic.pipeline.stages import BY_NAME
from facepic.planner import Planner
from facepic.runner import run_serial_batch
from facepic.settings import Settings
from tests.conftest import copy_photos, ledger_lines

INDEX_AND_LOG = (BY_NAME["index"], BY_NAME["log"])
VOLATILE = ("created_at", "updated_at", "time", "timings")


def settings_at(data: Path, mongo_server: str, db: str, model_root: Path) -> Settings:
    return Settings.load(
        env={
            "FACEPIC_DATA_DIR": str(data),
            "FACEPIC_MONGODB_URI": mongo_server,
            "FACEPIC_MONGODB_DB": db,
            "FACEPIC_S3_ENDPOINT": "",
            "FACEPIC_S3_ACCESS_KEY_ID": "",
            "FACEPIC_S3_SECRET_ACCESS_KEY": "",
            "FACEPIC_MODEL": "buffalo_s",
            "FACEPIC_MODEL_ROOT": str(model_root),
        },
        env_file=None,
    )


def library(ctx: Context) -> dict[str, Any]:
    def docs(coll: Any) -> dict[str, Any]:
        return {d["_id"]: {k: v for k, v in d.items() if k not in VOLATILE} for d in coll.find({})}

    lib = ctx.library
    lines = [{k: v for k, v in x.items() if k not in VOLATILE} for x in ledger_lines(ctx.settings)]
    return {"images": docs(lib.images), "faces": docs(lib.faces), "persons": docs(lib.persons), "ledger": lines}


def test_batches_decide_what_one_photo_after_another_decides(mongo_server, model_root, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    copy_photos(photos)  # 21 labelled photos of 7 people, and a couple
    prepared = settings_at(tmp_path / "prepared", mongo_server, "batches_prepared", model_root)
    ctx = Context(prepared)
    jobs: list[Job] = []
    for job in Planner(ctx.ledger, "buffalo_s", upload=False).new_jobs(photos):
        for stage in ("detect", "thumbnails", "upload"):
            job = run_stage(ctx, BY_NAME[stage], job)
        jobs.append(job)
    assert sum(j["faces"] for j in jobs) >= 23
    # A replayed photo (right after itself: in one batch, or split between two) and a photo
    # that failed in an earlier stage.
    jobs.insert(5, jobs[4])
    jobs.insert(9, {**jobs[8], "image_id": "f" * 32, "sha256": "e" * 64, "error": "broken", "failed_stage": "detect"})
    rng = random.Random(7)
    results = {}
    for n, (name, size) in enumerate((("one by one", 0), ("random batches", -1), ("one batch", len(jobs)))):
        told: list[str | None] = []
        settings = settings_at(tmp_path / f"path{n}", mongo_server, f"batches_{n}", model_root)
        shutil.copytree(prepared.folder.root, settings.folder.root)
        with Context(settings) as run:
            run.library.ensure_indexes()
            if not size:
                for job in jobs:
                    for stage in ("index", "log"):
                        outcome = execute(run, BY_NAME[stage], job)
                        assert outcome.job is not None
                        job = outcome.job
            else:
                start = 0
                while start < len(jobs):
                    step = size if size > 0 else rng.randint(2, 6)
                    batch = jobs[start : start + step]
                    done = run_serial_batch(run, batch, INDEX_AND_LOG, set())
                    assert [j["image_id"] for j in done] == [j["image_id"] for j in batch]
                    told += [p for j in done for p in j.get("persons", [])]
                    start += step
                # Each face stored is told once, with its person (or the first it hesitated
                # between), which `facepic run` counts to settle as it goes.
                faces = run.library.faces.find({}, {"person_id": 1, "candidates": 1})
                assert Counter(told) == Counter(f["person_id"] or (f.get("candidates") or [None])[0] for f in faces)
            results[name] = library(run)
            assert not list(settings.folder.work.glob("*.work"))  # every work file served
    reference = results["one by one"]
    persons = {f["person_id"] for f in reference["faces"].values()}
    assert len(persons) >= 7 and len(reference["images"]) == 22
    assert [x["status"] for x in reference["ledger"]].count("failed") == 1
    assert sum(x["status"] in ("done", "failed") for x in reference["ledger"]) == 23  # the replay once
    assert all(f["seq"] for f in reference["faces"].values())
    for name in ("random batches", "one batch"):
        for part in ("faces", "persons", "images", "ledger"):
            assert results[name][part] == reference[part], (name, part)


def test_a_photo_that_breaks_its_batch_fails_alone(mongo_server, model_root, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    copy_photos(photos, group=False)
    settings = settings_at(tmp_path / "data", mongo_server, "batches_broken", model_root)
    with Context(settings) as ctx:
        ctx.library.ensure_indexes()
        jobs = []
        for job in list(Planner(ctx.ledger, "buffalo_s", upload=False).new_jobs(photos))[:6]:
            for stage in ("detect", "thumbnails", "upload"):
                job = run_stage(ctx, BY_NAME[stage], job)
            jobs.append(job)
        ctx.folder.work_file(jobs[2]["image_id"]).write_bytes(b"not a work file")
        done = run_serial_batch(ctx, jobs, INDEX_AND_LOG, set())
        assert [bool(j.get("error")) for j in done] == [False, False, True, False, False, False]
        assert done[2]["failed_stage"] == "index"
        assert done[2]["error"].startswith(f"its work file {jobs[2]['image_id']}.work cannot be read")
        stored = {f["image_id"] for f in ctx.library.faces.find({}, {"image_id": 1})}
        assert stored == {j["image_id"] for j in jobs} - {jobs[2]["image_id"]}
        finals = {x["path"]: x["status"] for x in ledger_lines(settings) if x["status"] != "queued"}
        assert sorted(finals.values()) == ["done"] * 5 + ["failed"]


def test_a_face_left_without_a_person_is_counted_with_the_first_it_hesitated_between() -> None:
    from facepic.pipeline.index import _nearest

    assert _nearest({"person_id": "pa", "candidates": ["pb", "pc"]}) == "pa"
    assert _nearest({"person_id": None, "candidates": ["pb", "pc"]}) == "pb"
    assert _nearest({"person_id": None}) is None


def test_run_indexes_in_large_batches_then_small_ones_beside_the_pools_last_photos(
    offline_env, tmp_path: Path, monkeypatch
) -> None:
    """`facepic run` serves the index stage BATCH photos at a time while photos remain to give
    the pool (fewer, larger batches: fewer commands to the library), then TAIL at a time, so
    that the end of the run does not index a large batch alone after the pool's last photo."""
    import facepic.runner as runner
    from tests.conftest import invoke

    monkeypatch.setattr(runner, "BATCH", 8)
    monkeypatch.setattr(runner, "TAIL", 2)
    served: list[tuple[int, bool, bool]] = []  # (photos, the source done, the pool busy)
    real_ready = runner._InOrder.ready

    def ready(self: runner._InOrder) -> list[Job]:
        batch = real_ready(self)
        if batch:
            served.append((len(batch), self.source is None, bool(self.running)))
        return batch

    monkeypatch.setattr(runner._InOrder, "ready", ready)
    root = tmp_path / "drive"
    total = len(copy_photos(root, group=False))
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 0, result.output
    assert sum(n for n, _, _ in served) == total
    for n, source_done, busy in served:
        assert n >= (2 if source_done else 8) or not busy, served
    assert len([s for s in served if not s[1]]) <= total // 8, served


def test_run_gives_the_pool_small_photos_a_few_at_a_time_and_a_camera_photo_alone(
    offline_env, tmp_path: Path, monkeypatch
) -> None:
    """Each task sent to the pool costs the main process about the same whatever its photo's
    size: small photos (a web export's) go CHUNK at a time, a camera-sized one alone; every
    photo is analysed once, and done."""
    import numpy as np
    from PIL import Image

    import facepic.runner as runner
    from tests.conftest import invoke

    tasks: list[list[str]] = []
    real_submit = runner._InOrder.submit

    def submit(self: runner._InOrder, task: list[int]) -> bool:
        tasks.append([self.jobs[i]["path"] for i in task])
        return real_submit(self, task)

    monkeypatch.setattr(runner._InOrder, "submit", submit)
    root = tmp_path / "drive"
    labels = copy_photos(root, group=False)
    # A camera-sized photo: a test photo enlarged, with grain so that it stays over SMALL_PHOTO.
    big = Image.open(root / sorted(labels)[5]).convert("RGB").resize((3000, 3000))
    grain = np.random.default_rng(1).integers(0, 24, (3000, 3000, 3), dtype=np.uint8)
    Image.fromarray(np.asarray(big) // 2 + grain).save(root / "zz-camera.jpg", quality=95)
    assert (root / "zz-camera.jpg").stat().st_size > runner.SMALL_PHOTO
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 0, result.output
    assert f"done {len(labels) + 1} " in result.output and "failed 0" in result.output, result.output
    sent = [path for task in tasks for path in task]
    assert sorted(sent) == sorted([*labels, "zz-camera.jpg"])  # each photo once
    assert ["zz-camera.jpg"] in tasks
    assert all(1 <= len(task) <= runner.CHUNK for task in tasks)
    assert max(len(task) for task in tasks) == runner.CHUNK


class _Executor:
    """A pool's executor that finishes each task at once, or fails as a broken pool would."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool

    def submit(self, fn: Any, jobs: list[Job], stages: tuple[str, ...]) -> Any:
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        names = [job["path"] for job in jobs]
        if self.pool.broken_at == names:  # a process died before the pool noticed
            self.pool.broken_at = None
            raise BrokenProcessPool("found broken at submit")
        future: Future = Future()
        if self.pool.crashes in names:  # the photo kills its process, each time
            future.set_exception(BrokenProcessPool("a process died"))
        else:
            future.set_result([{**job, "analysed": True} for job in jobs])
        return future


class _Pool:
    processes = 2

    def __init__(self, broken_at: list[str] | None = None, crashes: str | None = None) -> None:
        self.broken_at, self.crashes = broken_at, crashes
        self.executor = _Executor(self)
        self.restarts = 0

    def restart(self) -> None:
        self.restarts += 1
        self.executor = _Executor(self)


def _serve(pool: _Pool, count: int, sizes: dict[int, int] | None = None) -> list[Job]:
    """`runner.process`'s loop over ``count`` photos with ``pool``: the photos served, in order."""
    import facepic.runner as runner

    jobs = ({"path": f"p{i}", "file": f"p{i}", "size": (sizes or {}).get(i, 10_000)} for i in range(count))
    in_order = runner._InOrder(pool, jobs, ("detect",))  # type: ignore[arg-type]
    served: list[Job] = []
    for _ in range(10_000):
        if in_order.finished:
            return served
        if not in_order.submit_more():
            continue
        in_order.collect()
        served += in_order.ready()
    raise AssertionError(f"the run never finished: {len(served)} of {count} served")


@pytest.mark.parametrize(
    ("count", "broken_at"),
    [(6, ["p4", "p5"]), (10, ["p8", "p9"]), (3, ["p0", "p1", "p2"]), (9, ["p0", "p1", "p2", "p3"])],
)
def test_a_pool_found_broken_as_a_task_is_submitted_loses_none_of_its_photos(count: int, broken_at: list[str]) -> None:
    """A pool process that died before the pool noticed breaks the next submit; the task it
    carried (even the one in which the scan ran out of photos) is submitted again to a fresh
    pool, and every photo is served once, in order."""
    pool = _Pool(broken_at=broken_at)
    served = _serve(pool, count)
    assert [job["path"] for job in served] == [f"p{i}" for i in range(count)]
    assert all(job.get("analysed") for job in served) and pool.restarts == 1


def test_a_photo_that_kills_its_process_fails_alone_and_its_task_s_others_are_done() -> None:
    from facepic.runner import PROCESS_DIED

    pool = _Pool(crashes="p5")
    served = _serve(pool, 9, sizes={7: 5_000_000})  # p7 a camera photo: a task of its own
    assert [job["path"] for job in served] == [f"p{i}" for i in range(9)]
    assert [job["path"] for job in served if job.get("error")] == ["p5"]
    assert served[5]["error"] == PROCESS_DIED
    assert all(job.get("analysed") for job in served if job["path"] != "p5")


def test_the_runs_last_settle_uses_every_core_for_its_products_and_one_after(
    offline_env, tmp_path: Path, monkeypatch
) -> None:
    """Beside the pool the run's own process keeps BLAS at one thread (its extra threads spin
    after each product); the last settle comes once the pool is gone, and may use BLAS's own
    number again (the cores this process may use: not more, in a container given fewer)."""
    import os

    from threadpoolctl import threadpool_info

    from facepic.runtime import blas_threads_unlimited
    from facepic.settle import AsTheRunGoes
    from tests.conftest import invoke

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen: list[set[int]] = []
    real_settle = AsTheRunGoes.settle

    def settle(self: AsTheRunGoes) -> Any:
        seen.append(blas_threads())
        return real_settle(self)

    monkeypatch.setattr(AsTheRunGoes, "settle", settle)
    root = tmp_path / "drive"
    copy_photos(root, group=False)
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 0, result.output
    assert seen[-1] == {blas_threads_unlimited()}, seen
    assert blas_threads_unlimited() <= len(os.sched_getaffinity(0))
    if len(os.sched_getaffinity(0)) > 1 and not {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"} & set(os.environ):
        assert blas_threads_unlimited() > 1
    assert blas_threads() == {1}
