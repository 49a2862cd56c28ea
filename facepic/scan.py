"""Walk an import folder: every entry ends as a photo found or a file skipped with its reason.

Rules (the README's "What the scan reads"):
- hidden files and folders (a leading dot: `.thumbnails`, macOS `._IMG_0001.JPG`) and files
  that are not photos (videos, sidecars, system files) are skipped quietly and counted;
- a symbolic link is followed only while it stays inside the import folder, unless
  ``follow_links``; a link out, a broken link or a loop is skipped with the reason, once;
- a folder that cannot be read is skipped with the reason; its siblings go on;
- a FIFO, socket or device is never opened;
- a RAW file with a photo of the same name beside it (RAW+JPEG shooting) is one photo: the
  JPEG is processed and carries the RAW as its companion;
- an XMP sidecar of a photo beside it (``IMG_0001.JPG.xmp`` or ``IMG_0001.xmp``) is skipped
  quietly as that photo's sidecar: the detect stage reads its face names with the photo.
The order is stable (sorted, depth-first), so two scans of one folder agree.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facepic.errors import FacePicError
from facepic.formats import classify, is_photo_name, photo_signature
from facepic.statuses import SkipKind

QUIET = (SkipKind.HIDDEN, SkipKind.NOT_A_PHOTO, SkipKind.RAW_JPEG_PAIR, SkipKind.SIDECAR, SkipKind.SEEN)


class ImportFolderError(FacePicError):
    """The import folder cannot be scanned at all (missing, not a folder, unreadable, empty)."""


@dataclass(frozen=True)
class Found:
    file: Path  # as seen under the import root (symlinks kept in the name)
    path: str  # POSIX path relative to the import root
    size: int
    mtime_ns: int
    companions: tuple[str, ...] = ()  # RAW files of a RAW+JPEG pair, relative to the root


@dataclass(frozen=True)
class Skipped:
    """A file or folder the scan does not process, and why."""

    file: Path
    path: str
    reason: str
    category: SkipKind
    folder: bool = False

    @property
    def quiet(self) -> bool:
        """Counted in the summary but not worth a line of its own."""
        return self.category in QUIET


@dataclass(frozen=True)
class Unreadable:
    """A photo that cannot even be looked at: it counts as failed."""

    file: Path
    path: str
    reason: str


Entry = Found | Skipped | Unreadable


def check_import_folder(root: Path) -> Path:
    """The absolute import folder, or ImportFolderError saying what is wrong with it."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ImportFolderError(f"import folder {root} does not exist (is the drive mounted? check the path)")
    if not root.is_dir():
        raise ImportFolderError(f"import folder {root} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ImportFolderError(f"import folder {root} cannot be read (check its permissions)")
    return root.absolute()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not a regular file"


def _pairs(names: list[str]) -> dict[str, str]:
    """RAW name -> the photo of the same stem beside it (the one processed)."""
    photos: dict[str, str] = {}
    for name in names:
        if not name.startswith(".") and classify(name) == "photo":
            photos.setdefault(os.path.splitext(name)[0].lower(), name)
    return {
        name: photos[os.path.splitext(name)[0].lower()]
        for name in names
        if classify(name) == "raw" and os.path.splitext(name)[0].lower() in photos
    }


def _sidecars(names: list[str]) -> dict[str, str]:
    """XMP sidecar name -> the photo beside it whose sidecar it is: ``IMG_0001.JPG.xmp``
    (digiKam, darktable) or ``IMG_0001.xmp`` (Lightroom)."""
    photos = {name for name in names if not name.startswith(".") and is_photo_name(name)}
    by_stem: dict[str, str] = {}
    for name in sorted(photos):
        by_stem.setdefault(os.path.splitext(name)[0], name)
    out: dict[str, str] = {}
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() != ".xmp" or name.startswith("."):
            continue
        photo = stem if stem in photos else by_stem.get(stem)
        if photo is not None:
            out[name] = photo
    return out


def scan(root: Path, follow_links: bool = False) -> Iterator[Entry]:
    """Every entry under ``root`` in a stable (sorted, depth-first) order: a ``Found`` photo,
    a ``Skipped`` file or folder, or an ``Unreadable`` photo."""
    root = check_import_folder(root)
    walk = _Walk(root, follow_links)
    root_st = root.stat()
    error = walk.enter(root, (root_st.st_dev, root_st.st_ino))
    if error is not None:
        raise ImportFolderError(f"import folder {root} cannot be read ({_reason(error)})")
    yield from walk.entries()


def _listing(folder: Path) -> list[os.DirEntry] | OSError:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        return e


@dataclass
class _Frame:
    """A folder being walked: its entries still to look at, and what its names say of each other."""

    entries: Iterator[os.DirEntry]
    key: tuple[int, int]  # (device, inode): a link to it from inside it is a loop
    pairs: dict[str, str]  # RAW name -> the photo of the same stem beside it
    companions: dict[str, list[str]]  # photo name -> the RAW names paired with it
    sidecar_of: dict[str, str]  # XMP sidecar name -> its photo

    @classmethod
    def of(cls, entries: list[os.DirEntry], key: tuple[int, int]) -> _Frame:
        names = [e.name for e in entries]
        pairs = _pairs(names)
        companions: dict[str, list[str]] = {}
        for raw, photo in pairs.items():
            companions.setdefault(photo, []).append(raw)
        return cls(iter(entries), key, pairs, companions, _sidecars(names))


class _Walk:
    """One scan under way: the folders open, and the folders seen (each is scanned once,
    whatever links lead to it)."""

    def __init__(self, root: Path, follow_links: bool) -> None:
        self.root = root
        self.root_real = os.path.realpath(root)
        self.follow_links = follow_links
        # A stack of folder listings, not recursion: a drive's tree can be deeper than Python's stack.
        self.stack: list[_Frame] = []
        self.seen_dirs: set[tuple[int, int]] = set()

    def enter(self, folder: Path, key: tuple[int, int]) -> OSError | None:
        """Walk ``folder`` next; the error when it cannot be listed."""
        self.seen_dirs.add(key)
        entries = _listing(folder)
        if isinstance(entries, OSError):
            return entries
        self.stack.append(_Frame.of(entries, key))
        return None

    def entries(self) -> Iterator[Entry]:
        while self.stack:
            frame = self.stack[-1]
            entry = next(frame.entries, None)
            if entry is None:
                self.stack.pop()
                continue
            item = self._entry(frame, entry)
            if item is not None:
                yield item

    def path_of(self, file: Path) -> str:
        return file.relative_to(self.root).as_posix()

    def _entry(self, frame: _Frame, entry: os.DirEntry) -> Entry | None:
        """What becomes of one entry of a folder; None: a folder entered."""
        file = Path(entry.path)
        path = self.path_of(file)
        if entry.name.startswith("."):
            kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
            return Skipped(file, path, f"hidden {kind}", SkipKind.HIDDEN, folder=kind == "folder")
        is_link = False  # until told: is_symlink itself may fail (no entry type from the file system)
        try:
            is_link = entry.is_symlink()
            st = entry.stat(follow_symlinks=True)
        except OSError as e:
            return _cannot_stat(file, path, is_link, e)
        if is_link and not self.follow_links and not _inside(os.path.realpath(file), self.root_real):
            return Skipped(
                file, path, "symbolic link to outside the import folder", SkipKind.LINK, folder=stat.S_ISDIR(st.st_mode)
            )
        if stat.S_ISDIR(st.st_mode):
            return self._folder(file, path, (st.st_dev, st.st_ino))
        return self._file(frame, entry.name, file, path, st)

    def _folder(self, file: Path, path: str, key: tuple[int, int]) -> Skipped | None:
        """A folder entered (None), or skipped with the reason."""
        if any(frame.key == key for frame in self.stack):
            return Skipped(file, path, "symbolic link loop (points to an enclosing folder)", SkipKind.LINK, folder=True)
        if key in self.seen_dirs:
            return Skipped(file, path, "folder scanned already under another path", SkipKind.SEEN, folder=True)
        error = self.enter(file, key)
        if error is not None:
            return Skipped(file, path, f"unreadable folder ({_reason(error)})", SkipKind.FOLDER, folder=True)
        return None

    def _file(self, frame: _Frame, name: str, file: Path, path: str, st: os.stat_result) -> Entry:
        """A photo found, or a file skipped or unreadable with the reason."""
        if not stat.S_ISREG(st.st_mode):
            return Skipped(file, path, f"special file ({_special(st.st_mode)}), never opened", SkipKind.SPECIAL)
        if name in frame.sidecar_of:
            return Skipped(file, path, f"XMP sidecar of {frame.sidecar_of[name]}", SkipKind.SIDECAR)
        if not is_photo_name(name) and not _photo_by_content(file, name):
            return Skipped(file, path, "not a photo", SkipKind.NOT_A_PHOTO)
        if not _utf8(path):
            # The database keeps names as UTF-8: such a photo could be neither stored nor found.
            return Unreadable(file, path, "its name is not valid UTF-8 (rename the file or its folder)")
        if name in frame.pairs:
            partner = self.path_of(file.with_name(frame.pairs[name]))
            return Skipped(file, path, f"RAW+JPEG pair: processed as {partner}", SkipKind.RAW_JPEG_PAIR)
        pair = tuple(self.path_of(file.with_name(n)) for n in frame.companions.get(name, ()))
        return Found(file, path, st.st_size, st.st_mtime_ns, pair)


def _cannot_stat(file: Path, path: str, is_link: bool, e: OSError) -> Skipped | Unreadable:
    """An entry whose kind cannot be told: a broken link or a link loop, else unreadable."""
    if is_link and e.errno == errno.ELOOP:
        return Skipped(file, path, "symbolic link loop", SkipKind.LINK)
    if is_link and e.errno == errno.ENOENT:
        return Skipped(file, path, "broken symbolic link (its target is gone)", SkipKind.LINK)
    if is_photo_name(file.name):
        return Unreadable(file, path, f"cannot read file ({_reason(e)})")
    return Skipped(file, path, f"cannot be read ({_reason(e)})", SkipKind.SPECIAL)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # bytes the file system gave that are not UTF-8
        return False
    return True


def _photo_by_content(path: Path, name: str) -> bool:
    """A regular file named without an extension that begins as a photo does."""
    if os.path.splitext(name)[1]:
        return False  # read nothing: most files of a drive have one
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return photo_signature(head)


def photos(root: Path, follow_links: bool = False) -> Iterator[Found]:
    """Only the photos of ``scan``."""
    return (e for e in scan(root, follow_links) if isinstance(e, Found))


def display(path: Path | str) -> str:
    """A path on one line: control characters (a newline in a file name) are escaped."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cannot_process(path: Path | str, reason: str) -> str:
    """The one line a photo that failed gets: ``error: cannot process PATH: reason``."""
    return f"error: cannot process {display(path)}: {reason}"
