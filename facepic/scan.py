"""Find the photos under an import folder: recursive, stable order, no symlink loops."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from facepic.formats import PHOTO_EXTENSIONS


class ImportFolderError(Exception):
    """The import folder cannot be scanned at all (missing, not a folder, unreadable)."""


@dataclass(frozen=True)
class Found:
    path: Path  # as seen under the import root (symlinks kept in the name)
    rel: str  # POSIX path relative to the import root
    size: int
    mtime_ns: int


def check_import_folder(root: Path) -> Path:
    """The absolute import folder, or ImportFolderError saying what is wrong with it."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ImportFolderError(f"import folder {root} does not exist (is the drive mounted?)")
    if not root.is_dir():
        raise ImportFolderError(f"import folder {root} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ImportFolderError(f"import folder {root} cannot be read (permissions)")
    return root.absolute()


def is_photo_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in PHOTO_EXTENSIONS


def scan(
    root: Path,
    on_error: Callable[[Path, str], None] | None = None,
) -> Iterator[Found]:
    """Yield every photo under ``root`` in a stable (sorted, depth-first) order.

    Hidden files and folders are skipped. A folder reached twice through symlinks
    is visited once, so a symlink cycle ends. Unreadable entries go to ``on_error``.
    """
    root = check_import_folder(root)
    seen_dirs: set[tuple[int, int]] = set()

    def report(path: Path, reason: str) -> None:
        if on_error is not None:
            on_error(path, reason)

    def entries_of(folder: Path) -> Iterator[os.DirEntry] | None:
        try:
            st = folder.stat()
        except OSError as e:
            report(folder, e.strerror or str(e))
            return None
        if (st.st_dev, st.st_ino) in seen_dirs:
            return None
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                return iter(sorted(it, key=lambda e: e.name))
        except OSError as e:
            report(folder, e.strerror or str(e))
            return None

    # A stack of folder listings, not recursion: a drive's tree can be deeper than Python's stack.
    first = entries_of(root)
    stack: list[Iterator[os.DirEntry]] = [first] if first is not None else []
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()  # follows symlinks
            is_file = not is_dir and entry.is_file()
        except OSError as e:
            report(path, e.strerror or str(e))
            continue
        if is_dir:
            listing = entries_of(path)
            if listing is not None:
                stack.append(listing)
        elif is_file and is_photo_name(entry.name):
            try:
                st = entry.stat()
            except OSError as e:
                report(path, e.strerror or str(e))
                continue
            yield Found(path, path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns)
        elif not is_file and entry.is_symlink() and is_photo_name(entry.name):
            report(path, "broken symbolic link")


def display(path: Path | str) -> str:
    """A path on one line: control characters (a newline in a file name) are escaped."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
