"""The index stage's ceiling: photos per second that one index worker stores, fed prepared work.

Each photo is a work file as the detect stage leaves it (4 faces by default: boxes, landmarks,
scores, quality, 512-d embeddings drawn around one centre per person, `bench/synthetic.py`)
and a face crop per face. Against a real MongoDB wire server (the one the tests start):

- ``--mode worker`` (default): the real index worker (`celery -A workers worker -Q index -c 1`)
  and Redis; the prepared jobs are handed to the index queue as the upload stage hands them,
  and the clock runs until the ledger has a line for every photo;
- ``--mode inprocess``: the same batches called in this process (``execute_batch``), and the
  one-by-one path (``execute``, index then log) beside them, for the cost of batching alone.

    python bench/index.py                                # 2,000 photos through the index worker
    python bench/index.py --mode inprocess --photos 1000
    python bench/index.py --known 100000                 # a library that already holds 100k faces
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.synthetic import DIM, _faces, _unit
from facepic import ids
from facepic.datafolder import DataFolder
from facepic.pipeline import workfile
from facepic.pipeline.job import Job

CROPS = HERE.parent / "tests" / "photos"


def prepare(
    folder: DataFolder, root: Path, photos: int, per_photo: int, persons: int, seed: int = 0, uniform: bool = False
) -> list[Job]:
    """Work files and face crops of ``photos`` photos, as the CPU stages leave them."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((persons, DIM), dtype=np.float32))
    # People appear unequally often, as in a real library (a few in many photos, most in a
    # few): log-normal, as in bench/synthetic.py; --uniform draws them evenly (more persons
    # touched per batch: the index worker's harder case).
    sizes = np.ones(persons) if uniform else rng.lognormal(0.0, 1.5, size=persons)
    crop = sorted(CROPS.glob("*/*.jpg"))[0].read_bytes()
    (folder.thumbnails / "faces").mkdir(parents=True, exist_ok=True)
    jobs: list[Job] = []
    for n in range(photos):
        image_id = f"{n:08x}-0000-4000-8000-bench{seed:07d}"
        owners = rng.choice(persons, size=per_photo, replace=False, p=sizes / sizes.sum())
        boxes = np.array([[100.0 + 300 * i, 200.0, 260.0 + 300 * i, 400.0] for i in range(per_photo)])
        marks = np.tile(np.array([[130.0, 260], [210, 260], [170, 300], [140, 350], [200, 350]]), (per_photo, 1, 1))
        info = {"width": 4032, "height": 3024, "format": "JPEG", "metadata": {}, "model": "buffalo_s"}
        workfile.save(
            folder,
            image_id,
            {
                "boxes": boxes,
                "landmarks": marks,
                "scores": rng.uniform(0.7, 0.95, per_photo),
                "embeddings": _faces(rng, centres, owners),
                "quality": np.array([[160.0, 400.0, 0.9]] * per_photo),
                "info": np.frombuffer(json.dumps(info).encode(), dtype=np.uint8),
            },
        )
        for i in range(per_photo):
            folder.face_crop(ids.face_id(image_id, i)).write_bytes(crop)
        path = f"DCIM/{100 + n // 500}CANON/IMG_{n:05d}.JPG"
        jobs.append(
            {
                "image_id": image_id,
                "sha256": f"{seed:08x}{n:056x}",
                "file": str(root / path),
                "root": str(root),
                "path": path,
                "size": 2_000_000,
                "mtime_ns": 0,
                "model": "buffalo_s",
                "upload": False,
                "faces": per_photo,
                "ext": "jpg",
                "timings": {},
            }
        )
    return jobs


def settings_for(workdir: Path, mongo_uri: str, redis_url: str, db: str) -> dict[str, str]:
    return {
        "FACEPIC_DATA_DIR": str(workdir / "data"),
        "FACEPIC_MONGODB_URI": mongo_uri,
        "FACEPIC_MONGODB_DB": db,
        "FACEPIC_REDIS_URL": redis_url,
        "FACEPIC_S3_ENDPOINT": "",
        "FACEPIC_S3_ACCESS_KEY_ID": "",
        "FACEPIC_S3_SECRET_ACCESS_KEY": "",
        "FACEPIC_MODEL": "buffalo_s",
    }


