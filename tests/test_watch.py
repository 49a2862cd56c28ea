"""`facepic run --watch`: photos copied in while it runs are each taken once, and only once
they have stopped changing (one written slowly, in pieces, is not taken half-written); a
summary line per batch; Ctrl-C is the run's one line and exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import ledger_lines, settings_of, wait_until
from tests.test_faults import distinct_photos, no_traceback


def _watching(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`facepic COMMAND --watch` looking every half second, in a process group of its own (as a
    terminal's foreground job, for Ctrl-C)."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "facepic"), "--env-file", "/nonexistent/.env", command[0], "--watch"]
        + ["--interval", "0.5", *command[1:]],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _done(settings: Any) -> list[str]:
    return sorted(x["path"] for x in ledger_lines(settings) if x["status"] == "done")


def _interrupted(proc: subprocess.Popen, inbox: Path) -> tuple[str, str]:
    """Ctrl-C to a watcher of ``inbox``: it stops with 130, no traceback, having said what it
    watched. Its output and errors."""
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    no_traceback(out + err)
    assert f"watching {inbox}" in err
    return out, err


def test_a_watched_folder_takes_photos_as_they_arrive(offline_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "source"
    names = distinct_photos(source, 3)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    proc = _watching(["run", str(inbox)], offline_env)
    settings = settings_of(offline_env)

    def done() -> list[str]:
        return _done(settings)

    try:
        # The first photo arrives slowly, in pieces over three seconds, as a copy from a
        # network drive does: half of it must never be taken.
        data = (source / names[0]).read_bytes()
        for name in names:
            (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        with open(inbox / names[0], "wb") as f:
            for start in range(0, len(data), len(data) // 6 + 1):
                f.write(data[start : start + len(data) // 6 + 1])
                f.flush()
                time.sleep(0.5)
        wait_until(lambda: done() == [names[0]], "the first photo", timeout=120)
        for name in names[1:]:
            (inbox / name).write_bytes((source / name).read_bytes())
            time.sleep(0.3)
        wait_until(lambda: done() == sorted(names), "every photo", timeout=120)
    finally:
        out, err = _interrupted(proc, inbox)
    assert "interrupted: what was finished is kept" in err
    assert "error" not in err.lower(), err  # no photo failed (half-written, or changed while read)
    assert [line for line in out.splitlines() if line.startswith("photos ")], out  # a summary per batch
    statuses = [x["status"] for x in ledger_lines(settings) if x.get("path") in names]
    assert statuses.count("done") == len(names)  # each once


def test_the_readmes_mount_unit_runs_an_enqueue_that_says_when_the_drive_is_missing(tmp_path: Path) -> None:
    """The README's systemd unit runs `facepic enqueue MOUNTPOINT`: that command, pointed at a
    drive that is not there, is the one clear line, not a traceback (what the unit's log shows)."""
    from tests.conftest import REPO, invoke

    readme = (REPO / "README.md").read_text()
    unit = readme.split("# /etc/systemd/system/facepic-drive.service")[1].split("```")[0]
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    program, command, mountpoint = exec_start.removeprefix("ExecStart=").split()
    assert program.endswith("/.venv/bin/facepic") and command == "enqueue"
    assert f"Requires={mountpoint.strip('/').replace('/', '-')}.mount" in unit
    missing = tmp_path / "media" / "photos"
    env = {"FACEPIC_DATA_DIR": str(tmp_path / "data"), "FACEPIC_MONGODB_URI": "mongodb://127.0.0.1:9/"}
    result = invoke(env, command, str(missing))
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith(f"Error: import folder {missing}"), result.output


def test_enqueue_watch_queues_photos_as_they_arrive_for_the_workers(
    server_env: dict[str, str], workers: list, tmp_path: Path
) -> None:
    """The distributed path: `facepic enqueue --watch` queues each photo copied in while it
    runs, once, and the workers finish them."""
    source = tmp_path / "source"
    names = distinct_photos(source, 2)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    proc = _watching(["enqueue", str(inbox)], {**os.environ, **server_env})
    settings = settings_of(server_env)

    def done() -> list[str]:
        return _done(settings)

    try:
        for name in names:
            (inbox / name).parent.mkdir(parents=True, exist_ok=True)
            (inbox / name).write_bytes((source / name).read_bytes())
            time.sleep(0.5)
        wait_until(lambda: done() == sorted(names), "the workers to finish both photos", timeout=180)
    finally:
        out, err = _interrupted(proc, inbox)
    assert [line for line in out.splitlines() if line.startswith("photos ")], out
    queued = [x for x in ledger_lines(settings) if x.get("path") in names and x["status"] == "queued"]
    assert len(queued) == len(names)  # each queued once, however many looks saw it
