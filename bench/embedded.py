"""The embedded database's cost per document written: as SecantusDB is, with its index catalog
read once per storage transaction (``facepic/embedded_catalog.py``), and with that and
WiredTiger's packing formats parsed once (``facepic/embedded_packing.py``), as FacePic runs it.

    python bench/embedded.py                  # 3 rounds of 3,840 documents each way
    python bench/embedded.py --batches 60 --rounds 5

Each round starts a SecantusDB server on a fresh folder in a new process, makes the library's
indexes (``Library.ensure_indexes``), then writes batches as `facepic run`'s index stage
does: 64 photos' `images` documents and their faces' `faces` documents (a 512-d embedding
each) with ``insert_many``, then one update of each photo's person. It prints the CPU of that
process (the client's and the server's) per document written; the three ways take turns at going first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

PHOTOS_PER_BATCH = 64


def one(way: str, batches: int) -> dict[str, float]:
    """In this process: a server (``way``: as SecantusDB is, its catalog read once, that and
    WiredTiger's formats parsed once), the library's indexes, ``batches`` batches written."""
    import numpy as np
    from secantus import SecantusDBServer
    from secantus.storage import Storage

    from facepic import embedded_packing
    from facepic.db import Library
    from facepic.embedded_catalog import read_once as keep_catalog

    if way in ("once", "packed"):
        keep_catalog(Storage)
    if way == "packed":
        embedded_packing.apply()
    folder = Path(tempfile.mkdtemp(prefix="facepic-embedded-bench-"))
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(folder))
    server.start()
    try:
        host, port = server.address
        library = Library(f"mongodb://{host}:{port}/?directConnection=true")
        library.ensure_indexes()
        rng = np.random.default_rng(0)
        documents = 0
        started = time.process_time()
        for b in range(batches):
            ids = [str(uuid.uuid4()) for _ in range(PHOTOS_PER_BATCH)]
            persons = [f"p{rng.integers(0, 600):05d}" for _ in ids]
            library.images.insert_many(
                [
                    {
                        "_id": image_id,
                        "sha256": uuid.uuid4().hex * 2,
                        "folder_id": f"folder{b}",
                        "root": "/photos",
                        "path": f"batch{b}/{i}.jpg",
                        "width": 250,
                        "height": 250,
                        "taken_at": None,
                        "faces": [{"face_id": f"{image_id}-f0", "person_id": person}],
                    }
                    for i, (image_id, person) in enumerate(zip(ids, persons, strict=True))
                ],
                ordered=False,
            )
            library.faces.insert_many(
                [
                    {
                        "_id": f"{image_id}-f0",
                        "image_id": image_id,
                        "person_id": person,
                        "model": "buffalo_s",
                        "seq": b * PHOTOS_PER_BATCH + i,
                        "embedding": rng.standard_normal(512).astype(np.float32).tobytes(),
                        "box": [10.0, 20.0, 110.0, 140.0],
                        "landmarks": [[40.0, 60.0]] * 5,
                        "score": 0.9,
                    }
                    for i, (image_id, person) in enumerate(zip(ids, persons, strict=True))
                ],
                ordered=False,
            )
            library.faces.update_many({"image_id": {"$in": ids[:16]}}, {"$set": {"quality": 0.5}})
            documents += 2 * PHOTOS_PER_BATCH + 16
        cpu = time.process_time() - started
        library.client.close()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {"documents": documents, "cpu_ms": cpu * 1000 / documents}


WAYS = ("plain", "once", "packed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.batches)))
        return
    figures: dict[str, list[float]] = {way: [] for way in WAYS}
    for r in range(args.rounds):
        order = WAYS[r % len(WAYS) :] + WAYS[: r % len(WAYS)]  # each way first in turn
        for way in order:
            out = subprocess.run(
                [sys.executable, __file__, "--child", way, "--batches", str(args.batches)],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            figures[way].append(result["cpu_ms"])
            print(
                f"round {r + 1}: {way:6s} {result['documents']} documents, {result['cpu_ms']:.3f} ms of CPU each",
                flush=True,
            )
    plain, once, packed = (statistics.median(figures[way]) for way in WAYS)
    print(
        f"\nmedian: catalog read for each document {plain:.3f} ms, once per transaction {once:.3f} ms "
        f"({plain / once:.2f}x), and WiredTiger's formats parsed once {packed:.3f} ms ({plain / packed:.2f}x)"
    )


if __name__ == "__main__":
    main()
