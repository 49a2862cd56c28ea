"""`facepic run` against the machine's own ceiling: the CPU stages alone in as many processes
as cores (``bench/scaleout.py``'s pipeline phase), then the product on the same photos, in
alternating rounds of one sitting, and the ratio of their photos per second.

    python bench/ceiling.py                                   # 120 camera photos, 3 rounds
    python bench/ceiling.py --corpus ../shared/lfw-dev --photos 1705
    python bench/ceiling.py --photos 300 --rounds 5
    python bench/ceiling.py --before /tmp/before             # and older code, in the same rounds

``--before`` names another checkout (``git worktree add /tmp/before <commit>``): each round
then times its `facepic run` too, on the same photos, against the same ceiling, the two in
alternating order, for a before and after from one sitting.

The ceiling is the pipeline phase of ``bench/scaleout.py --procs <cores>``: decode, models,
quality, thumbnail and crops in memory, models loaded and warmed up before the clock starts,
no disk, no database. `facepic run` is timed as a user waits for it, from the command to its
exit, as the `facepic` console script a user types (start-up, the model's load, the index and
ledger, the settle and the shutdown included),
on a fresh data folder, the embedded database and no bucket, one process per core. A run over
the first photos before the rounds, not timed, fills OpenVINO's cache of compiled models (beside
the model packs), as any earlier run of a user's has.

A machine shared with something else moves both figures; the rounds alternate so that both
see the same drift, and the medians are printed. Each round also prints the CPU both took, in
core-seconds (the ceiling's processes in their timed phase; `facepic run`'s whole tree, its
pool and fork server included, from the kernel's accounting of the children it waited for),
and their ratio: a figure that moves much less than the wall clock between rounds, so a change
of a few percent shows in one sitting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench import scaleout
from bench.cli import console_script


def ceiling(files: list[Path], shared: dict, cores: int) -> tuple[float, float]:
    """Photos per second of the CPU stages alone, ``cores`` processes; their core-seconds."""
    measured = scaleout.measure(cores, files, shared)
    return measured["rate"], measured["cpu"]


def children_cpu() -> float:
    """Core-seconds of this process's children (and theirs) that have ended and been waited for."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def adopt_orphans() -> bool:
    """Become the reaper of this process's descendants left without a parent (Linux's
    PR_SET_CHILD_SUBREAPER): `facepic run` ends before its fork server and pool processes, which
    would otherwise end as init's children, their CPU counted nowhere here."""
    if not next(Path("/proc/self/task").glob("*/children"), None):
        return False  # no list of a process's children (a kernel without CONFIG_PROC_CHILDREN)
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return pids


