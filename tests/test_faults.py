"""Fault injection: a full disk, a read-only data folder, dead pool processes, a killed run,
links out of the import folder, special files, and a bucket shared with another library.

Each test reproduces a probe that broke FacePic before (issue "Nothing lost under faults,
part two"). A full disk is a real small tmpfs mounted by the test (root, as in CI); a process
killed by the OOM killer is a real SIGKILL, sent from inside the decoder by a
`sitecustomize` on the run's PYTHONPATH, which every pool process imports at start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from facepic.errors import DataFolderError
from facepic.ledger import Ledger
from facepic.storage import open_store
from tests.conftest import PHOTOS, REPO, invoke, ledger_lines, running, settings_of, wait_until

FAULTS = """
import os, signal
from pathlib import Path

_dir = os.environ.get("FAULT_DIR")
if _dir:
    import facepic.decode as _decode

    _real = _decode.decode

    def decode(path, *args, **kwargs):
        name = Path(path).name
        if name.startswith("poison"):  # a decoder that crashes its process every time
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("oom"):  # killed once, as the OOM killer would
            flag = Path(_dir) / (name + ".killed")
            if not flag.exists():
                flag.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("slow"):
            import time
            time.sleep(0.5)
        if os.environ.get("FAULT_JITTER"):  # photos finish in a random order
            import random, time
            time.sleep(random.uniform(0, float(os.environ["FAULT_JITTER"])))
        decoded = _real(path, *args, **kwargs)
        flag = Path(_dir) / (name + ".changed")
        if name.startswith("changing") and not flag.exists():  # rewritten after its scan, once
            flag.touch()
            data = bytearray(Path(path).read_bytes())  # the same size, other bytes
            data[-3] ^= 0xFF
            Path(path).write_bytes(bytes(data))
        return decoded

    _decode.decode = decode

    _real_read = _decode.read_photo

    def read_photo(path, *args, **kwargs):
        finished = Path(_dir) / (Path(path).name + ".full")
        if finished.exists():  # still being written when its scan hashed it: written now, once
            Path(path).write_bytes(finished.read_bytes())
            finished.unlink()
        return _real_read(path, *args, **kwargs)

    _decode.read_photo = read_photo

    if os.environ.get("FAULT_SLOW_SCAN"):  # a scan slow enough to be interrupted in
        import time as _time

        import facepic.ids as _ids

        _real_hash = _ids.sha256_file

        def sha256_file(*args, **kwargs):
            _time.sleep(float(os.environ["FAULT_SLOW_SCAN"]))
            return _real_hash(*args, **kwargs)

        _ids.sha256_file = sha256_file

    if os.environ.get("FAULT_SLOW_MODEL"):  # pool processes slow to load the model
        import time as _time

        import facepic.context as _context

        _real_engine = _context.Context.engine

        def engine(self, *args, **kwargs):
            _time.sleep(float(os.environ["FAULT_SLOW_MODEL"]))
            return _real_engine(self, *args, **kwargs)

        _context.Context.engine = engine
