import os
import shutil
from pathlib import Path

import pytest

from facepic.ledger import Ledger
from facepic.planner import Planner
from facepic.scan import ImportFolderError
from tests.conftest import PHOTOS

A = PHOTOS / "tom_hanks" / "07.jpg"
B = PHOTOS / "tom_hanks" / "08.jpg"


def plan(ledger: Ledger, root: Path, **kw) -> tuple[Planner, list]:
    planner = Planner(ledger, "buffalo_s", upload=True, **kw)
    return planner, list(planner.new_jobs(root))


def finish(ledger: Ledger, jobs: list, status: str = "done") -> None:
    for job in jobs:
        ledger.append(
            {
                "path": job["path"],
                "root": job["root"],
                "sha256": job["sha256"],
                "image_id": job["image_id"],
                "status": status,
                "size": job["size"],
                "mtime_ns": job["mtime_ns"],
                "reason": "x" if status == "failed" else None,
            }
        )


def test_new_photos_are_queued_once_and_skipped_when_done(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(A, root / "a.jpg")
    shutil.copy(B, root / "b.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    planner, jobs = plan(ledger, root)
    assert [j["path"] for j in jobs] == ["a.jpg", "b.jpg"]
    assert planner.summary.queued == 2
    assert {j["image_id"] for j in jobs} == {j["image_id"] for j in jobs} and len({j["image_id"] for j in jobs}) == 2
    # queued but not finished: a second enqueue does not send them again
    planner, jobs2 = plan(ledger, root)
    assert jobs2 == [] and planner.summary.already == 2
    finish(ledger, jobs)
    planner, jobs3 = plan(ledger, root)
    assert jobs3 == [] and planner.summary.already == 2


def test_same_content_elsewhere_is_a_duplicate_not_processed(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    (root / "x").mkdir(parents=True)
    shutil.copy(A, root / "a.jpg")
    shutil.copy(A, root / "x" / "copy.jpg")
    other = tmp_path / "other-drive"
    other.mkdir()
    shutil.copy(A, other / "again.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    planner, jobs = plan(ledger, root)
    assert [j["path"] for j in jobs] == ["a.jpg"]
    assert planner.summary.duplicates == 1
    finish(ledger, jobs)
    planner, jobs = plan(ledger, other)
    assert jobs == [] and planner.summary.duplicates == 1
    dup = ledger.read().by_path[(str(other), "again.jpg")]
    assert dup["status"] == "duplicate" and dup["duplicate_of"] == "a.jpg"


def test_changed_file_at_a_known_path_is_processed_again(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(A, root / "a.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    _, jobs = plan(ledger, root)
    finish(ledger, jobs)
    shutil.copy(B, root / "a.jpg")
    _, jobs2 = plan(ledger, root)
    assert len(jobs2) == 1 and jobs2[0]["sha256"] != jobs[0]["sha256"]


def test_failed_photos_are_skipped_unless_retried(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(A, root / "a.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    _, jobs = plan(ledger, root)
    finish(ledger, jobs, "failed")
    planner, again = plan(ledger, root)
    assert again == [] and planner.summary.skipped_failed == 1
    _, retry = plan(ledger, root, retry_failed=True)
    assert [j["path"] for j in retry] == ["a.jpg"]


def test_embedded_mode_resumes_photos_left_queued_by_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(A, root / "a.jpg")
    shutil.copy(A, root / "dup.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    ledger.append(
        {
            "path": "a.jpg",
            "root": str(root),
            "status": "queued",
            "sha256": "stale",
            "size": A.stat().st_size,
            "mtime_ns": (root / "a.jpg").stat().st_mtime_ns,
        }
    )
    planner = Planner(ledger, "buffalo_s", upload=True, record_queued=False)
    jobs = list(planner.new_jobs(root))
    assert [j["path"] for j in jobs] == ["a.jpg"]
    assert planner.summary.duplicates == 1  # the copy is still recognised within the run


def test_empty_folder_that_the_ledger_knows_is_an_unmounted_drive(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(A, root / "a.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    _, jobs = plan(ledger, root)
    finish(ledger, jobs)
    os.remove(root / "a.jpg")
    lines_before = (tmp_path / "log.jsonl").read_text()
    with pytest.raises(ImportFolderError, match="is the drive mounted"):
        plan(ledger, root)
    assert (tmp_path / "log.jsonl").read_text() == lines_before


def test_pending_photos_can_be_sent_again(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(A, root / "a.jpg")
    shutil.copy(B, root / "b.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    _, jobs = plan(ledger, root)
    finish(ledger, jobs[:1])  # a.jpg finished, b.jpg's chain was lost
    pending = list(Planner(ledger, "buffalo_s", upload=True).pending_jobs())
    assert [(j["path"], j["sha256"], j["file"]) for j in pending] == [("b.jpg", jobs[1]["sha256"], str(root / "b.jpg"))]


def test_the_scan_says_when_it_meets_the_first_photo_to_hash_and_goes_on(tmp_path: Path) -> None:
    """`facepic run` starts its pool there, while the scan goes on; a folder the ledger knows
    unchanged starts nothing."""
    root = tmp_path / "drive"
    for folder in ("a", "b", "c"):
        (root / folder).mkdir(parents=True)
        shutil.copy(A, root / folder / "x.jpg")
        shutil.copy(B, root / folder / "y.jpg")
    ledger = Ledger(tmp_path / "log.jsonl")
    looked: list[int] = []
    firsts: list[int] = []

    def scan(planner: Planner) -> list:
        return planner.to_hash(root, looked_at=lambda: looked.append(1), first=lambda: firsts.append(len(looked)))

    planner = Planner(ledger, "buffalo_s", upload=False)
    assert len(scan(planner)) == 6
    assert firsts == [1]  # once, at the first photo, with five files still to look at
    finish(ledger, list(planner.jobs_of(root, planner.to_hash(root))))
    looked.clear()
    firsts.clear()
    assert scan(Planner(ledger, "buffalo_s", upload=False)) == [] and len(looked) == 6 and firsts == []
