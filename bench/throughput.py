"""Throughput of the FacePic chain on camera-sized photos: photos per second and time per stage.

    python bench/throughput.py --photos 40 --mode run       # embedded `facepic run`
    python bench/throughput.py --photos 40 --mode enqueue   # Celery workers on real servers
    python bench/throughput.py --photos 40 --mode both
    python bench/throughput.py --photos 100 --mode all     # and the naive script, with ratios
    python bench/throughput.py --photos 100 --mode all --rounds 3   # alternating, medians

`run` uses the embedded database and a folder store, all cores. `run` and the naive script are
each timed as a process of their own, from start to end, as a user waits for them. `enqueue` starts real Redis,
MongoDB wire and S3 servers on loopback (as the tests do), one CPU worker with `--cpu-procs`
processes and the index worker, waits until the CPU worker's processes have loaded their face
model (as running workers have), and times `facepic enqueue` until the last ledger line; then
again with `--disable-upload`, the same work as `run` (which has no bucket on the embedded
default), since the S3 server on these same cores spends about 18 ms of CPU storing an original.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench.corpus import build


def stage_table(lines: list[dict]) -> str:
    stages = ("detect", "thumbnails", "upload", "index")
    rows = []
    for stage in stages:
        values = [line["timings"][stage] for line in lines if stage in line.get("timings", {})]
        if values:
            rows.append(
                f"  {stage:<11} median {statistics.median(values) * 1000:7.1f} ms   "
                f"mean {statistics.mean(values) * 1000:7.1f} ms   (n={len(values)})"
            )
    return "\n".join(rows)


def finished_lines(ledger: Path) -> list[dict]:
    if not ledger.exists():
        return []
    lines = [json.loads(x) for x in ledger.read_text().splitlines() if x.strip()]
    return [x for x in lines if x["status"] in ("done", "failed")]


def run_embedded(photos: Path, workdir: Path, model: str) -> tuple[float, list[dict]]:
    """`facepic run` as a user runs it: a process of its own, timed from its start to its end
    (interpreter, imports, embedded database, pool, settle), as the naive script is."""
    env = {
        **os.environ,
        "FACEPIC_DATA_DIR": str(workdir / "data-run"),
        "FACEPIC_MODEL": model,
        "FACEPIC_MONGODB_URI": "",
        "FACEPIC_S3_ENDPOINT": "",
        "FACEPIC_S3_ACCESS_KEY_ID": "",
    }
    command = [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent", "run", str(photos)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=HERE.parent)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"facepic run failed:\n{result.stdout}{result.stderr}")
    return elapsed, finished_lines(workdir / "data-run" / "processed_log.jsonl")


def run_naive(photos: Path, workdir: Path) -> tuple[float, str]:
    """bench/naive.py in a process of its own, timed the same way."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(HERE / "naive.py"), str(photos)], capture_output=True, text=True, check=True, cwd=workdir
    )
    return time.perf_counter() - start, result.stdout.strip()


def peak_memory_mb(pid: int) -> dict[int, float]:
    """Peak resident memory (VmHWM) of a process and its children, in MB."""
    pids = [pid] + [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid]
    peaks = {}
    for child in pids:
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[child] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return peaks


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def run_distributed(
    photos: Path, workdir: Path, model: str, cpu_procs: int, upload: bool = True
) -> tuple[float, list[dict]]:
    from click.testing import CliRunner

    from tests import servers
    from workers.cli import cli

    workdir = workdir / ("enqueue" if upload else "enqueue-no-upload")
    workdir.mkdir()
    redis, redis_url = servers.start_redis(workdir)
    mongo, mongo_uri = servers.start_mongo(workdir)
    s3, endpoint = servers.start_s3(workdir)
    data = workdir / "data"
    env = {
        "FACEPIC_DATA_DIR": str(data),
        "FACEPIC_MODEL": model,
        "FACEPIC_REDIS_URL": redis_url + "/0",
        "FACEPIC_MONGODB_URI": mongo_uri,
        "FACEPIC_S3_ENDPOINT": endpoint,
        "FACEPIC_S3_ACCESS_KEY_ID": servers.S3_ACCESS_KEY,
        "FACEPIC_S3_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY,
    }
    workers = [
        servers.start_worker(env, workdir / "w-cpu", "cpu", "cpu,upload", cpu_procs),
        servers.start_worker(env, workdir / "w-index", "index", "index", 1),
    ]
    try:
        # The clock starts with the workers warm, as a user's running workers are: each CPU
        # worker process loads its face model as it starts (workers.tasks).
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline and workers[0].log.read_text(errors="replace").count("face model") < cpu_procs
        ):
            time.sleep(0.2)
        start = time.perf_counter()
        args = ["--env-file", "/nonexistent", "enqueue", str(photos)] + ([] if upload else ["--disable-upload"])
        result = CliRunner().invoke(cli, args, env=env, obj={})
        if result.exit_code != 0:
            raise SystemExit(f"facepic enqueue failed:\n{result.output}")
        total = len(list(photos.glob("*.jpg")))
        ledger = data / "processed_log.jsonl"
        while len(finished_lines(ledger)) < total:
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        peaks = peak_memory_mb(workers[0].proc.pid)
        print(
            "CPU worker peak memory: "
            + ", ".join(f"{mb:.0f} MB" for mb in sorted(peaks.values()))
            + " (main process and each pool process)"
        )
        return elapsed, finished_lines(ledger)
    finally:
        for w in workers:
            w.stop()
        for server in (redis, mongo, s3):
            server.stop()


