"""How fast the page answers on a large library: PERSONS synthetic persons (a few faces and
photos each, some named, some faces of nobody) written through ``Library`` into the embedded
database, then each page and API list asked ROUNDS times through the app, median ms printed.

    python -m bench.web [--persons 10000] [--rounds 5] [--data /tmp/facepic-bench-web-2]

The library is built once per data folder and kept (a second run only times).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.synthetic import _faces, _unit
from facepic.db import Library
from facepic.documents import embedding_to_bson, face, image_faces, new_person
from facepic.models import EMBEDDING_DIM
from facepic.settings import Settings

NAMES = ("Ada", "Bo", "Cyd", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kit", "Lu", "Max", "Ned", "Oz")
MODEL = "buffalo_l"


def build(lib: Library, persons: int, seed: int = 0) -> None:
    """``persons`` persons of 1 to 6 faces (one in 10 named), each face on its own photo or on a
    group photo, and a face of nobody for every 5 persons. Faces are alike by identity
    (`bench.synthetic`), and one person in 10 is a second part of another's identity: the
    "same person?" pairs of a split library."""
    rng = random.Random(seed)
    looks = np.random.default_rng(seed)
    centres = _unit(looks.standard_normal((persons, EMBEDDING_DIM)).astype(np.float32))
    # Each person's identity: its own, or (one in 10) that of an earlier person.
    identity = [n if n < 10 or rng.random() >= 0.1 else rng.randrange(n) for n in range(persons)]
    now = "2024-01-01T00:00:00"
    folders = [
        {"_id": f"d{n:03d}", "root": "/photos", "path": f"y{2000 + n % 20}/e{n}", "name": f"e{n}"} for n in range(200)
    ]
    folders = [{**f, "parent_id": None} for f in folders]
    lib.upsert_folders(folders)
    person_ids = [f"p{n:015x}" for n in range(1, persons + 1)]
    number = {p: n for n, p in enumerate(person_ids)}
    owners = [p for p in person_ids for _ in range(rng.randint(1, 6))]
    owners += [None] * (persons // 5)
    rng.shuffle(owners)
    seq = 0
    faces_of: dict[str, int] = {}
    for start in range(0, len(owners), 2000):
        images, faces = [], []
        chunk = owners[start : start + 2000]
        i = 0
        while i < len(chunk):
            group = chunk[i : i + rng.choice((1, 1, 2, 3))]
            i += len(group)
            image_id = str(uuid.UUID(int=rng.getrandbits(128)))
            folder = rng.choice(folders)
            day = f"{rng.randint(2000, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00"
            docs = []
            for n, pid in enumerate(group):
                seq += 1
                fields = {"box": [10.0, 10.0, 60.0, 60.0], "score": 0.9, "quality": {"value": 0.5}, "model": MODEL}
                owner = number[pid] if pid else rng.randrange(persons)  # a face of nobody looks like someone
                fields["embedding"] = embedding_to_bson(_faces(looks, centres, np.array([identity[owner]]))[0])
                candidates = {"candidates": rng.sample(person_ids, 2)} if pid is None and rng.random() < 0.5 else {}
                docs.append({**face(f"{image_id}-f{n}", image_id, n, {**fields, **candidates}, pid, seq)})
                if pid:
                    faces_of[pid] = faces_of.get(pid, 0) + 1
            faces += docs
            images.append(
                {
                    "_id": image_id,
                    "sha256": uuid.UUID(int=rng.getrandbits(128)).hex * 2,
                    "path": f"{folder['path']}/IMG_{seq:07d}.jpg",
                    "root": "/photos",
                    "folder_id": folder["_id"],
                    "width": 4000,
                    "height": 3000,
                    "taken_at": day if rng.random() < 0.8 else None,
                    "file_time": day,
                    "model": MODEL,
                    "faces": image_faces(docs),
                }
            )
        lib.upsert_images(images)
        lib.upsert_faces(faces, stored=[])
    changes: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    for n, pid in enumerate(person_ids):
        named = {"name": f"{NAMES[n % len(NAMES)]} {n}", "user_locked": True} if n % 10 == 0 else {}
        day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00"
        fields = {"face_count": faces_of.get(pid, 0), "updated_at": day, **named}
        changes[pid] = (fields, {k: v for k, v in new_person(MODEL, now).items() if k not in fields})
    lib.write_persons(changes, [])


def timed(client: Any, path: str, rounds: int, before: Any = None) -> float:
    times = []
    for _ in range(rounds):
        if before:
            before()
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(times)


def main() -> None:
    from facepic.context import Context
    from facepic.embedded import embedded_database
    from facepic.web.app import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    # (-2: the faces are alike by identity since "same person?"; a library built before is not)
    parser.add_argument("--data", type=Path, default=Path("/tmp/facepic-bench-web-2"))
    args = parser.parse_args()
    settings = Settings.load(env={"FACEPIC_DATA_DIR": str(args.data)}, env_file=None)
    with embedded_database(settings, alone=True) as live, Context(live) as ctx:
        lib = ctx.library
        if lib.person_count() < args.persons:
            start = time.perf_counter()
            build(lib, args.persons)
            print(f"built {lib.counts()} in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        lib.ensure_indexes()
        print(f"ensure_indexes {1000 * (time.perf_counter() - start):.0f} ms")
        app = create_app(ctx)
        client = app.test_client()
        # "Same person?" reads every person's faces once (`facepic serve` does it as it starts).
        start = time.perf_counter()
        found = len(app.extensions["facepic"].suggested.pairs())
        print(f"same person? read  {1000 * (time.perf_counter() - start):8.1f} ms  {found} pairs")
        ordered = client.get("/api/persons").get_json()["persons"]
        busy = ordered[0]["id"]
        named = client.get("/api/persons/search?q=Ada").get_json()
        two = [p["id"] for p in ordered[:2]]
        asked = client.get("/api/same").get_json()["pairs"][0]["a"]["id"]
        paths = {
            "people most": "/",
            "people most p50": "/?page=50",
            "people name": "/?sort=name",
            "people name p100": "/?sort=name&page=100",
            "people recent": "/?sort=recent",
            "people filter": "/?name=ada",
            "api persons": "/api/persons",
            "api persons name": "/api/persons?sort=name&page=3",
            "person page": f"/persons/{busy}",
            "unassigned": "/unassigned",
            "unassigned p20": "/unassigned?page=20",
            "name search": "/api/persons/search?q=ada",
            "search page": f"/search?q=ada&person={named[0]['id']}",
            "photo search 1": f"/api/search?person={busy}",
            "photo search 2": f"/api/search?person={two[0]}&person={two[1]}",
            "photo search date": f"/api/search?person={busy}&from=2005-01-01&to=2020-12-31&folder=y2005",
            "same person": "/same",
            "same person p10": "/same?page=10",
            "same of one": f"/same?person={asked}",
            "api same": "/api/same",
        }
        for label, path in paths.items():
            print(f"{label:18s} {timed(client, path, args.rounds):8.1f} ms  {path}")
        # A person changed just before: the page reads every person's sort keys again.
        touch = lambda: lib.set_person_fields(busy, {"updated_at": time.strftime("%Y-%m-%dT%H:%M:%S")})  # noqa: E731
        print(f"{'people after change':18s} {timed(client, '/', args.rounds, touch):8.1f} ms  /")
        # The pairs after a change: the changed persons are read and compared with every other;
        # past 500 persons changed at once (a recluster) every person is read again.
        print(f"{'same after change':18s} {timed(client, '/same', args.rounds, touch):8.1f} ms  /same")
        many = [p["id"] for p in ordered[:1]] + [f"p{n:015x}" for n in range(1, 601)]
        bulk = lambda: lib.set_persons_fields(many, {"updated_at": time.strftime("%Y-%m-%dT%H:%M:%S")})  # noqa: E731
        print(f"{'same after 600':18s} {timed(client, '/same', args.rounds, bulk):8.1f} ms  /same")


if __name__ == "__main__":
    main()
