"""Throughput of the FacePic chain on camera-sized photos: photos per second and time per stage.

    python bench/throughput.py --photos 40 --mode run       # embedded `facepic run`
    python bench/throughput.py --photos 40 --mode enqueue   # Celery workers on real servers
    python bench/throughput.py --photos 40 --mode both
    python bench/throughput.py --photos 100 --mode all     # and the naive script, with ratios

`run` uses the embedded database and a folder store, all cores. `enqueue` starts real Redis,
MongoDB wire and S3 servers on loopback (as the tests do), one CPU worker with `--cpu-procs`
processes and the index worker, waits until the CPU worker's processes have loaded their face
model (as running workers have), and times `facepic enqueue` until the last ledger line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    from click.testing import CliRunner

    from workers.cli import cli

    env = {
        "FACEPIC_DATA_DIR": str(workdir / "data-run"),
        "FACEPIC_MODEL": model,
        "FACEPIC_MONGODB_URI": "",
        "FACEPIC_S3_ENDPOINT": "",
        "FACEPIC_S3_ACCESS_KEY_ID": "",
    }
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "run", str(photos)], env=env, obj={})
    elapsed = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"facepic run failed:\n{result.output}")
    return elapsed, finished_lines(workdir / "data-run" / "processed_log.jsonl")


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


def run_distributed(photos: Path, workdir: Path, model: str, cpu_procs: int) -> tuple[float, list[dict]]:
    from click.testing import CliRunner

    from tests import servers
    from workers.cli import cli

    redis, redis_url = servers.start_redis(workdir)
    mongo, mongo_uri = servers.start_mongo(workdir)
    s3, endpoint = servers.start_s3(workdir)
    env = {
        "FACEPIC_DATA_DIR": str(workdir / "data-enqueue"),
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
        result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "enqueue", str(photos)], env=env, obj={})
        if result.exit_code != 0:
            raise SystemExit(f"facepic enqueue failed:\n{result.output}")
        total = len(list(photos.glob("*.jpg")))
        ledger = workdir / "data-enqueue" / "processed_log.jsonl"
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
    args = parser.parse_args()
    photos = build(args.photos)
    sizes = [p.stat().st_size for p in photos.glob("*.jpg")]
    print(f"corpus: {len(sizes)} photos 4032x3024, {sum(sizes) / len(sizes) / 1e6:.1f} MB each, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="facepic-bench-") as tmp:
        workdir = Path(tmp)
        results = {}
        if args.mode == "all":
            from bench.naive import run as naive_run

            seconds, count, faces = naive_run(photos, workdir)
            results["naive"] = (seconds, [])
            print(f"naive script: {count} photos, {faces} faces, {seconds:.1f} s, {count / seconds:.2f} photos/s")
        if args.mode in ("run", "both", "all"):
            results["run"] = run_embedded(photos, workdir, args.model)
            report("facepic run (embedded)", len(sizes), *results["run"])
        if args.mode in ("enqueue", "both", "all"):
            results["enqueue"] = run_distributed(photos, workdir, args.model, args.cpu_procs)
            report(f"facepic enqueue ({args.cpu_procs} CPU processes + index worker)", len(sizes), *results["enqueue"])
        if "naive" in results:
            print(f"facepic run throughput / naive throughput: {results['naive'][0] / results['run'][0]:.2f}")
        if "run" in results and "enqueue" in results:
            ratio = results["run"][0] / results["enqueue"][0]
            print(f"enqueue throughput / run throughput: {ratio:.2f}")


if __name__ == "__main__":
    main()
