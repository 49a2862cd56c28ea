"""`processed_log.jsonl`: the append-only record of every photo FacePic has seen.

One JSON object a line, appended under an exclusive lock on an ``O_APPEND`` descriptor
and fsync'd, so concurrent writers on one machine never interleave and a crash can only
tear the last line. Before each append a torn tail is cut off, and a write that cannot be
completed (a full disk) is rolled back, so a complete entry is never lost or glued to a
fragment. Reading tolerates (and repairs) a torn last line. A file's state is its last line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facepic.errors import data_folder_error
from facepic.statuses import Status


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class LedgerState:
    """The ledger read into memory: the last entry per photo path and per content hash."""

    by_path: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    by_hash: dict[str, dict[str, Any]] = field(default_factory=dict)
    repaired: bool = False
    skipped_lines: int = 0

    def add(self, entry: dict[str, Any]) -> None:
        key = (entry.get("root", ""), entry.get("path", ""))
        sha = entry.get("sha256")
        previous = self.by_path.get(key)
        if (
            entry.get("status") == Status.QUEUED
            and previous is not None
            and previous.get("sha256") == sha
            and previous.get("status") in (Status.DONE, Status.FAILED)
        ):
            # The enqueuer writes `queued` just after handing the chain over, so a fast worker
            # can log the outcome first: a late `queued` never undoes it.
            return
        self.by_path[key] = entry
        old_sha = previous.get("sha256") if previous is not None else None
        if old_sha and sha and old_sha != sha and entry.get("status") in (Status.QUEUED, Status.DONE, Status.DUPLICATE):
            # The file's content changed: its old version is (or is about to be) removed.
            known = self.by_hash.get(old_sha)
            if known is not None and (known.get("root", ""), known.get("path", "")) == key:
                del self.by_hash[old_sha]
        if sha and entry.get("status") != Status.DUPLICATE:
            self.by_hash[sha] = entry

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(
            (Status.DONE, Status.FAILED, Status.DUPLICATE, Status.QUEUED, Status.SKIPPED), 0
        )
        for entry in self.by_path.values():
            status = entry.get("status", "")
            counts[status] = counts.get(status, 0) + 1
        return counts

    def entries(self, status: Status) -> Iterator[dict[str, Any]]:
        return (e for e in self.by_path.values() if e.get("status") == status)


class Follower:
    """Reads the lines appended to a ledger since the last call (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new_entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        entries = []
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> LedgerState:
        """Read every line; a torn last line is dropped from the file and ignored."""
        state = LedgerState()
        if not self.path.exists():
            return state
        data = self.path.read_bytes()
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl == -1 else nl + 1
            line = data[pos:end]
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                if nl == -1:  # the torn tail a crash leaves: cut it off below
                    break
                state.skipped_lines += 1
            else:
                state.add(entry)
            good_end = end
            pos = end
        if good_end < len(data) or (data and not data.endswith(b"\n")):
            self._repair()
            state.repaired = True
        return state

    def _repair(self) -> None:
        """Cut a torn tail (or terminate a whole last object), under the writers' lock: what
        looks torn from here may be an append still under way."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        except OSError:
            return  # read-only: readers skip the torn tail anyway, the next append cuts it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _cut_torn_tail(fd)
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one entry, durably; DataFolderError (the file as it was) if it cannot."""
        return self.append_many([entry])[0]

    def append_many(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append entries in one write and one fsync (the index stage logs a batch of photos
        at once); DataFolderError, and the file as it was, if they cannot all be written."""
        now = now_iso()
        entries = [{**entry, "time": entry.get("time") or now} for entry in entries]
        if not entries:
            return entries
        data = b"".join(_line(entry) for entry in entries)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise data_folder_error(e, self.path.parent) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = _cut_torn_tail(fd)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as e:
                # Whatever part of the lines reached the file goes again: the next append
                # must not be glued onto a fragment.
                os.ftruncate(fd, start)
                os.fsync(fd)
                raise data_folder_error(e, self.path.parent) from None
        except OSError as e:  # the lock, the cut or the rollback itself
            raise data_folder_error(e, self.path.parent) from None
        finally:
            os.close(fd)  # also releases the lock
        return entries


def _cut_torn_tail(fd: int) -> int:
    """Cut an unterminated last line (a crash mid-append) off the file; return its size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    tail_start = max(0, size - (1 << 16))
    tail = os.pread(fd, size - tail_start, tail_start)
    nl = tail.rfind(b"\n")
    good = tail_start + nl + 1 if nl >= 0 else 0
    if nl < 0 and tail_start > 0:  # a line longer than 64 KiB: look further back
        data = os.pread(fd, size, 0)
        good = data.rfind(b"\n") + 1
    try:
        json.loads(os.pread(fd, size - good, good))
    except ValueError:
        os.ftruncate(fd, good)
        return good
    # A whole object whose newline was lost: keep it, terminate it.
    _write_all(fd, b"\n")
    return size + 1


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written; a short write is not success."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(28, "No space left on device")
        view = view[n:]


def _line(entry: dict[str, Any]) -> bytes:
    """One entry as a line of UTF-8 JSON; a file name that is not UTF-8 (its undecodable bytes
    are lone surrogates in Python) is written as JSON escapes, which read back the same."""
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:
        return (json.dumps(entry, separators=(",", ":")) + "\n").encode()
