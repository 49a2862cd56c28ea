"""`processed_log.jsonl`: the append-only record of every photo FacePic has seen.

One JSON object a line, each written with a single ``write`` on an ``O_APPEND``
descriptor and fsync'd, so concurrent writers on one machine never interleave and a
crash can only tear the last line. Reading tolerates (and repairs) a torn last line.
A photo's state is its last line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

Status = Literal["queued", "done", "failed", "duplicate"]
FINAL: frozenset[str] = frozenset({"done", "duplicate"})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
            entry.get("status") == "queued"
            and previous is not None
            and previous.get("sha256") == sha
            and previous.get("status") in ("done", "failed")
        ):
            # The enqueuer writes `queued` just after handing the chain over, so a fast worker
            # can log the outcome first: a late `queued` never undoes it.
            return
        self.by_path[key] = entry
        if sha and entry.get("status") != "duplicate":
            self.by_hash[sha] = entry

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "failed": 0, "duplicate": 0, "queued": 0}
        for entry in self.by_path.values():
            status = entry.get("status", "")
            counts[status] = counts.get(status, 0) + 1
        return counts

    def entries(self, status: str) -> Iterator[dict[str, Any]]:
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
        if good_end < len(data):
            self._truncate(good_end)
            state.repaired = True
        elif data and not data.endswith(b"\n"):  # whole last object, newline lost
            with open(self.path, "ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
            state.repaired = True
        return state

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {**entry, "time": entry.get("time") or now_iso()}
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry
