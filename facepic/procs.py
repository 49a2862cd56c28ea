"""Whether a process is still there: the pool's watch of its parent, and a pending change's
maker (`facepic.changes`)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts). A zombie
    (ended, not yet reaped by its parent) does not: a run started by a program that reads its
    output before it reaps it stays a zombie until its pool processes end, and they end when
    it does."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False  # no /proc (macOS): the signal's answer stands
    name_end = stat.rfind(b")")  # "pid (name) state ...": the name may hold ") ", the last one ends it
    return stat[name_end + 2 : name_end + 3] == b"Z"