def ledger_count(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def seed_library(env: dict[str, str], known: int, persons: int, uniform: bool = False) -> None:
    """A library that already holds ``known`` faces (stored straight, as the index stage would)."""
    if not known:
        return
    from facepic.context import Context
    from facepic.pipeline.stages import BY_NAME
    from facepic.runner import run_serial_batch
    from facepic.settings import Settings

    settings = Settings.load(env=env, env_file=None)
    root = Path(env["FACEPIC_DATA_DIR"]).parent / "seed"
    with Context(settings) as ctx:
        jobs = prepare(settings.folder, root, known // 4, 4, persons, seed=1, uniform=uniform)
        for start in range(0, len(jobs), 500):
            run_serial_batch(ctx, jobs[start : start + 500], (BY_NAME["index"], BY_NAME["log"]), set())
    settings.ledger_path.unlink()


def run_inprocess(env: dict[str, str], args: argparse.Namespace) -> None:
    from facepic.context import Context
    from facepic.pipeline.policy import execute
    from facepic.pipeline.stages import BY_NAME
    from facepic.runner import run_serial_batch
    from facepic.settings import Settings

    for batch in (args.batch, 1):
        run_env = {**env, "FACEPIC_MONGODB_DB": f"{env['FACEPIC_MONGODB_DB']}_b{batch}"}
        seed_library(run_env, args.known, args.persons, args.uniform)
        settings = Settings.load(env=run_env, env_file=None)
        jobs = prepare(settings.folder, Path("/bench"), args.photos, args.faces, args.persons, uniform=args.uniform)
        with Context(settings) as ctx:
            ctx.library.ensure_indexes()
            started = time.perf_counter()
            if batch == 1:
                for job in jobs:
                    for stage in ("index", "log"):
                        outcome = execute(ctx, BY_NAME[stage], job)
                        assert outcome.job is not None
                        job = outcome.job
            else:
                for start in range(0, len(jobs), batch):
                    run_serial_batch(ctx, jobs[start : start + batch], (BY_NAME["index"], BY_NAME["log"]), set())
            elapsed = time.perf_counter() - started
        name = f"batches of {batch}" if batch > 1 else "one by one"
        report(name, args, elapsed)


def run_worker(env: dict[str, str], args: argparse.Namespace, workdir: Path) -> None:
    import redis

    from facepic.settings import Settings
    from tests import servers
    from workers.app import make_app
    from workers.batches import IndexQueue

    seed_library(env, args.known, args.persons, args.uniform)
    settings = Settings.load(env=env, env_file=None)
    jobs = prepare(settings.folder, Path("/bench"), args.photos, args.faces, args.persons, uniform=args.uniform)
    from facepic.db import Library

    lib = Library(env["FACEPIC_MONGODB_URI"], env["FACEPIC_MONGODB_DB"])
    lib.ensure_indexes()
    lib.close()
    app = make_app(settings)
    queue = IndexQueue(redis.Redis.from_url(env["FACEPIC_REDIS_URL"]), app)
    worker = servers.start_worker(env, workdir / "w-index", "index", "index", 1)
    try:
        started = time.perf_counter()
        for job in jobs:
            queue.push(job)
        fed = time.perf_counter() - started
        while ledger_count(settings.ledger_path) < len(jobs):
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
    print(f"(handing {len(jobs)} jobs to the queue took {fed:.2f} s of that)")
    report("index worker", args, elapsed)
    lines = [json.loads(x) for x in settings.ledger_path.read_text().splitlines()]
    assert all(x["status"] == "done" for x in lines), [x for x in lines if x["status"] != "done"][:3]


def report(name: str, args: argparse.Namespace, elapsed: float) -> None:
    people = f"{args.persons} people{' (uniform)' if args.uniform else ''}"
    print(
        f"{name}: {args.photos} photos of {args.faces} faces of {people}, {args.known} faces known before, "
        f"{elapsed:.2f} s, {args.photos / elapsed:.0f} photos/s ({args.photos * args.faces / elapsed:.0f} faces/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("worker", "inprocess"), default="worker")
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--faces", type=int, default=4, help="faces per photo")
    parser.add_argument("--persons", type=int, default=500, help="distinct people in the photos")
    parser.add_argument("--known", type=int, default=0, help="faces already in the library")
    parser.add_argument("--uniform", action="store_true", help="every person equally often")
    parser.add_argument("--batch", type=int, default=64, help="photos per batch (inprocess mode)")
    args = parser.parse_args()
    from tests import servers

    workdir = Path(tempfile.mkdtemp(prefix="facepic-bench-index-"))
    mongo, mongo_uri = servers.start_mongo(workdir)
    redis_server, redis_url = servers.start_redis(workdir)
    try:
        env = settings_for(workdir, mongo_uri, redis_url + "/0", "bench_index")
        if args.mode == "worker":
            run_worker(env, args, workdir)
        else:
            run_inprocess(env, args)
    finally:
        redis_server.stop()
        mongo.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
