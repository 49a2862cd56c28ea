"""The one table of stages (facepic/pipeline/stages.py): what `facepic run` and the Celery layer
derive from it, the rules it keeps, and a stage added to it alone, which runs in both.

The new stages run from a copy of facepic/ and workers/ in which the table has two more lines
(one pool stage, one serial stage on the index queue) and their module: `facepic run`, its pool
processes and real Celery workers all import that copy, nothing else is changed.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facepic.pipeline.policy import retry_in
from facepic.pipeline.stages import BY_NAME, POOL, SERIAL, STAGES, Where, in_order, stages_for
from facepic.settings import Settings
from facepic.storage import StorageUnavailable
from tests.conftest import PHOTOS, REPO, ledger_lines, settings_of, wait_until
from tests.servers import spawn_worker, start_workers, stop_workers
from workers.routing import CHAINED, DRAINED, INDEX_QUEUE, QUEUES, ROUTES, STAGE_TASKS


def names(stages: tuple) -> list[str]:
    return [stage.name for stage in stages]


def test_the_runner_and_celery_take_their_stages_from_the_table() -> None:
    assert names(STAGES) == ["detect", "thumbnails", "upload", "index", "log"]
    assert names(POOL) == ["detect", "thumbnails"] and names(SERIAL) == ["upload", "index", "log"]
    assert names(stages_for(upload_only=True)) == ["upload", "index", "log"]
    assert names(CHAINED) == ["detect", "thumbnails", "upload"] and names(DRAINED) == ["index", "log"]
    for stage in CHAINED:
        assert ROUTES[STAGE_TASKS[stage.name]] == {"queue": stage.queue} and stage.queue in QUEUES
    assert {stage.queue for stage in DRAINED} == {INDEX_QUEUE}


def test_a_stage_out_of_place_is_refused() -> None:
    with pytest.raises(ValueError, match="the pool stages come before the serial ones"):
        in_order(
            (BY_NAME["upload"], BY_NAME["detect"]),
            lambda stage: stage.where is Where.POOL,
            "the pool stages come before the serial ones",
        )


def test_one_retry_policy_bounds_run_and_the_tasks() -> None:
    settings = Settings.defaults().replace(retries=3, retry_backoff=0.5)
    out_of_reach = StorageUnavailable("cannot reach the object store")
    waits = [retry_in(settings, out_of_reach, attempt) for attempt in range(5)]
    assert [w is not None for w in waits] == [True, True, True, False, False]
    assert all(0.5 * 0.5 * 2**n <= w <= 0.5 * 2**n for n, w in enumerate(waits[:3]) if w is not None)
    assert retry_in(settings, ValueError("a photo's own fault"), 0) is None
    assert retry_in(settings, out_of_reach, 0, retries=0) is None  # a server known to be away: once
    import workers.tasks as tasks

    # Celery's own limit stays out of the policy's way.
    assert {name: task.max_retries for name, task in tasks.TASKS.items()} == dict.fromkeys(STAGE_TASKS)


def test_failed_jobs_are_made_by_fail_alone() -> None:
    """A failed photo's job is built in one place (facepic.pipeline.job.fail), and nothing rides
    in a job that Job does not declare."""
    built = []
    for package in ("facepic", "workers"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Dict):
                    keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                    if keys & {"failed_stage", "fatal"}:
                        built.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert [where.split(":")[0] for where in built] == ["facepic/pipeline/job.py"], built


MARKS = '''"""Two stages for a test: each notes the photos it saw, and in which process."""

import os

from facepic.context import Context
from facepic.pipeline.job import Job


def _mark(ctx: Context, stage: str, job: Job) -> Job:
    folder = ctx.settings.data_dir / "marks" / stage
    folder.mkdir(parents=True, exist_ok=True)
    (folder / job["image_id"]).write_text(str(os.getpid()))
    return job


def stamp(ctx: Context, job: Job) -> Job:
    return _mark(ctx, "stamp", job)


def notify(ctx: Context, job: Job) -> Job:
    return _mark(ctx, "notify", job)
'''


def code_with_new_stages(target: Path) -> Path:
    """A copy of facepic/ and workers/ whose table has a pool stage after thumbnails and a
    serial one on the index queue after log: their module and their lines, nothing else."""
    for package in ("facepic", "workers"):
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    (target / "facepic" / "pipeline" / "marks.py").write_text(MARKS)
    table = target / "facepic" / "pipeline" / "stages.py"
    source = table.read_text()
    for line, new in (
        ("from facepic.pipeline import detect,", "from facepic.pipeline import marks\n"),
        ('    Stage("thumbnails",', '    Stage("stamp", marks.stamp, Where.POOL, "cpu"),\n'),
        ('    Stage("log",', '    Stage("notify", marks.notify, Where.SERIAL, "index"),\n'),
    ):
        start = source.index(line)
        end = source.index("\n", start) + 1
        source = source[:end] + new + source[end:]
    table.write_text(source)
    return target


def photos_in(root: Path) -> None:
    """Three photos of one face each under ``root``."""
    (root / "tom_hanks").mkdir(parents=True)
    for name in ("07.jpg", "08.jpg", "09.jpg"):
        shutil.copy(PHOTOS / "tom_hanks" / name, root / "tom_hanks" / name)


def marks(settings: Settings, stage: str) -> dict[str, str]:
    folder = settings.data_dir / "marks" / stage
    return {p.name: p.read_text() for p in folder.iterdir()} if folder.exists() else {}


def facepic(code: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`facepic ARGS` run from ``code``, in a process of its own (pool processes and all)."""
    return subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", "--env-file", "/nonexistent/.env", *args],
        env={**os.environ, **env, "PYTHONPATH": str(code)},
        cwd=code,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_stage_added_to_the_table_alone_runs_in_facepic_run_and_in_the_workers(
    offline_env, server_env, tmp_path: Path
) -> None:
    code = code_with_new_stages(tmp_path / "code")
    photos = tmp_path / "drive"
    photos_in(photos)

    run = facepic(code, offline_env, "run", str(photos))
    assert run.returncode == 0, run.stderr
    assert "photos 3: done 3 (faces 3, no face 0)" in run.stdout
    settings = settings_of(offline_env)
    done = {line["image_id"] for line in ledger_lines(settings) if line["status"] == "done"}
    stamped, notified = marks(settings, "stamp"), marks(settings, "notify")
    assert set(stamped) == set(notified) == done and len(done) == 3
    # The pool stage ran in the pool's processes, the serial one in the run's own.
    assert len(set(notified.values())) == 1 and not set(stamped.values()) & set(notified.values())
    assert all("stamp" in line["timings"] for line in ledger_lines(settings) if line["status"] == "done")

    workers = start_workers(
        spawn_worker(server_env, tmp_path / "w-cpu", "cpu", "cpu,upload", path=(code,)),
        spawn_worker(server_env, tmp_path / "w-index", "index", "index", path=(code,)),
    )
    try:
        enqueue = facepic(code, server_env, "enqueue", "--wait", str(photos))
        assert enqueue.returncode == 0, enqueue.stderr
        assert "photos 3: done 3 (faces 3, no face 0)" in enqueue.stdout
        settings = settings_of(server_env)
        done = {line["image_id"] for line in ledger_lines(settings) if line["status"] == "done"}
        wait_until(lambda: set(marks(settings, "notify")) == done, "the index worker to run the new stage", 60)
        stamped, notified = marks(settings, "stamp"), marks(settings, "notify")
        assert set(stamped) == done and len(done) == 3
        assert not set(stamped.values()) & set(notified.values())  # a CPU worker's, the index worker's
    finally:
        stop_workers(workers)
