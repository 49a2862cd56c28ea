"""Nothing lost, nothing twice: replayed stages, killed workers, a killed enqueuer, a torn ledger,
a restarted Redis, and MongoDB or the bucket out of reach for a while. Real servers and workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from facepic.context import Context
from facepic.pipeline.policy import run_stage
from facepic.pipeline.stages import BY_NAME
from facepic.planner import Planner
from facepic.settings import Settings
from facepic.storage import open_store
from tests import servers
from tests.conftest import PHOTOS, REPO, copy_photos, invoke, ledger_lines, settings_of, wait_for_ledger, wait_until
from tests.proxy import Proxy
from tests.servers import spawn_worker, start_pipeline_workers, start_worker, start_workers, stop_workers
from tests.test_pipeline_e2e import expected_keys, library_of
from workers.batches import WAITING, WORKING

VOLATILE = ("created_at", "updated_at")


def snapshot(lib, store) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    def docs(coll) -> dict:  # type: ignore[no-untyped-def]
        return {d["_id"]: {k: v for k, v in d.items() if k not in VOLATILE} for d in coll.find({})}

    return {
        "images": docs(lib.images),
        "faces": docs(lib.faces),
        "persons": docs(lib.persons),
        "folders": docs(lib.folders),
        "keys": sorted(store.list_keys()),
    }


def many_photos(target: Path, copies: int) -> int:
    """``copies`` distinct files per labelled photo (bytes after the JPEG's end differ)."""
    count = 0
    for src in sorted(PHOTOS.glob("*/*.jpg")):
        for c in range(copies):
            folder = target / f"{src.parent.name}-{c}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / src.name).write_bytes(src.read_bytes() + f"copy {c}".encode())
            count += 1
    return count


def check_exactly_once(env: dict[str, str], total: int) -> None:
    settings = settings_of(env)
    raw = settings.ledger_path.read_text().splitlines()
    lines = [json.loads(line) for line in raw]  # every line is valid JSON
    done: dict[tuple[str, str], list[bool]] = {}
    for line in lines:
        if line["status"] == "done":
            done.setdefault((line["root"], line["path"]), []).append(line["uploaded"])
    assert len(done) == total
    for photo, uploads in done.items():
        # once; or processed without the bucket, then uploaded by --upload-only
        assert uploads in ([True], [False, True]), (photo, uploads)
    finals = {(x["root"], x["path"]): x["status"] for x in lines}
    assert set(finals.values()) == {"done"}
    lib = library_of(env)
    assert lib.images.count_documents({}) == total
    faces = list(lib.faces.find({}, {"person_id": 1, "image_id": 1}))
    assert all(f["person_id"] for f in faces)
    assert {p["_id"] for p in lib.persons.find({})} == {f["person_id"] for f in faces}  # no orphans
    for person in lib.persons.find({}):
        assert person["face_count"] == sum(1 for f in faces if f["person_id"] == person["_id"])
    assert set(open_store(settings).list_keys()) == expected_keys(lib)  # no orphan objects


def test_replaying_any_stage_in_any_order_changes_nothing(server_env, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    copy_photos(photos)
    settings = settings_of(server_env)
    ctx = Context(settings)
    ctx.store.ensure_bucket()
    planner = Planner(ctx.ledger, "buffalo_s", upload=True)
    inputs: dict[str, list] = {stage: [] for stage in BY_NAME}
    for job in planner.new_jobs(photos):
        for stage in BY_NAME:
            inputs[stage].append(job)
            job = run_stage(ctx, BY_NAME[stage], job)
    lib, store = ctx.library, ctx.store
    before = snapshot(lib, store)
    lines_before = ledger_lines(settings)

    # Replays, each after its predecessor ran: single stages, backwards, and whole chains again,
    # in this worker and in a fresh one (a restarted process with empty caches).
    for stage in ("index", "log", "upload", "thumbnails", "index", "log"):
        for job in inputs[stage]:
            run_stage(ctx, BY_NAME[stage], job)
    fresh = Context(settings)
    for job in reversed(inputs["detect"]):
        for stage in BY_NAME:
            job = run_stage(fresh, BY_NAME[stage], job)
    for job in inputs["index"]:
        run_stage(Context(settings), BY_NAME["index"], job)

    assert snapshot(lib, store) == before
    assert ledger_lines(settings) == lines_before  # no second done line
    assert not list(settings.folder.work.glob("*.work"))


def kill_mid_batch(server_env: dict[str, str], tmp_path: Path, victim: str) -> None:
    env = {**server_env, "FACEPIC_VISIBILITY_TIMEOUT": "4"}
    photos = tmp_path / "drive"
    total = many_photos(photos, 3)
    started = start_workers(
        spawn_worker(env, tmp_path / "w-cpu", "cpu", "cpu,upload", 1),
        spawn_worker(env, tmp_path / "w-index", "index", "index", 1),
    )
    workers = dict(zip(("cpu", "index"), started))
    try:
        assert invoke(env, "enqueue", str(photos)).exit_code == 0
        settings = settings_of(env)
        wait_until(lambda: sum(1 for x in ledger_lines(settings) if x["status"] == "done") >= 8, "8 photos")
        workers[victim].kill()  # mid-batch: tasks in flight, unacknowledged
        remaining = total - sum(1 for x in ledger_lines(settings) if x["status"] == "done")
        assert remaining > 0, "the batch finished before the kill"
        queues = "cpu,upload" if victim == "cpu" else "index"
        workers[victim] = start_worker(env, tmp_path / f"w-{victim}-2", f"{victim}2", queues, 1)
        # A worker killed between its BRPOP and kombu recording the delivery drops that one
        # message, as a Redis crash there does (README): the photo stays pending, and
        # `enqueue --requeue-pending` is the user's remedy. Anything more is a loss.
        client = redis.Redis.from_url(env["FACEPIC_REDIS_URL"])
        # Settled: the killed worker's tasks were delivered again after the visibility timeout
        # and acknowledged, which must change nothing (check_exactly_once).
        missing = requeue_once_settled(env, client, total)
        assert missing <= 1, f"{missing} photos were lost with the killed {victim} worker"
        if missing:  # and the photo sent again, until its tasks are acknowledged too
            wait_quiet(client, settings_of(env))
    finally:
        stop_workers(workers.values())
    check_exactly_once(env, total)


def nothing_to_deliver(client: redis.Redis) -> bool:
    """No task queued or delivered and unacknowledged, no photo waiting for or taken by the index
    worker: nothing is under way, and nothing can be delivered again."""
    queues = ("cpu", "upload", "index", WAITING, WORKING)
    return all(client.llen(q) == 0 for q in queues) and not client.hlen("unacked")


def wait_quiet(client: redis.Redis, settings: Settings, still: float = 3.0, timeout: float = 240) -> None:
    """Wait until nothing is under way and the ledger has not grown for ``still`` seconds in a
    row. Every task in flight is in Redis (acknowledged late) and a dead worker's deliveries stay
    in ``unacked`` until they are delivered again, so this is looked at often, not slept through."""
    deadline = time.monotonic() + timeout
    quiet_since, size = None, -1
    while time.monotonic() < deadline:
        now = time.monotonic()
        grown = settings.ledger_path.stat().st_size if settings.ledger_path.exists() else 0
        if nothing_to_deliver(client) and grown == size:
            quiet_since = quiet_since or now
            if now - quiet_since >= still:
                return
        else:
            quiet_since = None
        size = grown
        time.sleep(0.2)
    raise AssertionError(f"the queues were not quiet for {still:.0f} s within {timeout:.0f} s")


def requeue_once_settled(env: dict[str, str], client: redis.Redis, total: int) -> int:
    """Wait until the queues and unacknowledged deliveries are empty and the ledger is still;
    then, if photos are still pending, send them again as a user would and wait for them.
    Returns how many photos had to be sent again."""
    settings = settings_of(env)
    wait_quiet(client, settings)
    finished = {(x["root"], x["path"]) for x in ledger_lines(settings) if x["status"] in ("done", "failed")}
    if len(finished) < total:
        result = invoke(env, "enqueue", "--requeue-pending", "--wait")
        assert result.exit_code == 0, result.output
    wait_for_ledger(settings, total, timeout=240)
    return total - len(finished)


def test_killed_cpu_worker(server_env, tmp_path: Path) -> None:
    kill_mid_batch(server_env, tmp_path, "cpu")


def test_killed_index_worker(server_env, tmp_path: Path) -> None:
    kill_mid_batch(server_env, tmp_path, "index")


KILL_IN_BATCH = """
import os, signal
from pathlib import Path

_marker = os.environ.get("KILL_MARKER")
if _marker:
    import facepic.db as _db

    _real = _db.Library.upsert_images

    def _upsert_images(self, docs):
        # After the batch's faces and persons are stored, before its photos and ledger lines.
        if len(docs) > 1 and not Path(_marker).exists():
            Path(_marker).write_text(str(len(docs)))
            os.kill(os.getpid(), signal.SIGKILL)
        return _real(self, docs)

    _db.Library.upsert_images = _upsert_images
"""


def test_index_worker_killed_inside_a_batch(server_env, tmp_path: Path) -> None:
    """The index worker's process dies between a batch's writes: the batch is taken again,
    and every photo is done once, its faces, persons and ledger line once."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(KILL_IN_BATCH)
    marker = tmp_path / "killed"
    env = {**server_env, "FACEPIC_VISIBILITY_TIMEOUT": "4", "KILL_MARKER": str(marker)}
    photos = tmp_path / "drive"
    total = many_photos(photos, 2)
    settings = settings_of(env)
    cpu = start_worker(env, tmp_path / "w-cpu", "cpu", "cpu,upload", 1)
    index = None
    try:
        assert invoke(env, "enqueue", str(photos)).exit_code == 0
        waiting = redis.Redis.from_url(env["FACEPIC_REDIS_URL"])
        wait_until(lambda: waiting.llen("facepic:index") == total, "every photo waiting for the index worker")
        index = start_worker(env, tmp_path / "w-index", "index", "index", 1, path=(faults,))
        wait_for_ledger(settings, total, timeout=240)
        wait_quiet(waiting, settings)  # the drain delivered again after the visibility timeout changes nothing
    finally:
        stop_workers((cpu, index))
    assert int(marker.read_text()) > 1, "no batch was cut short"
    check_exactly_once(env, total)
    assert "WorkerLostError" in (tmp_path / "w-index" / "index.log").read_text()


def test_killed_enqueuer_queues_the_rest_on_the_next_run(server_env, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    for i in range(1500):  # the enqueuer hashes and queues; no worker runs, nothing is decoded
        folder = photos / f"{i // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{i:04d}.jpg").write_bytes(b"\xff\xd8\xff" + f"photo {i}".encode())
    settings = settings_of(server_env)
    code = "from workers.cli import main; import sys; sys.argv[0] = 'facepic'; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--env-file", "/nonexistent", "enqueue", str(photos)],
        env={**os.environ, **server_env, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def queued() -> int:
        return sum(1 for x in ledger_lines(settings) if x["status"] == "queued")

    wait_until(lambda: queued() >= 300, "300 photos queued", timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = queued()
    assert first < 1500, "the enqueuer finished before it was killed"
    again = invoke(server_env, "enqueue", str(photos))
    assert again.exit_code == 0, again.output
    assert f"photos 1,500: already done {first:,}, duplicates 0, queued {1500 - first:,}, failed 0" in again.output
    paths = [x["path"] for x in ledger_lines(settings) if x["status"] == "queued"]
    assert len(paths) == len(set(paths)) == 1500
    # At most the one photo being handed over at the instant of the kill went to Redis twice.
    assert 1500 <= redis.Redis.from_url(server_env["FACEPIC_REDIS_URL"]).llen("cpu") <= 1501


def test_a_torn_ledger_line_is_repaired_and_the_run_goes_on(offline_env, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    photos.mkdir()
    for name in ("07.jpg", "08.jpg", "09.jpg"):
        (photos / name).write_bytes((PHOTOS / "tom_hanks" / name).read_bytes())
    assert invoke(offline_env, "run", str(photos)).exit_code == 0
    ledger = settings_of(offline_env).ledger_path
    data = ledger.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    ledger.write_bytes(data[: last_start + (len(data) - last_start) // 2])  # a crash mid-write
    result = invoke(offline_env, "run", str(photos))
    assert result.exit_code == 0, result.output
    assert "photos 3: done 1 (faces 1, no face 0), already done 2, duplicates 0, failed 0" in result.output
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sorted(x["path"] for x in lines if x["status"] == "done") == ["07.jpg", "08.jpg", "09.jpg"]


def test_redis_restart_loses_no_queued_photo(server_env, tmp_path: Path) -> None:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server, url = servers.start_redis(workdir, durable=True)
    port = int(url.rsplit(":", 1)[1])
    env = {**server_env, "FACEPIC_REDIS_URL": url + "/0", "FACEPIC_VISIBILITY_TIMEOUT": "4"}
    photos = tmp_path / "drive"
    total = many_photos(photos, 2)
    workers = []
    try:
        assert invoke(env, "enqueue", str(photos)).exit_code == 0
        server.stop(signal.SIGKILL)  # everything is queued, nothing processed yet
        server, _ = servers.start_redis(workdir, port=port, durable=True)
        workers = start_pipeline_workers(env, tmp_path)
        settings = settings_of(env)
        wait_until(lambda: sum(1 for x in ledger_lines(settings) if x["status"] == "done") >= 5, "5 photos")
        server.stop(signal.SIGKILL)  # again, with the workers in the middle of the batch,
        time.sleep(3)  # and down long enough that chains are being handed on meanwhile
        server, _ = servers.start_redis(workdir, port=port, durable=True)
        # Redis dying between a worker's BRPOP and kombu recording the delivery can drop that
        # one message; the ledger still has the photo as queued, and this sends it again.
        requeue_once_settled(env, redis.Redis.from_url(url + "/0"), total)
    finally:
        stop_workers(workers)
        server.stop()
    check_exactly_once(env, total)


def test_mongodb_out_of_reach_fails_photos_after_bounded_retries_then_retry_failed(
    server_env, mongo_server, tmp_path: Path
) -> None:
    proxy = Proxy(int(mongo_server.split(":")[2].split("/")[0])).up()
    uri = f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true"
    env = {
        **server_env,
        "FACEPIC_MONGODB_URI": uri,
        "FACEPIC_RETRIES": "2",
        "FACEPIC_RETRY_BACKOFF": "0.2",
        "FACEPIC_DB_TIMEOUT": "1",
    }
    photos = tmp_path / "drive"
    labels = {f"tom_hanks/{n}": "tom_hanks" for n in ("07.jpg", "08.jpg", "09.jpg")}
    for path in labels:
        (photos / path).parent.mkdir(parents=True, exist_ok=True)
        (photos / path).write_bytes((PHOTOS / path).read_bytes())
    assert invoke(env, "enqueue", str(photos)).exit_code == 0
    proxy.down()
    workers = start_pipeline_workers(env, tmp_path)
    try:
        settings = settings_of(env)
        lines = wait_for_ledger(settings, len(labels), timeout=240)
        failed = [x for x in lines if x["status"] == "failed"]
        assert len(failed) == len(labels)
        assert all(
            x["reason"] == f"DatabaseUnavailable: cannot reach MongoDB at 127.0.0.1:{proxy.port}" for x in failed
        ), failed[0]
        assert library_of(server_env).images.count_documents({}) == 0
        proxy.up()
        result = invoke(env, "enqueue", "--retry-failed", "--wait", str(photos))
        assert result.exit_code == 0, result.output
        assert (
            f"photos {len(labels)}: done {len(labels)} (faces {len(labels)}, no face 0), already done 0, "
            "duplicates 0, failed 0" in result.output
        )
    finally:
        stop_workers(workers)
        proxy.down()
    check_exactly_once(server_env, len(labels))


def test_bucket_out_of_reach_keeps_photos_not_uploaded_then_upload_only(server_env, s3_server, tmp_path: Path) -> None:
    proxy = Proxy(int(s3_server.rsplit(":", 1)[1])).up()
    env = {
        **server_env,
        "FACEPIC_S3_ENDPOINT": f"http://127.0.0.1:{proxy.port}",
        "FACEPIC_RETRIES": "2",
        "FACEPIC_RETRY_BACKOFF": "0.2",
    }
    photos = tmp_path / "drive"
    labels = copy_photos(photos, group=False)
    assert invoke(env, "enqueue", str(photos)).exit_code == 0
    proxy.down()
    workers = start_pipeline_workers(env, tmp_path)
    try:
        settings = settings_of(env)
        lines = wait_for_ledger(settings, len(labels), timeout=240)
        done = [x for x in lines if x["status"] == "done"]
        assert len(done) == len(labels)
        assert all(not x["uploaded"] and "cannot reach the object store" in x["upload_error"] for x in done)
        assert f"not uploaded {len(labels)}" in invoke(env, "status").output
        lib = library_of(server_env)
        assert lib.images.count_documents({"uploaded": False}) == len(labels)
        proxy.up()
        result = invoke(env, "enqueue", "--upload-only", "--wait")
        assert result.exit_code == 0, result.output
        assert "not uploaded 0" in invoke(env, "status").output
    finally:
        stop_workers(workers)
        proxy.down()
    check_exactly_once(server_env, len(labels))