def reap(known: set[int]) -> None:
    """Wait for the children other than ``known`` (the orphans adopted), until none is left."""
    while extra := children() - known:
        for pid in extra:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def product(
    files: list[Path], model: str, scratch: Path, cores: int, name: str = "photos", code: Path = HERE.parent
) -> tuple[float, str, float]:
    """Photos per second of `facepic run` (the checkout at ``code``) over ``files`` (hard-linked,
    else copied, into one folder), start to exit; its summary line; the core-seconds it took."""
    photos = scratch / name
    if not photos.exists():
        photos.mkdir(parents=True)
        for i, f in enumerate(files):
            target = photos / f"{i:06d}{f.suffix.lower()}"
            try:
                os.link(f, target)
            except OSError:
                shutil.copyfile(f, target)
    # A fresh data folder each time, the earlier ones kept until the end: on ext4 without a
    # journal (this machine kind's disk) a file created within minutes of thousands deleted
    # costs up to 0.5 ms of CPU instead of 0.02 (the allocator steps over each recently freed
    # inode), a cost the product would then pay for the bench's own deletions.
    data = Path(tempfile.mkdtemp(prefix="data-", dir=scratch))
    env = {
        **os.environ,
        "PYTHONPATH": str(code),  # this checkout's code, whatever the install points at
        "FACEPIC_DATA_DIR": str(data),
        "FACEPIC_MODEL": model,
        "FACEPIC_MODEL_ROOT": str(scratch / "models"),
        "FACEPIC_WORKERS": str(cores),
        "FACEPIC_MONGODB_URI": "",
        "FACEPIC_S3_ENDPOINT": "",
        "FACEPIC_S3_ACCESS_KEY_ID": "",
        "FACEPIC_S3_SECRET_ACCESS_KEY": "",
    }
    for key in scaleout.ONE_THREAD:
        env.pop(key, None)  # the product sets its own threads
    known, cpu = children(), children_cpu()
    started = time.perf_counter()
    # From a neutral folder: the pool's fork server puts its working folder first on its path,
    # so from a checkout's root the pool would run that checkout's code whatever ``code`` says.
    done = subprocess.run([*console_script(), "run", str(photos)], env=env, capture_output=True, text=True, cwd=scratch)
    wall = time.perf_counter() - started
    reap(known)  # its fork server and pool processes, adopted
    cpu = children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"facepic run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = next((line for line in (done.stdout + done.stderr).splitlines() if line.startswith("photos ")), "")
    return len(files) / wall, summary, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--corpus", type=Path, help="folder of photos (default bench/corpus/scaleout-N, camera-sized)")
    parser.add_argument("--sources", type=Path, default=HERE.parent / "tests" / "photos")
    parser.add_argument("--model", default="buffalo_s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout, timed in the same rounds")
    args = parser.parse_args()

    from facepic.models import resolve
    from facepic.runtime import Runtime

    cores = os.cpu_count() or 1
    if not adopt_orphans():
        print("(the CPU of `facepic run` is its main process's alone: this system cannot adopt and list orphans)")
    folder = args.corpus or HERE / "corpus" / f"scaleout-{args.photos}"
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith("."))
    if len(files) < args.photos and args.corpus is None:
        files = scaleout.corpus_files(folder, args.photos, args.sources, cores)
    files = files[: args.photos]
    if not files:
        raise SystemExit(f"no photos under {folder}")
    scratch = Path(tempfile.mkdtemp(prefix="facepic-ceiling-"))
    (scratch / "models").mkdir()
    choice = resolve(args.model, scratch / "models")
    runtime = Runtime.resolve("openvino", 1, None)
    shared = {"choice": choice, "runtime": runtime, "model_iters": 1, "opencv_threads": 1}
    saved = {k: os.environ.get(k) for k in scaleout.ONE_THREAD}
    sizes = [p.stat().st_size for p in files]
    print(
        f"{scaleout.cpu_name()}, {cores} cores; {dataclasses.replace(runtime).describe()}; model {choice.name}\n"
        f"corpus: {len(files)} photos from {folder}, {sum(sizes) / len(sizes) / 1e6:.2f} MB each",
        flush=True,
    )
    ratios, ceilings, runs, cpu_ratios = [], [], [], []
    before: list[float] = []
    before_cpu: list[float] = []
    older = args.before.absolute() if args.before else None
    try:
        product(files[:4], args.model, scratch, cores, "warm-up")
        if older:
            product(files[:4], args.model, scratch, cores, "warm-up", older)
        for r in range(1, args.rounds + 1):
            os.environ.update(scaleout.ONE_THREAD)  # the spawned stage processes inherit one thread
            top, top_cpu = ceiling(files, shared, cores)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            old, old_cpu = 0.0, 0.0
            if older and r % 2 == 0:  # the two checkouts take turns at going first
                old, _, old_cpu = product(files, args.model, scratch, cores, code=older)
            rate, summary, cpu = product(files, args.model, scratch, cores)
            if older and r % 2 == 1:
                old, _, old_cpu = product(files, args.model, scratch, cores, code=older)
            ratios.append(rate / top)
            ceilings.append(top)
            runs.append(rate)
            cpu_ratios.append(top_cpu / cpu)
            print(
                f"round {r}: ceiling {top:.1f} photos/s ({len(files) / top:.2f} s, {top_cpu:.2f} core-s), "
                f"facepic run {rate:.1f} photos/s ({len(files) / rate:.2f} s, {cpu:.2f} core-s): "
                f"{rate / top:.2f}x, CPU {top_cpu / cpu:.2f}x  [{summary}]",
                flush=True,
            )
            if older:
                before.append(old / top)
                before_cpu.append(top_cpu / old_cpu)
                print(
                    f"         before: {old:.1f} photos/s ({len(files) / old:.2f} s, {old_cpu:.2f} core-s): "
                    f"{old / top:.2f}x, CPU {top_cpu / old_cpu:.2f}x",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"\nmedian of {len(ratios)}: ceiling {statistics.median(ceilings):.1f} photos/s, facepic run "
        f"{statistics.median(runs):.1f} photos/s, ratio {statistics.median(ratios):.2f}x "
        f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}); CPU ratio {statistics.median(cpu_ratios):.2f}x "
        f"(rounds {', '.join(f'{x:.2f}' for x in cpu_ratios)})"
    )
    if before:
        print(
            f"before ({args.before}): ratio {statistics.median(before):.2f}x "
            f"(rounds {', '.join(f'{x:.2f}' for x in before)}); CPU ratio {statistics.median(before_cpu):.2f}x "
            f"(rounds {', '.join(f'{x:.2f}' for x in before_cpu)})"
        )


if __name__ == "__main__":
    main()
