"""How fast the command line answers, as a user meets it: each command a fresh process of the
`facepic` console script (`workers.cli:main`) on a scratch data folder (embedded database,
no bucket), against u = this machine's `python -c "import click"`.

    python bench/cli.py                          # tests/photos
    python bench/cli.py --photos ../shared/photos --rounds 7

Rows: u; `--version`, `--help`, `status`, `persons`, `persons --json` (medians over rounds, in
seconds and in multiples of u); the first `run` over the folder, and a re-run with nothing
new (the median of the re-runs, in seconds and as a share of the first run). `persons` is
timed three ways: the first after the run (it starts the lingering embedded server), the next
ones (through it), and with FACEPIC_DB_LINGER=0 (each starts and stops its own). The code timed
is this checkout's (PYTHONPATH is set to it), whatever the virtualenv's install points at.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parent


def console_script() -> list[str]:
    """The `facepic` console script beside this Python, or the same entry point by hand."""
    script = Path(sys.executable).parent / "facepic"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from workers.cli import main; sys.exit(main())"]


def timed(argv: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


def stop_lingering(data: Path) -> None:
    """Stop the embedded server a command left up on ``data``, if any."""
    import json
    import signal

    try:
        os.kill(int(json.loads((data / "serving.json").read_text())["pid"]), signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass


def median(argv: list[str], env: dict[str, str], cwd: Path, rounds: int) -> float:
    return statistics.median(timed(argv, env, cwd) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "tests" / "photos", help="the folder to run on")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each quick command (median)")
    parser.add_argument("--reruns", type=int, default=3, help="re-runs with nothing new (median)")
    parser.add_argument("--model", default="buffalo_s")
    args = parser.parse_args()
    photos = args.photos.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="facepic-bench-cli-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FACEPIC_DATA_DIR": str(scratch / "data"),
        "FACEPIC_MODEL": args.model,
        "FACEPIC_MONGODB_URI": "",
        "FACEPIC_S3_ENDPOINT": "",
        "FACEPIC_S3_ACCESS_KEY_ID": "",
        "FACEPIC_S3_SECRET_ACCESS_KEY": "",
    }
    facepic = console_script()
    try:
        u = median([sys.executable, "-c", "import click"], env, scratch, args.rounds)
        rows: list[tuple[str, float]] = [
            ("--version", median([*facepic, "--version"], env, scratch, args.rounds)),
            ("--help", median([*facepic, "--help"], env, scratch, args.rounds)),
        ]
        first = timed([*facepic, "run", str(photos)], env, scratch, check=False)
        reruns = [timed([*facepic, "run", str(photos)], env, scratch, check=False) for _ in range(args.reruns)]
        rerun = statistics.median(reruns)
        rows.append(("status", median([*facepic, "status"], env, scratch, args.rounds)))
        alone = {**env, "FACEPIC_DB_LINGER": "0"}
        rows.append(("persons (no linger)", median([*facepic, "persons"], alone, scratch, args.rounds)))
        rows.append(("persons (starts the server)", timed([*facepic, "persons"], env, scratch)))
        for name in ("persons", "persons --json"):
            rows.append((name, median([*facepic, *name.split()], env, scratch, args.rounds)))
    finally:
        stop_lingering(scratch / "data")
        shutil.rmtree(scratch, ignore_errors=True)
    files = sum(1 for p in photos.rglob("*") if p.is_file())
    print(f"folder {photos} ({files:,} files), {os.cpu_count()} cores; medians of {args.rounds} rounds")
    label = "u (python -c 'import click')"
    print(f"{label:32s} {u:7.3f} s")
    for name, seconds in rows:
        print(f"{'facepic ' + name:32s} {seconds:7.3f} s  {seconds / u:6.1f} u")
    print(f"{'facepic run (first)':32s} {first:7.3f} s")
    print(f"{'facepic run (nothing new)':32s} {rerun:7.3f} s  {100 * rerun / first:5.1f}% of the first")


if __name__ == "__main__":
    main()