"""


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """mount(size) -> a fresh tmpfs of that size, unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode != 0:
            if os.environ.get("CI"):
                raise AssertionError(f"CI runs as root and must mount a tmpfs: {result.stderr}")
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def distinct_photos(target: Path, count: int, prefix: str = "", start: int = 0) -> list[str]:
    """``count`` distinct photos with a face: the labelled photos re-encoded at other qualities."""
    sources = sorted(PHOTOS.glob("*/*.jpg"))
    names = []
    for n in range(start, start + count):
        src = sources[n % len(sources)]
        path = f"{src.parent.name}/{prefix}{n:03d}-{src.name}"
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        Image.open(src).save(target / path, "JPEG", quality=80 + n // len(sources))
        names.append(path)
    return names


def run_cli(
    env: dict[str, str], *args: str, faults: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`facepic ARGS` in a process of its own, as a user runs it (pool processes and all)."""
    full = with_faults(env, faults) if faults is not None else {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_faults(env: dict[str, str], faults: Path, **extra: str) -> dict[str, str]:
    """The environment of a `facepic` process whose every process imports FAULTS first."""
    faults.mkdir(exist_ok=True)
    (faults / "sitecustomize.py").write_text(FAULTS)
    return {
        **os.environ,
        **env,
        "PYTHONUNBUFFERED": "1",
        "FAULT_DIR": str(faults),
        "PYTHONPATH": os.pathsep.join([str(faults), str(REPO)]),
        **extra,
    }


def no_traceback(output: str) -> None:
    assert "Traceback" not in output and "WT_VERB" not in output and "WT_PANIC" not in output, output[-3000:]


# --- 1. the ledger on a full disk -------------------------------------------------------------


def test_a_full_disk_never_costs_the_ledger_a_complete_entry(tmpfs) -> None:  # type: ignore[no-untyped-def]
    disk = tmpfs("64k")
    ledger = Ledger(disk / "processed_log.jsonl")
    written = []
    (disk / "filler").write_bytes(b"x" * (64 * 1024 - 6 * 4096))  # leave a few pages
    with pytest.raises(DataFolderError, match="is full"):
        for n in range(10_000):
            entry = {"path": f"photo-{n}.jpg", "root": "/r", "status": "done", "note": "x" * 500}
            ledger.append(entry)
            written.append(entry["path"])
    assert written, "the disk was full before the first entry"
    # The failed append left nothing behind: the file ends with a complete line.
    assert ledger.path.read_bytes().endswith(b"\n")
    (disk / "filler").unlink()  # space comes back
    ledger.append({"path": "after.jpg", "root": "/r", "status": "done"})
    lines = [json.loads(line) for line in ledger.path.read_text().splitlines()]  # every line parses
    assert [x["path"] for x in lines] == [*written, "after.jpg"]


def test_a_torn_tail_is_cut_before_the_next_append(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "processed_log.jsonl")
    ledger.append({"path": "a.jpg", "root": "/r", "status": "done"})
    with open(ledger.path, "ab") as f:
        f.write(b'{"path": "b.jpg", "ro')  # a crash mid-append
    ledger.append({"path": "c.jpg", "root": "/r", "status": "done"})
    assert [json.loads(x)["path"] for x in ledger.path.read_text().splitlines()] == ["a.jpg", "c.jpg"]


# --- 2. a full or read-only data folder stops the run with one line ----------------------------------


def test_a_full_data_folder_stops_run_with_one_line_and_the_next_run_resumes(offline_env, tmp_path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    disk = tmpfs("1m")
    root = tmp_path / "drive"
    names = distinct_photos(root, 40)
    env = {**offline_env, "FACEPIC_DATA_DIR": str(disk / "data")}
    first = run_cli(env, "run", str(root))
    output = first.stdout + first.stderr
    assert first.returncode == 1, output
    no_traceback(output)
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: the data folder {disk / 'data'} is full (no space left on its disk): free some "
        "space there, or set FACEPIC_DATA_DIR to a folder on another disk, then run again: it "
        "resumes where it stopped"
    ]
    done_before = {x["path"] for x in ledger_lines(settings_of(env)) if x["status"] == "done"}  # all parse
    assert len(done_before) < len(names)

    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)  # space is freed
    again = run_cli(env, "run", str(root))
    assert again.returncode == 0, again.stdout + again.stderr
    no_traceback(again.stdout + again.stderr)
    assert f"photos {len(names)}: done {len(names) - len(done_before)} " in again.stdout
    lines = ledger_lines(settings_of(env))
    done = [x["path"] for x in lines if x["status"] == "done"]
    assert sorted(done) == sorted(names)  # each photo done exactly once
    status = invoke(env, "status")
    assert f"photos {len(names)}: done {len(names)} (faces {len(names)}, no face 0)" in status.output


def test_a_disk_that_fills_as_the_run_ends_loses_no_photo_logged_done(offline_env, tmp_path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    """The embedded database once kept its last writes in memory: a run that filled the disk near
    its end said "done 21" while its database, reopened, held 16 or 17 of them (and `facepic
    persons` on the full disk printed a WiredTiger panic). Every photo the ledger calls done is
    stored, and a full disk is one line for every command."""
    from facepic.context import Context
    from facepic.embedded import embedded_database

    disk = tmpfs("1m")
    root = tmp_path / "drive"
    for n in range(3):
        shutil.copytree(PHOTOS, root / f"copy{n}")
    env = {**offline_env, "FACEPIC_DATA_DIR": str(disk / "data")}
    first = run_cli(env, "run", str(root))
    output = first.stdout + first.stderr
    no_traceback(output)
    assert first.returncode in (0, 1) and ("done" in first.stdout or "is full" in output), output
    persons = run_cli(env, "persons")
    no_traceback(persons.stdout + persons.stderr)
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    done = {x["image_id"] for x in ledger_lines(settings_of(env)) if x["status"] == "done"}
    with embedded_database(settings_of(env)) as settings, Context(settings) as ctx:
        stored = {doc["_id"] for doc in ctx.library.images.find({}, {"_id": 1})}
    assert done and done <= stored, f"{len(done - stored)} of {len(done)} photos logged done are not stored"


def test_a_read_only_data_folder_is_one_clear_error(offline_config, tmp_path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    disk = tmpfs("4m")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    root = tmp_path / "drive"
    distinct_photos(root, 2)
    result = run_cli({**offline_config, "FACEPIC_DATA_DIR": str(disk / "data")}, "run", str(root))
    assert result.returncode == 1
    no_traceback(result.stdout + result.stderr)
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: the data folder {disk / 'data'} is on a read-only file system: set FACEPIC_DATA_DIR to a "
        "writable folder"
    )


# --- 3. dead pool processes ----------------------------------------------------------------------


def test_a_pool_process_killed_once_costs_nothing_and_a_crashing_photo_fails_alone(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "drive"
    names = distinct_photos(root, 12)
    for src, name in (("tom_hanks/07.jpg", "oom-07.jpg"), ("tom_hanks/08.jpg", "poison-08.jpg")):
        Image.open(PHOTOS / src).save(root / name, "JPEG", quality=77)
    result = run_cli({**offline_env, "FACEPIC_WORKERS": "2"}, "run", str(root), faults=tmp_path / "faults")
    output = result.stdout + result.stderr
    assert (tmp_path / "faults" / "oom-07.jpg.killed").exists(), "the fault was never injected"
    assert result.returncode == 1, output
    no_traceback(output)
    assert [line for line in output.splitlines() if line.startswith("error:")] == [
        f"error: cannot process {root / 'poison-08.jpg'}: the process analysing it died twice (killed by the "
        "system, for example for lack of memory, or a crash in a decoder)"
    ]
    assert (
        f"photos {len(names) + 2}: done {len(names) + 1} (faces {len(names) + 1}, no face 0), already done 0, "
        "duplicates 0, failed 1" in result.stdout
    )
    final = {x["path"]: x for x in ledger_lines(settings_of(offline_env))}
    assert final["oom-07.jpg"]["status"] == "done" and final["oom-07.jpg"]["faces"] == 1
    assert final["poison-08.jpg"]["status"] == "failed"


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_killing_run_takes_its_pool_processes_down(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "drive"
    distinct_photos(root, 30, prefix="slow-")
    env = with_faults({**offline_env, "FACEPIC_WORKERS": "2"}, tmp_path / "faults")
    proc = subprocess.Popen(
        [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", "run", str(root)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ledger = settings_of(offline_env).ledger_path
    try:
        wait_until(lambda: ledger.exists() and b'"done"' in ledger.read_bytes(), "the run to finish a photo")
        children = _descendants(proc.pid)
        assert len(children) >= 2, "no pool processes found"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until(lambda: not any(running(c) for c in children), "the pool processes to exit", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_run_killed_as_it_logs_photos_done_lost_none_of_them(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`facepic run` writes to its embedded database without waiting for the log at each write
    (journal=false) and flushes it once a batch, before the ledger calls its photos done. Killed
    with -9 just after the ledger grew, every photo it calls done is stored, and the next run
    does the rest, each photo once."""
    from facepic.context import Context
    from facepic.embedded import embedded_database

    root = tmp_path / "drive"
    # Photos taking half a second among them: the pool cannot have every photo analysed by the
    # time the first ones are logged, so the kill comes with photos still to log.
    names = distinct_photos(root, 40) + distinct_photos(root, 8, prefix="slow-", start=40)
    env = {**offline_env, "FACEPIC_WORKERS": "2"}
    settings = settings_of(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", "run", str(root)],
        env=with_faults(env, tmp_path / "faults"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: settings.ledger_path.exists() and b'"done"' in settings.ledger_path.read_bytes(), "a photo done"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {x["image_id"] for x in ledger_lines(settings) if x["status"] == "done"}
    with embedded_database(settings) as opened, Context(opened) as ctx:
        stored = {doc["_id"] for doc in ctx.library.images.find({}, {"_id": 1})}
        faces = {doc["image_id"] for doc in ctx.library.faces.find({}, {"image_id": 1})}
    assert done and done <= stored, f"{len(done - stored)} of {len(done)} photos logged done are not stored"
    assert done <= faces, f"{len(done - faces)} of {len(done)} photos logged done have no face stored"
    assert len(done) < len(names), "the run finished before it was killed"
    again = run_cli(env, "run", str(root))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"photos {len(names)}: done {len(names) - len(done)} " in again.stdout, again.stdout
    lines = [x["path"] for x in ledger_lines(settings) if x["status"] == "done"]
    assert sorted(lines) == sorted(names)  # each photo done exactly once


def test_the_run_flushes_its_database_once_before_the_ledger_calls_a_batch_done(offline_env) -> None:  # type: ignore[no-untyped-def]
    """What makes the test above hold through a power cut as well: with the embedded server's
    writes not waiting for its log (journal=false, `facepic run`), the log stage makes one write
    that does (j: true) before it appends the batch's lines; a client that waits at every write
    (the default, MongoDB's) makes none."""
    from pymongo import monitoring

    from facepic.context import Context
    from facepic.embedded import embedded_database
    from facepic.pipeline import log

    seen: list[tuple[str, dict]] = []

    class Commands(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name in ("update", "insert"):
                seen.append((event.command_name, dict(event.command.get("writeConcern") or {})))

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(Commands())  # for every client made from here on, in this process
    settings = settings_of(offline_env)
    job = {"root": "/r", "path": "a.jpg", "sha256": "0" * 64, "image_id": "i" * 32, "faces": 0}
    for journal in (False, True):
        with embedded_database(settings, alone=True, journal=journal) as opened, Context(opened) as ctx:
            ctx.library.meta.insert_one({"_id": f"before-{journal}"})
            seen.clear()
            lines = len(ledger_lines(settings))
            log.log_batch(ctx, [dict(job, path=f"{journal}.jpg")])
            assert len(ledger_lines(settings)) == lines + 1
            flushes = [wc for name, wc in seen if wc.get("j") is True]
            assert len(flushes) == (0 if journal else 1), seen


def test_a_process_that_ended_unreaped_is_not_alive() -> None:
    """The pool's watch of its run: a run that ended but whose parent has not reaped it yet (a
    program reading its output first) is a zombie, and its pool processes must end all the
    same (they held that output open, and the program waited for them)."""
    from facepic.procs import alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert alive(child.pid)
        child.kill()
        wait_until(lambda: not running(child.pid), "the child to become a zombie", timeout=10)
        assert Path(f"/proc/{child.pid}").exists()  # not reaped yet
        assert not alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not alive(child.pid)
    assert alive(os.getpid())


@pytest.mark.parametrize("moment", ["fork server", "model load"])
def test_ctrl_c_while_the_pool_starts_is_one_line_and_the_run_goes_on_next_time(offline_env, tmp_path, moment) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C right after the model line, while the fork server starts the pool processes (a
    traceback from the thread starting them, before), or while those load the model (a
    traceback from each, before): one line, exit 130, nothing left running; the same command
    then does every photo once."""
    root = tmp_path / "drive"
    names = distinct_photos(root, 6)
    # FAULT_SLOW_SCAN: the photos still being hashed when Ctrl-C comes, the pool starting.
    faults = {"FAULT_SLOW_SCAN": "1"} | ({"FAULT_SLOW_MODEL": "5"} if moment == "model load" else {})
    env = with_faults(offline_env, tmp_path / "faults", **faults)
    proc = subprocess.Popen(
        [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", "run", str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stderr is not None
    seen = ""
    while "face model:" not in seen:
        line = proc.stderr.readline()
        assert line, f"the run ended before its model line: {seen}"
        seen += line

    def fork_server_started() -> bool:
        return any(b"forkserver" in _cmdline(c) for c in _descendants(proc.pid))

    def pool_processes_started() -> bool:  # the fork server's children
        return any(b"forkserver" in _cmdline(c) and _descendants(c) for c in _descendants(proc.pid))

    if moment == "fork server":
        wait_until(fork_server_started, "the fork server to start", timeout=30)
    else:
        wait_until(pool_processes_started, "the pool processes to start", timeout=30)
    children = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group: the fork server too
    out, err = proc.communicate(timeout=60)
    output = seen + out + err
    assert proc.returncode == 130, output
    no_traceback(output)
    assert "interrupted: what was finished is kept, and the same command goes on from there" in err
    wait_until(lambda: not any(running(c) for c in children | _descendants(proc.pid)), "the pool to end", timeout=10)
    again = run_cli(offline_env, "run", str(root))
    assert again.returncode == 0, again.stdout + again.stderr
    final = [x for x in ledger_lines(settings_of(offline_env)) if x["status"] == "done"]
    assert sorted(x["path"] for x in final) == sorted(names)


# --- 4. cleanup and a shared bucket -----------------------------------------------------------------


@pytest.mark.servers
def test_cleanup_leaves_another_librarys_uuid_keys_in_the_bucket(server_env, workers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "drive"
    distinct_photos(root, 3)
    assert invoke(server_env, "enqueue", "--wait", str(root)).exit_code == 0
    store = open_store(settings_of(server_env))
    ours = set(store.list_keys())
    from tests.test_pipeline_e2e import expected_keys, library_of

    assert ours == expected_keys(library_of(server_env)) and len(ours) >= 7  # originals, thumbnails, covers
    foreign = [
        "6f1d4a52-0000-4000-8000-000000000001.jpg",
        "thumb_6f1d4a52-0000-4000-8000-000000000001.jpg",
        "faces/person_p0000000000abcde.jpg",
        "6f1d4a52-0000-4000-8000-000000000002.png",
    ]
    for key in foreign:
        store.put_bytes(key, b"someone else's", "image/jpeg")
    dry = invoke(server_env, "cleanup", "--dry-run")
    assert f": {len(ours)} FacePic objects" in dry.output
    assert invoke(server_env, "cleanup", "--yes").exit_code == 0
    assert sorted(store.list_keys()) == sorted(foreign)


def test_a_photo_that_changes_after_its_scan_is_never_stored_and_the_rest_goes_on(  # type: ignore[no-untyped-def]
    offline_env, s3_server, tmp_path
) -> None:
    """The bucket checks each original against the SHA-256 its scan took: a photo rewritten in
    between with the same size (the upload stage's size check passes) fails with one line, and
    the bucket holds the other photos only; the next run takes the photo as it is now."""
    from tests import servers

    root = tmp_path / "drive"
    names = distinct_photos(root, 4)
    Image.open(PHOTOS / "tom_hanks/07.jpg").save(root / "changing-07.jpg", "JPEG", quality=77)
    env = {
        **offline_env,
        "FACEPIC_S3_ENDPOINT": s3_server,
        "FACEPIC_S3_BUCKET": "facepic-changing",
        "FACEPIC_S3_ACCESS_KEY_ID": servers.S3_ACCESS_KEY,
        "FACEPIC_S3_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY,
    }
    result = run_cli(env, "run", str(root), faults=tmp_path / "faults")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    no_traceback(output)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(root / "changing-07.jpg") in errors[0], output
    assert "bytes differ from the SHA-256 taken when it was scanned" in errors[0]
    assert f"photos {len(names) + 1}: done {len(names)} " in result.stdout and "failed 1" in result.stdout
    final = {x["path"]: x for x in ledger_lines(settings_of(env)) if x["status"] != "queued"}
    assert final["changing-07.jpg"]["status"] == "failed"
    assert all(final[name]["status"] == "done" and final[name]["uploaded"] for name in names)
    store = open_store(settings_of(env))
    originals = [k for k in store.list_keys() if not k.startswith(("thumb_", "faces/"))]
    assert len(originals) == len(names)

    again = run_cli(env, "run", str(root), faults=tmp_path / "faults")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"done 1 (faces 1, no face 0), already done {len(names)}" in again.stdout
    now = {x["path"]: x for x in ledger_lines(settings_of(env)) if x["status"] != "queued"}["changing-07.jpg"]
    assert now["status"] == "done" and now["uploaded"]
    assert store.get_bytes(f"{now['image_id']}.jpg") == (root / "changing-07.jpg").read_bytes()


# --- 5. and 6. links, special files, every file accounted for --------------------------------------


def test_every_file_ends_in_exactly_one_outcome_and_status_agrees_with_the_run(
    offline_env, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    root, outside = tmp_path / "drive", tmp_path / "elsewhere"
    names = distinct_photos(root, 2)
    distinct_photos(outside, 2, prefix="out-", start=2)
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    (root / "passwd.jpg").symlink_to("/etc/passwd")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "gone.jpg").symlink_to(root / "missing.jpg")
    os.mkfifo(root / "fifo.jpg")
    (root / "..jpg").write_bytes((PHOTOS / "tom_hanks" / "07.jpg").read_bytes())
    (root / "..weird").mkdir()
    (root / "..weird" / "a.jpg").write_bytes(b"x")
    frames = [Image.open(PHOTOS / "tom_hanks" / "09.jpg").convert("RGB"), Image.new("RGB", (250, 250), "black")]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    (root / "clip.mov").write_bytes(b"\x00" * 100)
    (root / "private").mkdir()
    (root / "private" / "p.jpg").write_bytes((PHOTOS / "keanu_reeves" / "00.jpg").read_bytes())
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name == "private":  # root reads every folder: inject the refusal
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") < 20
    assert (
        "photos 3: done 3 (faces 3, no face 0), already done 0, duplicates 0, failed 0; skipped 1 file that is "
        "not a photo, 2 hidden files or folders, 4 symbolic links not followed, 1 unreadable folder, "
        "1 special file\n"
    ) in result.output
    for line in [
        f"skipped: {root / 'linked-folder'}: symbolic link to outside the import folder",
        f"skipped: {root / 'passwd.jpg'}: symbolic link to outside the import folder",
        f"skipped: {root / 'loop'}: symbolic link loop (points to an enclosing folder)",
        f"skipped: {root / 'gone.jpg'}: broken symbolic link (its target is gone)",
        f"skipped: {root / 'fifo.jpg'}: special file (FIFO), never opened",
        f"skipped: {root / 'private'}: unreadable folder (Permission denied)",
    ]:
        assert line in result.output.splitlines(), line
    settings = settings_of(offline_env)
    final = {x["path"]: x["status"] for x in ledger_lines(settings)}
    entries = ({p.name for p in root.iterdir()} - {n.split("/")[0] for n in names}) | set(names)
    assert set(final) == entries  # every entry the scan met has its ledger line
    status = invoke(offline_env, "status")
    assert status.output.splitlines()[0] == (
        "photos 3: done 3 (faces 3, no face 0), duplicates 0, pending 0, failed 0; skipped 1 file that is not a "
        "photo, 2 hidden files or folders, 4 symbolic links not followed, 1 unreadable folder, 1 special file"
    )
    listed = invoke(offline_env, "status", "--skipped").output.splitlines()
    assert "skipped: clip.mov: not a photo" in listed and "skipped: ..weird/: hidden folder" in listed
    assert len(listed) == 9
    followed = invoke(offline_env, "run", "--follow-links", str(root))
    assert "photos 6: done 2 (faces 2, no face 0), already done 3, duplicates 0, failed 1" in followed.output
    assert f"error: cannot process {root / 'passwd.jpg'}: not a recognised image format" in followed.output


# --- same input, same persons ----------------------------------------------------------------------


def _persons(env: dict[str, str]) -> dict[str, list[str]]:
    from facepic.context import Context
    from facepic.embedded import embedded_database

    with embedded_database(settings_of(env)) as running, Context(running) as ctx:
        out: dict[str, list[str]] = {}
        for f in ctx.library.faces.find({}, {"person_id": 1}):
            out.setdefault(f["person_id"], []).append(f["_id"])
    return {p: sorted(faces) for p, faces in out.items()}


def test_the_same_folder_gives_the_same_persons_whatever_the_pool_timing(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import copy_photos

    root = tmp_path / "drive"
    copy_photos(root)
    results = []
    for n, workers in enumerate(("2", "3", "2")):
        env = {**offline_env, "FACEPIC_DATA_DIR": str(tmp_path / f"data-{n}"), "FACEPIC_WORKERS": workers}
        faults = tmp_path / f"faults-{n}"
        run = run_cli({**env, "FAULT_JITTER": "0.4"}, "run", str(root), faults=faults)
        assert run.returncode == 0, run.stdout + run.stderr
        results.append(_persons(env))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) >= 8