def report(name: str, count: int, elapsed: float, lines: list[dict]) -> None:
    failed = sum(1 for x in lines if x["status"] == "failed")
    faces = sum(x.get("faces", 0) for x in lines)
    print(f"{name}: {count} photos, {faces} faces, {failed} failed, {elapsed:.1f} s, {count / elapsed:.2f} photos/s")
    print(stage_table(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--mode", choices=("run", "enqueue", "both", "all"), default="both")
    parser.add_argument("--model", default="buffalo_s")
    parser.add_argument("--cpu-procs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=1, help="repeat every path, alternating, and take medians")
    args = parser.parse_args()
    photos = build(args.photos)
    sizes = [p.stat().st_size for p in photos.glob("*.jpg")]
    print(f"corpus: {len(sizes)} photos 4032x3024, {sum(sizes) / len(sizes) / 1e6:.1f} MB each, {os.cpu_count()} cores")
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="facepic-bench-") as tmp:
        for n in range(args.rounds):
            workdir = Path(tmp) / f"round-{n}"
            workdir.mkdir()
            if args.rounds > 1:
                print(f"--- round {n + 1} of {args.rounds}")
            rounds.append(one_round(args, photos, workdir, len(sizes)))
    if args.rounds > 1:
        print(f"--- medians over {args.rounds} rounds (photos/s)")
        for path in rounds[0]:
            values = [r[path] for r in rounds]
            print(f"{path}: median {statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})")
    medians = {path: statistics.median(r[path] for r in rounds) for path in rounds[0]}
    ratios = [r["run"] / r["naive"] for r in rounds if "naive" in r]
    if ratios:
        print(f"facepic run throughput / naive throughput: {statistics.median(ratios):.2f}" + _each(ratios))
    if "enqueue" in medians and "run" in medians:
        ratios = [r["enqueue"] / r["run"] for r in rounds]
        print(f"enqueue throughput / run throughput: {statistics.median(ratios):.2f}" + _each(ratios))
        print("  (enqueue also uploads every original to the S3 server on these same cores)")
        ratios = [r["enqueue-no-upload"] / r["run"] for r in rounds]
        print(f"enqueue --disable-upload throughput / run throughput: {statistics.median(ratios):.2f}" + _each(ratios))
        print("  (the same work as run on the embedded default, which has no bucket)")


def _each(values: list[float]) -> str:
    return f" (rounds: {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""


def one_round(args: argparse.Namespace, photos: Path, workdir: Path, count: int) -> dict[str, float]:
    """Photos per second of each path asked for, run one after the other."""
    rates: dict[str, float] = {}
    if args.mode == "all":
        seconds, said = run_naive(photos, workdir)
        rates["naive"] = count / seconds
        print(f"naive script: {count} photos, {seconds:.1f} s, {count / seconds:.2f} photos/s (it says: {said})")
    if args.mode in ("run", "both", "all"):
        seconds, lines = run_embedded(photos, workdir, args.model)
        report("facepic run (embedded)", count, seconds, lines)
        rates["run"] = count / seconds
    if args.mode in ("enqueue", "both", "all"):
        seconds, lines = run_distributed(photos, workdir, args.model, args.cpu_procs)
        report(f"facepic enqueue ({args.cpu_procs} CPU processes + index worker)", count, seconds, lines)
        rates["enqueue"] = count / seconds
        # The same work as `run` on the embedded default, which has no bucket to upload to:
        # the S3 server shares these cores, and storing an original costs it about 18 ms.
        seconds, lines = run_distributed(photos, workdir, args.model, args.cpu_procs, upload=False)
        report("facepic enqueue --disable-upload", count, seconds, lines)
        rates["enqueue-no-upload"] = count / seconds
    return rates


if __name__ == "__main__":
    main()
