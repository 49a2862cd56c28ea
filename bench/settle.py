"""What settling costs as the library grows: seconds to settle a batch of new faces against a
library of 10k, 100k and 1M faces (synthetic clustered embeddings, `bench/synthetic.py`).

The library is the index stage's `PersonIndex` (exact below 20,000 faces, faiss IVF above), as
the index worker holds it; its build is the worker's start, timed apart. The batch's faces are
first assigned online, photo by photo, then settled (`facepic.settle.settle_batch`: the settled
persons near them found in the index, the small ones grouped again face by face with the new
faces, then average linkage; "regrouped" counts those settled faces). The library's reads and writes
(the batch's faces, their photos' other faces, the changed persons) are not in these figures;
they too grow with the batch, not the library.

    python bench/settle.py                        # 10k, 100k and 1M faces, batches of 1,000
    python bench/settle.py --sizes 10000 --batches 1000 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.synthetic import clustered
from facepic import ids
from facepic.clustering import Faces
from facepic.matching import PersonIndex, Rules
from facepic.settle import Linkage, settle_batch


def one(size: int, batch: int, seed: int = 0) -> dict[str, float]:
    known, persons, queries = clustered(size, max(1, size // 10), batch, seed)
    started = time.perf_counter()
    index = PersonIndex(Rules.default())
    index.add_many(persons, known)
    built = time.perf_counter() - started
    started = time.perf_counter()
    online: list[str | None] = []
    for n, e in enumerate(queries):
        decision = index.decide(e)
        pid = decision.person_id or (None if decision.ambiguous else f"new{n}")
        if pid:
            index.add(pid, e)
        online.append(pid)
    assigned = time.perf_counter() - started
    new = Faces([f"q{n:07d}" for n in range(batch)], queries, online, [f"photo{n}" for n in range(batch)])
    faces_of: dict[str, list[int]] = {}
    for i, p in enumerate(persons):
        faces_of.setdefault(p, []).append(i)

    def members(pids: list[str]) -> tuple[Faces, set[str]]:  # what the library would read: the small persons' faces
        rows = [i for p in pids for i in faces_of.get(p, [])]
        faces = Faces([f"k{i:07d}" for i in rows], known[rows], [persons[i] for i in rows], [f"known{i}" for i in rows])
        return faces, set()

    started = time.perf_counter()
    decided, result, merged = settle_batch(
        new,
        index,
        Linkage.default(),
        lambda pids: {},
        lambda face_id, used: ids.person_id(face_id),
        size + batch,
        members,
    )
    settled = time.perf_counter() - started
    return {"build": built, "online": assigned, "settle": settled, "regrouped": len(decided.ids) - batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batches", type=int, nargs="+", default=[1_000])
    args = parser.parse_args()
    print(
        f"{'library':>9} {'batch':>7} {'index build s':>14} {'online s':>9} {'settle s':>9} {'ms/face':>8} "
        f"{'regrouped':>10}"
    )
    for size in args.sizes:
        for batch in args.batches:
            r = one(size, batch)
            print(
                f"{size:>9} {batch:>7} {r['build']:14.1f} {r['online']:9.2f} {r['settle']:9.2f} "
                f"{1000 * r['settle'] / batch:8.2f} {r['regrouped']:10d}",
                flush=True,
            )


if __name__ == "__main__":
    main()
