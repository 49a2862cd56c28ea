"""Bad input never loses data and never stops a run: `facepic run` and `facepic enqueue` with
workers over a folder of hostile files mixed with good photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facepic.scan import display
from facepic.storage import open_store
from tests import hostile
from tests.conftest import invoke, ledger_lines, settings_of, wait_for_ledger
from tests.servers import start_pipeline_workers, stop_workers
from tests.test_pipeline_e2e import expected_keys, library_of


def final_entries(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    final = {}
    for line in lines:
        if line["status"] in ("done", "failed"):
            final[line["path"]] = line
    return final


def check(expect: dict, lines: list[dict], output: str, root: Path, lib, store) -> None:  # type: ignore[no-untyped-def]
    final = final_entries(lines)
    assert set(final) == set(expect)
    assert "Traceback" not in output
    for path, (status, detail) in expect.items():
        entry = final[path]
        assert entry["status"] == status, (path, entry)
        if status == "done":
            assert entry["faces"] == detail, path
        else:
            assert detail in entry["reason"], (path, entry["reason"])
            prefix = f"error: cannot process {display(root / path)}: "
            mine = [line for line in output.splitlines() if line.startswith(prefix)]
            assert len(mine) == 1 and detail in mine[0], (path, mine)
    done = {path for path, (status, _) in expect.items() if status == "done"}
    images = {doc["path"]: doc for doc in lib.images.find({})}
    assert set(images) == done  # no partial documents of failed photos
    image_ids = {doc["_id"] for doc in images.values()}
    assert {f["image_id"] for f in lib.faces.find({})} <= image_ids
    assert set(store.list_keys()) == expected_keys(lib)  # no objects of failed photos
    assert images["png-named.jpg"]["keys"]["original"].endswith(".png")


def test_run_survives_a_hostile_folder(offline_env, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "drive"
    expect = hostile.build(root)
    hostile.make_unreadable(root, monkeypatch)
    from facepic import ids

    real_hash = ids.sha256_file

    def hash_then_delete(file: Path) -> str:
        sha = real_hash(file)
        if Path(file).name == "deleted.jpg":
            hostile.delete_later(root)  # between the scan's look and the analysis
        return sha

    monkeypatch.setattr(ids, "sha256_file", hash_then_delete)
    # Originals copied into the folder store (an explicit setting), so that the objects made
    # for bad photos can be checked too.
    offline_env = {**offline_env, "FACEPIC_COPY_ORIGINALS": "true"}
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 1
    failed = sum(1 for status, _ in expect.values() if status == "failed")
    done = len(expect) - failed
    faces = sum(detail for status, detail in expect.values() if status == "done")
    no_face = sum(1 for status, detail in expect.values() if status == "done" and detail == 0)
    assert (
        f"photos {len(expect)}: done {done} (faces {faces}, no face {no_face}), already done 0, duplicates 0, "
        f"failed {failed}" in result.output
    )

    from facepic.context import Context
    from facepic.embedded import embedded_database

    settings = settings_of(offline_env)
    with embedded_database(settings) as running, Context(running) as ctx:
        check(expect, ledger_lines(running), result.output, root, ctx.library, open_store(running))


def test_enqueue_survives_a_hostile_folder(server_env, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "drive"
    expect = hostile.build(root)
    hostile.make_unreadable(root, monkeypatch)
    result = invoke(server_env, "enqueue", str(root))  # no workers yet: nothing is processed
    assert result.exit_code == 1  # the unreadable file failed already
    hostile.delete_later(root)  # between the scan and the processing
    workers = start_pipeline_workers(server_env, tmp_path)
    try:
        lines = wait_for_ledger(settings_of(server_env), len(expect))
    finally:
        stop_workers(workers)
    logs = result.output + "".join(w.log.read_text() for w in workers)
    # The workers' log lines carry Celery's prefix; the message itself is the same line.
    output = "\n".join(line.split("] ", 1)[-1] for line in logs.splitlines())
    check(expect, lines, output, root, library_of(server_env), open_store(settings_of(server_env)))

    status = invoke(server_env, "status")
    failed = sum(1 for s, _ in expect.values() if s == "failed")
    assert f"failed {failed}" in status.output


def test_a_very_large_and_deep_folder_tree_is_scanned_completely(ram_path: Path) -> None:
    # In memory: its 6,000 ledger appends, each fsync'd, take 20 s on a disk, which is not what this tests.
    from facepic.ledger import Ledger
    from facepic.planner import Planner
    from tests.conftest import PHOTOS

    root = ram_path / "drive"
    root.mkdir()
    deep = root
    for _ in range(1200):  # deeper than Python's recursion limit, within the OS path limit
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.jpg").write_bytes((PHOTOS / "tom_hanks" / "07.jpg").read_bytes())
    wide = root / "wide"
    for i in range(300):
        folder = wide / f"f{i:03d}"
        folder.mkdir(parents=True)
        for j in range(10):
            (folder / f"IMG_{j}.JPG").write_bytes(b"\xff\xd8" + f"{i}-{j}".encode())
            (folder / f"note_{j}.txt").write_text("x")
    planner = Planner(Ledger(ram_path / "log.jsonl"), "buffalo_s", upload=True)
    jobs = list(planner.new_jobs(root))
    assert len(jobs) == 3001 and planner.summary.photos == 3001
    assert jobs[0]["path"] == "d/" * 1200 + "bottom.jpg"
    # Remove the chain bottom-up: recursive removers (pytest's own clean-up) cannot.
    (deep / "bottom.jpg").unlink()
    while deep != root:
        deep.rmdir()
        deep = deep.parent


def test_photos_over_the_time_limit_fail_and_retry_failed_takes_them_again(offline_env, tmp_path: Path) -> None:
    from tests.conftest import PHOTOS

    root = tmp_path / "drive"
    root.mkdir()
    for name in ("07.jpg", "08.jpg"):
        (root / name).write_bytes((PHOTOS / "tom_hanks" / name).read_bytes())
    slow = {**offline_env, "FACEPIC_PHOTO_TIMEOUT": "0.0001"}
    first = invoke(slow, "run", str(root))
    assert first.exit_code == 1
    assert "took longer than 0.0001 s to decode and analyse" in first.output
    again = invoke(offline_env, "run", str(root))
    # Failures are not retried by default.
    assert again.exit_code == 0 and "done 0 (faces 0, no face 0)" in again.output
    assert "failed earlier 2 (--retry-failed takes them again)" in again.output
    retry = invoke(offline_env, "run", "--retry-failed", str(root))
    assert retry.exit_code == 0, retry.output
    assert "photos 2: done 2 (faces 2, no face 0), already done 0, duplicates 0, failed 0" in retry.output
    final = final_entries(ledger_lines(settings_of(offline_env)))
    assert {e["status"] for e in final.values()} == {"done"}


def test_enqueue_refuses_a_missing_file_or_unmounted_drive_before_queueing(server_env, tmp_path: Path) -> None:
    import redis

    from tests.conftest import PHOTOS

    missing = invoke(server_env, "enqueue", str(tmp_path / "nope"))
    assert missing.exit_code == 1
    assert (
        f"Error: import folder {tmp_path / 'nope'} does not exist (is the drive mounted? check the path)"
        in missing.output
    )
    a_file = tmp_path / "file.jpg"
    a_file.write_bytes(b"x")
    assert "is not a folder" in invoke(server_env, "enqueue", str(a_file)).output

    root = tmp_path / "drive"
    root.mkdir()
    (root / "a.jpg").write_bytes((PHOTOS / "tom_hanks" / "07.jpg").read_bytes())
    assert invoke(server_env, "enqueue", str(root)).exit_code == 0
    (root / "a.jpg").unlink()  # the drive is unplugged; its mount point is an empty folder
    ledger = settings_of(server_env).ledger_path.read_text()
    queued = redis.Redis.from_url(server_env["FACEPIC_REDIS_URL"]).llen("cpu")
    unplugged = invoke(server_env, "enqueue", str(root))
    assert unplugged.exit_code == 1
    assert "is empty, but the ledger holds photos from it (is the drive mounted? check the path)" in unplugged.output
    assert settings_of(server_env).ledger_path.read_text() == ledger
    assert redis.Redis.from_url(server_env["FACEPIC_REDIS_URL"]).llen("cpu") == queued


def test_a_name_that_is_not_utf8_fails_alone_and_the_run_goes_on(offline_env, tmp_path: Path) -> None:
    """A file name of bytes that are not UTF-8 (an old camera card, a Windows-1252 disk) used to
    stop the whole run when the ledger wrote it; now it is one failed photo with its reason."""
    import os
    import shutil

    from tests.conftest import PHOTOS

    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(PHOTOS / "tom_hanks" / "07.jpg", root / "07.jpg")
    bad = os.fsdecode(os.fsencode(str(root)) + b"/Ferien \xe4 08.jpg")  # Latin-1 'ä'
    shutil.copy(PHOTOS / "tom_hanks" / "08.jpg", bad)
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 1, result.output
    assert "photos 2: done 1 (faces 1, no face 0), already done 0, duplicates 0, failed 1" in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: cannot process {display(bad)}: its name is not valid UTF-8 (rename the file or its folder)"
    ]
    final = {x["path"]: x for x in ledger_lines(settings_of(offline_env))}
    assert final["07.jpg"]["status"] == "done" and final[os.path.basename(bad)]["status"] == "failed"
    again = invoke(offline_env, "run", str(root))
    assert "done 0 (faces 0, no face 0), already done 1" in again.output  # the ledger read back
