import json
from pathlib import Path

from facepic.ledger import Ledger


def entry(path: str, status: str = "done", sha: str = "h1") -> dict:
    return {"path": path, "root": "/r", "sha256": sha, "status": status}


def test_append_then_read_gives_last_state_per_path_and_hash(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "log.jsonl")
    ledger.append(entry("a.jpg", "queued", "h1"))
    ledger.append(entry("a.jpg", "done", "h1"))
    ledger.append(entry("b.jpg", "duplicate", "h1"))
    state = ledger.read()
    assert state.by_path[("/r", "a.jpg")]["status"] == "done"
    assert state.by_path[("/r", "b.jpg")]["status"] == "duplicate"
    assert state.by_hash["h1"]["path"] == "a.jpg"  # duplicates never own a hash
    assert state.counts() == {"done": 1, "failed": 0, "duplicate": 1, "queued": 0, "skipped": 0}
    assert all("time" in json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines())


def test_torn_last_line_is_ignored_and_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    ledger = Ledger(path)
    ledger.append(entry("a.jpg"))
    good = path.read_bytes()
    line = json.dumps(entry("b.jpg")).encode()
    path.write_bytes(good + line[: len(line) // 2])
    state = ledger.read()
    assert state.repaired
    assert list(state.by_path) == [("/r", "a.jpg")]
    assert path.read_bytes() == good
    ledger.append(entry("c.jpg"))
    assert [json.loads(x)["path"] for x in path.read_text().splitlines()] == ["a.jpg", "c.jpg"]


def test_complete_last_object_without_newline_is_kept_and_terminated(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(entry("a.jpg")) + "\n" + json.dumps(entry("b.jpg")))
    state = Ledger(path).read()
    assert set(state.by_path) == {("/r", "a.jpg"), ("/r", "b.jpg")}
    assert path.read_text().endswith("\n")
    Ledger(path).append(entry("c.jpg"))
    assert len(path.read_text().splitlines()) == 3


def test_damaged_middle_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(entry("a.jpg")) + "\n{garbage\n" + json.dumps(entry("b.jpg")) + "\n")
    state = Ledger(path).read()
    assert state.skipped_lines == 1
    assert set(state.by_path) == {("/r", "a.jpg"), ("/r", "b.jpg")}


def test_missing_ledger_reads_empty(tmp_path: Path) -> None:
    state = Ledger(tmp_path / "none.jsonl").read()
    assert state.by_path == {} and not state.repaired


def test_a_queued_line_written_after_the_outcome_does_not_undo_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "log.jsonl")
    ledger.append(entry("a.jpg", "done", "h1"))
    ledger.append(entry("a.jpg", "queued", "h1"))  # the enqueuer was slower than the worker
    ledger.append(entry("b.jpg", "failed", "h2"))
    ledger.append(entry("b.jpg", "queued", "h2"))
    ledger.append(entry("c.jpg", "done", "h3"))
    ledger.append(entry("c.jpg", "queued", "h4"))  # new content at the same path is new work
    state = ledger.read()
    assert state.by_path[("/r", "a.jpg")]["status"] == "done"
    assert state.by_path[("/r", "b.jpg")]["status"] == "failed"
    assert state.by_path[("/r", "c.jpg")]["status"] == "queued"


def test_statuses_and_skip_kinds_are_written_as_their_strings(tmp_path: Path) -> None:
    """`Status` and `SkipKind` are StrEnums: a line written with them is byte for byte the line
    written with the strings they replaced, and they compare equal to what is read back."""
    from facepic.statuses import SkipKind, Status

    as_enum, as_str = Ledger(tmp_path / "enum.jsonl"), Ledger(tmp_path / "str.jsonl")
    for status, kind in [(Status.SKIPPED, SkipKind.RAW_JPEG_PAIR), (Status.SKIPPED, SkipKind.NOT_A_PHOTO)]:
        line = {"path": "a.CR2", "root": "/r", "status": status, "category": kind, "time": "t"}
        as_enum.append(line)
        as_str.append({**line, "status": status.value, "category": kind.value})
    for status in Status:
        as_enum.append({**entry("b.jpg", status), "time": "t"})
        as_str.append({**entry("b.jpg", status.value), "time": "t"})
    written = (tmp_path / "enum.jsonl").read_bytes()
    assert written == (tmp_path / "str.jsonl").read_bytes()
    assert b'"category":"RAW+JPEG pair"' in written and b'"status":"skipped"' in written
    assert as_enum.read().by_path[("/r", "a.CR2")]["category"] == SkipKind.NOT_A_PHOTO
