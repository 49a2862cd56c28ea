"""Person matching at scale: per-face decision latency, index build time, memory per face, and
the share of decisions identical to the full comparison, on synthetic clustered embeddings.

    python bench/matching.py                       # 10k, 100k and 1M faces
    python bench/matching.py --sizes 10000 100000
    python bench/matching.py --sizes 100000 --mongodb-uri mongodb://127.0.0.1:27017
        # also: store the faces in MongoDB and time the index worker's start on them: the
        # first (every face read, the snapshot written) and a later one (the snapshot plus
        # the 1% of faces stored since)

Below `PersonIndex.exact_limit` faces the decision is the full comparison itself (identical by
construction); above it, an inverted-file index (faiss IVF-Flat) narrows the candidates.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.synthetic import clustered
from facepic.matching import PersonIndex, Rules


def _from_database(uri: str, known: np.ndarray, persons: list[str]) -> dict[str, float]:
    """The index worker's start on a library of these faces in MongoDB: seconds for the first
    start (every face read one by one, then the snapshot written), a later start (the snapshot
    plus the 1% of faces stored after it) and a start after a merge of 0.5% of the faces (their
    persons read again), each including the index build."""
    from facepic import snapshot
    from facepic.db import Library, embedding_to_bson

    lib = Library(uri, "facepic_bench_matching")
    lib.drop_all()
    lib.ensure_indexes()
    lib.claim_model("bench")
    later = len(known) // 100

    def store(lo: int, hi: int) -> float:
        start = time.perf_counter()
        first = lib.next_seq(hi - lo)
        for s in range(lo, hi, 5000):
            lib.faces.insert_many(
                [
                    {
                        "_id": f"f{i}",
                        "image_id": f"i{i}",
                        "index": 0,
                        "model": "bench",
                        "seq": first + i - lo,
                        "person_id": persons[i],
                        "embedding": embedding_to_bson(known[i]),
                        "score": 0.8,
                        "box": [0.0, 0.0, 100.0, 100.0],
                        "quality": {"value": 1.0},
                    }
                    for i in range(s, min(s + 5000, hi))
                ],
                ordered=False,
            )
        return time.perf_counter() - start

    def start_worker() -> tuple[float, str]:
        start = time.perf_counter()
        loaded = snapshot.load(lib, "bench")
        PersonIndex(Rules.default()).add_many(loaded.persons, loaded.matrix)
        return time.perf_counter() - start, loaded.source

    row = {"db_write_s": store(0, len(known) - later)}
    row["db_first_start_s"], first = start_worker()
    row["db_write_s"] += store(len(known) - later, len(known))
    row["db_start_s"], second = start_worker()
    start = time.perf_counter()
    lib.set_person([f"f{i}" for i in range(0, len(known), 200)], "merged")  # a merge of 0.5% of the faces
    row["db_merge_s"] = time.perf_counter() - start
    row["db_corrected_start_s"], third = start_worker()
    print(
        f"    database: first start ({first}) {row['db_first_start_s']:.1f} s; "
        f"later start ({second}) {row['db_start_s']:.1f} s; "
        f"after a merge ({row['db_merge_s']:.1f} s to write; {third}) {row['db_corrected_start_s']:.1f} s",
        flush=True,
    )
    lib.drop_all()
    lib.close()
    return row


def measure(size: int, queries: int, uri: str | None) -> dict[str, float]:
    known, persons, query = clustered(size, max(10, size // 50), queries, seed=size)
    start = time.perf_counter()
    index = PersonIndex(Rules.default())
    index.add_many(persons, known)
    build = time.perf_counter() - start
    exact = PersonIndex(Rules.default(), exact_limit=10**12)
    exact.add_many(persons, known)
    times = []
    same = 0
    for q in query:
        t = time.perf_counter()
        decision = index.decide(q)
        times.append(time.perf_counter() - t)
        same += decision.person_id == exact.decide(q).person_id
    # Keeping the index current: adding one face as the index worker does after deciding.
    t = time.perf_counter()
    for q in query[:100]:
        index.add("new", q)
    add = (time.perf_counter() - t) / min(100, len(query))
    row = {
        "faces": size,
        "persons": index.persons,
        "mode": "ivf" if index.approximate else "exact",
        "median_ms": float(np.median(times) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "add_ms": add * 1e3,
        "build_s": build,
        "bytes_per_face": index.memory_bytes() / len(index),
        "identical": same / len(query),
    }
    if uri:
        row.update(_from_database(uri, known, persons))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--mongodb-uri", default=None)
    args = parser.parse_args()
    print(
        f"{'faces':>9} {'persons':>8} {'mode':>5} {'median ms':>9} {'p99 ms':>7} {'add ms':>7} "
        f"{'build s':>8} {'B/face':>7} {'identical':>9}"
        + ("  db first start s  db start s" if args.mongodb_uri else "")
    )
    for size in args.sizes:
        r = measure(size, args.queries, args.mongodb_uri)
        line = (
            f"{r['faces']:9d} {r['persons']:8d} {r['mode']:>5} {r['median_ms']:9.3f} {r['p99_ms']:7.3f} "
            f"{r['add_ms']:7.3f} {r['build_s']:8.2f} {r['bytes_per_face']:7.0f} {r['identical']:9.2%}"
        )
        if "db_start_s" in r:
            line += f"  {r['db_first_start_s']:16.1f}  {r['db_start_s']:10.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
