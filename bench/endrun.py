"""The end of a run against its size, through the product's own path: synthetic faces go
through the real index stage (`facepic.pipeline.index.index_batch`, batches of 256 as `run`
hands them over, on the embedded database in a scratch data folder), then the settle that ends
`facepic run` (`facepic.settle.settle_run`) is timed, reads and writes of the library included.

Only detection is left out (the embeddings are `bench/synthetic.py`'s clustered ones, one face a
photo as in LFW), so the figures are the serial part of a run: the index stage, and the end.

    python bench/endrun.py                         # 2,000, 15,000 faces
    python bench/endrun.py --faces 2000 15000 100000
    python bench/endrun.py --library /tmp/lfw/data      # real faces: those of a finished run's
                                                         # embedded library, one a photo
    python bench/endrun.py --faces 10000 --existing 40000   # a new drive into a settled library
    python bench/endrun.py --faces 40000 --slice 2000    # settled in slices, as the index worker does
    python bench/endrun.py --faces 2000 8000 --persons 20   # a family's library: few people, many faces each
    python bench/endrun.py --faces 8000 --persons 20 --as-run   # settled as `facepic run` does

``--existing N``: the library already holds N faces, indexed and settled (not timed), of the
same people; the new faces are the run's (with several ``--faces``, the same library each time
and the first that many of the same new faces: only N changes). ``--slice N``: the end settles N
faces at a time until none are left (the Celery index worker's drains). ``--as-run``: as
`facepic run` settles (`facepic.settle.AsTheRunGoes`), the faces stored so far between two
batches once those waiting hold ``PAIRS`` pairs in one person, the rest at the end. "settle" is
every settle's time, "end" the part after the last batch was indexed, "longest" the longest
settle. With ``--library``, ``--faces`` takes the first that many of its faces (all of them by
default).

Each row also scores the persons the end left against the faces' identities (the synthetic
persons, or for a real library the folder of each photo, on its face nearest the centre):
BCubed F, precision and recall, as `bench/quality.py` counts them (an unassigned face is a
person of its own). The index stage sees every face with the same detection score and quality
here, so a real library's figure is for comparing rows, not the product's quality.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.quality import labelled_face, scores
from bench.synthetic import clustered
from facepic import ids
from facepic.context import Context
from facepic.embedded import embedded_database
from facepic.pipeline import workfile
from facepic.pipeline.index import index_batch
from facepic.pipeline.job import Job
from facepic.settings import Settings
from facepic.settle import PAIRS, AsTheRunGoes, settle_run

BATCH = 256
MODEL = "buffalo_s"


def _jobs(ctx: Context, start: int, embeddings: np.ndarray) -> list[Job]:
    """Photos ``start``.. with one face each, their work files and crops written as detect would."""
    jobs: list[Job] = []
    crop = b"\xff\xd8\xff\xd9"  # the cover copy only needs a file there
    for n, e in enumerate(embeddings):
        path = f"synthetic/{start + n:07d}.jpg"
        sha = hashlib.sha256(path.encode()).hexdigest()
        image_id = ids.image_id(sha)
        info = {"width": 250, "height": 250, "format": "JPEG", "metadata": {}, "model": MODEL}
        arrays = {
            "boxes": np.array([[60.0, 60.0, 190.0, 190.0]]),
            "landmarks": np.array([[[90.0, 100.0], [160.0, 100.0], [125.0, 130.0], [95.0, 160.0], [155.0, 160.0]]]),
            "scores": np.array([0.8]),
            "embeddings": e.reshape(1, -1).astype(np.float32),
            "quality": np.array([[130.0, 400.0, 0.9]]),
            "info": np.frombuffer(json.dumps(info).encode(), dtype=np.uint8),
        }
        workfile.save(ctx.folder, image_id, arrays)
        face_crop = ctx.folder.face_crop(ids.face_id(image_id, 0))
        face_crop.parent.mkdir(parents=True, exist_ok=True)
        face_crop.write_bytes(crop)
        jobs.append(
            {"image_id": image_id, "sha256": sha, "root": "/synthetic", "path": path, "size": 1, "model": MODEL}
        )
    return jobs


def _face_id(n: int) -> str:
    """The face of synthetic photo ``n`` (as `_jobs` names it)."""
    path = f"synthetic/{n:07d}.jpg"
    return ids.face_id(ids.image_id(hashlib.sha256(path.encode()).hexdigest()), 0)


def library_faces(data_dir: str) -> tuple[np.ndarray, list[str | None]]:
    """The embeddings of a finished run's embedded library, in the order of their ids (a
    shuffle of the order the run stored them in), one a photo, and the identity of each
    photo's labelled face, the one nearest its centre: the folder it is in (LFW's layout,
    ``Name/Name_0001.jpg``); None for the other faces, whose identity is not known."""
    from facepic.documents import embeddings_from_bson

    settings = Settings.load(env={"FACEPIC_DATA_DIR": data_dir}, env_file=None)
    with embedded_database(settings) as live, Context(live) as ctx:
        lib = ctx.library
        model = lib.library_model() or MODEL
        docs = list(lib.faces.find({"model": model}, {"embedding": 1, "image_id": 1, "box": 1}).sort("_id", 1))
        photos = {d["_id"]: d for d in lib.images.find({}, {"path": 1, "width": 1, "height": 1})}
    of_photo: dict[str, list[int]] = {}
    for n, d in enumerate(docs):
        of_photo.setdefault(d["image_id"], []).append(n)
    labelled = set()
    for image_id, faces in of_photo.items():
        photo = photos[image_id]
        labelled.add(faces[labelled_face(np.array([docs[n]["box"] for n in faces]), photo["width"], photo["height"])])
    labels = [str(Path(photos[d["image_id"]]["path"]).parent) if n in labelled else None for n, d in enumerate(docs)]
    return embeddings_from_bson([d["embedding"] for d in docs]).copy(), labels


def _index(
    ctx: Context, start: int, embeddings: np.ndarray, settling: AsTheRunGoes | None = None
) -> tuple[float, float]:
    """The index stage over ``embeddings``, with ``settling`` between batches as `facepic run`
    settles as it goes: the seconds spent settling then, in all and the longest."""
    settled = longest = 0.0
    for at in range(0, len(embeddings), BATCH):
        jobs = _jobs(ctx, start + at, embeddings[at : at + BATCH])
        for job in index_batch(ctx, jobs):
            assert not job.get("error"), job.get("error")
            workfile.drop(ctx.folder, job["image_id"])
            if settling is not None:
                settling.stored(job.get("persons") or ())
        if settling is not None and settling.due:
            started = time.perf_counter()
            settling.settle()
            took = time.perf_counter() - started
            settled, longest = settled + took, max(longest, took)
    return settled, longest


def synthetic(total: int, seed: int = 0, persons: int | None = None) -> tuple[np.ndarray, list[str | None]]:
    """``total`` clustered faces in a shuffled order, and their persons: ``persons`` of them,
    by default as many as LFW's share (15,023 faces of 5,749 people)."""
    persons = persons or max(1, total * 2 // 5)
    known, owners, _ = clustered(total, persons, 1, seed)
    order = np.random.default_rng(seed).permutation(total)
    return known[order], [owners[i] for i in order]


def one(
    known: np.ndarray,
    labels: Sequence[str | None],
    existing: int = 0,
    slice_faces: int | None = None,
    every: int | None = None,
    pairs: int | None = None,
) -> dict[str, float]:
    """Index ``known[:existing]`` and settle it (not timed), then the rest as a run: the index
    stage, then its end (``every``: a slice settled each time that many faces are stored, the
    rest at the end; ``pairs``: as `facepic run` settles, `AsTheRunGoes` with that limit)."""
    with tempfile.TemporaryDirectory(prefix="facepic-endrun-") as tmp:
        settings = Settings.load(
            env={"FACEPIC_DATA_DIR": tmp, "FACEPIC_MODEL": MODEL, "FACEPIC_MODEL_ROOT": tmp}, env_file=None
        )
        with embedded_database(settings) as live, Context(live) as ctx:
            ctx.library.ensure_indexes()
            if existing:
                _index(ctx, 0, known[:existing])
                settle_run(ctx)
            indexed, settled, longest, moved, before, end = 0.0, 0.0, 0.0, 0, 0, 0.0
            if pairs is not None:  # as `facepic run`: slices when due while indexing, the rest at the end
                settling = AsTheRunGoes(ctx, pairs)
                started = time.perf_counter()
                behind, longest = _index(ctx, existing, known[existing:], settling)
                indexed = time.perf_counter() - started - behind
                started = time.perf_counter()
                summary = settling.settle()
                took = time.perf_counter() - started
                settled, end, moved, before = behind + took, took, summary.faces_moved, summary.persons_before
                longest = max(longest, took)
            chunk = every or len(known)
            for at in range(existing, len(known) if pairs is None else existing, chunk):
                started = time.perf_counter()
                _index(ctx, at, known[at : at + chunk])
                indexed += time.perf_counter() - started
                if at == existing:  # the persons the index stage made before the first settle
                    before = ctx.library.person_count()
                last = at + chunk >= len(known)
                while True:  # as the queue drains at the end: slices until none is left
                    started = time.perf_counter()
                    summary = settle_run(ctx, slice_faces or every)
                    took = time.perf_counter() - started
                    settled, longest, moved = settled + took, max(longest, took), moved + summary.faces_moved
                    end += took if last else 0.0
                    if not (last and summary.more):
                        break  # during the run: one slice each ``every`` faces, photos waiting
            person = {d["_id"]: d.get("person_id") for d in ctx.library.faces.find({}, {"person_id": 1})}
    scored = [n for n, label in enumerate(labels) if label is not None]
    found = [person[_face_id(n)] or f"unassigned {n}" for n in scored]
    return {
        **scores([str(labels[n]) for n in scored], found),
        "index": indexed,
        "settle": settled,
        "end": end,
        "longest": longest,
        "before": before,
        "after": summary.persons_after,
        "moved": moved,
        "new": len(known) - existing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, nargs="+", help="run sizes (default 2,000 and 15,000; a library's all)")
    parser.add_argument("--existing", type=int, default=0, help="faces the library holds, settled, before the run")
    parser.add_argument("--slice", type=int, help="settle this many faces at a time (the index worker's drains)")
    parser.add_argument(
        "--every", type=int, help="settle a slice each time this many faces are stored (the index worker)"
    )
    parser.add_argument(
        "--as-run",
        nargs="?",
        const=PAIRS,
        type=int,
        metavar="PAIRS",
        help=f"settle as `facepic run` does: when the waiting faces' pairs in one person reach PAIRS ({PAIRS:,})",
    )
    parser.add_argument("--library", help="a finished run's data folder: settle its real faces instead")
    parser.add_argument(
        "--persons", type=int, help="synthetic persons (default: 2 in 5 faces, as LFW; 20: a family's library)"
    )
    args = parser.parse_args()
    print(
        f"{'faces':>8} {'existing':>8} {'index s':>8} {'settle s':>8} {'end s':>8} {'end/index':>9} "
        f"{'settle ms/face':>14} {'longest s':>9} {'persons before':>14} {'after':>6} {'moved':>6} "
        f"{'F':>6} {'P':>6} {'R':>6}"
    )
    if args.library:
        known, labels = library_faces(args.library)
        runs = [(known[:n], labels[:n]) for n in args.faces or [len(known)]]
    else:
        sizes = args.faces or [2_000, 15_000]
        shared = synthetic(args.existing + max(sizes), persons=args.persons) if args.existing else None
        runs = [
            (shared[0][: args.existing + n], shared[1][: args.existing + n])
            if shared
            else synthetic(n, persons=args.persons)
            for n in sizes
        ]
    for known, labels in runs:
        r = one(known, labels, existing=args.existing, slice_faces=args.slice, every=args.every, pairs=args.as_run)
        n = int(r["new"])
        print(
            f"{n:>8} {args.existing:>8} {r['index']:8.1f} {r['settle']:8.1f} {r['end']:8.1f} "
            f"{r['end'] / r['index']:9.2f} {1000 * r['settle'] / n:14.2f} {r['longest']:9.1f} {r['before']:>14} "
            f"{r['after']:>6} {r['moved']:>6} {r['f']:6.4f} {r['precision']:6.4f} {r['recall']:6.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
