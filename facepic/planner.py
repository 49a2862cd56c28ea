"""Decide what to do with each file of an import folder, for `facepic run` and `enqueue` alike.

Rules, applied in scan order:
- the ledger has this path with the same size and mtime: already seen, skipped unread;
- otherwise the file is hashed; a hash the ledger knows (done or queued) under another path
  is a duplicate: recorded, not processed;
- everything else is new: yielded to be dispatched, then given a ``queued`` ledger line
  (only once dispatched: a broker failure never leaves a photo marked queued but unsent).
A done photo whose file changed is new content like any other: the index stage replaces its
old version (``facepic.versions``); when the new content is a duplicate, ``retire`` (given by
the caller) removes the old version here. A file at a new path with the content of a photo
already done stays a duplicate: content is stored once, wherever it lies.
``failed`` photos are skipped unless ``retry_failed``. With ``record_queued=False`` (the
embedded run, where nothing outlives the process) nothing is in flight between runs, so
``queued`` entries count as not done. The caller hands the jobs on (the runner's pool, or
Celery), so this module knows nothing of Celery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from facepic import ids
from facepic.ledger import Ledger, LedgerState
from facepic.pipeline.job import Job, Replaced
from facepic.scan import (
    Found,
    ImportFolderError,
    Skipped,
    Unreadable,
    cannot_process,
    check_import_folder,
    display,
    scan,
)
from facepic.statuses import SkipKind, Status

SKIP_LABELS: dict[str, tuple[str, str]] = {  # SkipKind -> labels; counts read from the ledger are plain str
    SkipKind.NOT_A_PHOTO: ("file that is not a photo", "files that are not photos"),
    SkipKind.HIDDEN: ("hidden file or folder", "hidden files or folders"),
    SkipKind.RAW_JPEG_PAIR: ("RAW file paired with its JPEG", "RAW files paired with their JPEGs"),
    SkipKind.SIDECAR: ("XMP sidecar of a photo", "XMP sidecars of photos"),
    SkipKind.LINK: ("symbolic link not followed", "symbolic links not followed"),
    SkipKind.FOLDER: ("unreadable folder", "unreadable folders"),
    SkipKind.SPECIAL: ("special file", "special files"),
    SkipKind.SEEN: ("folder scanned already", "folders scanned already"),
}


def count_skipped(counts: dict[str, int]) -> str:
    """``skipped 95 files that are not photos, 1 unreadable folder``, or "" for none."""
    parts = [
        f"{counts[c]:,} {SKIP_LABELS.get(c, (c, c))[counts[c] != 1]}"
        for c in [*SKIP_LABELS, *sorted(set(counts) - set(SKIP_LABELS))]
        if counts.get(c)
    ]
    return "skipped " + ", ".join(parts) if parts else ""


@dataclass
class Summary:
    """What became of every file a run looked at, or (``from_ledger``, for `status`) of every
    file the ledger holds; one line for the user, the same for both."""

    photos: int = 0  # photo files considered (a RAW+JPEG pair counts once)
    done: int = 0
    changed: int = 0  # of those done, files whose new content replaced an older version
    faces: int = 0
    no_face: int = 0
    already: int = 0
    duplicates: int = 0
    queued: int = 0  # handed on; done or failed once its outcome is known
    failed: int = 0
    skipped_failed: int = 0  # failed in an earlier run, not tried again
    skipped: dict[str, int] = field(default_factory=dict)  # category -> files
    xmp_names: int = 0  # names of XMP face regions read
    xmp_matched: int = 0  # of those, given to a detected face
    whole_ledger: bool = False  # the ledger's counts (`status`), not one run's
    not_uploaded: int | None = None  # of those done; None where nothing is uploaded

    @classmethod
    def from_ledger(cls, state: LedgerState, uploads: bool) -> Summary:
        """The counts of every path in the ledger; ``not_uploaded`` only where originals are
        uploaded (``uploads``)."""
        counts = state.counts()
        summary = cls(
            duplicates=counts[Status.DUPLICATE],
            queued=counts[Status.QUEUED],
            failed=counts[Status.FAILED],
            whole_ledger=True,
        )
        done = list(state.entries(Status.DONE))
        for entry in done:
            summary._add_done(int(entry.get("faces") or 0), bool(entry.get("replaced")))
        summary.photos = summary.done + summary.failed + summary.duplicates + summary.queued
        for entry in state.entries(Status.SKIPPED):
            category = entry.get("category", "other")
            summary.skipped[category] = summary.skipped.get(category, 0) + 1
        if uploads:
            summary.not_uploaded = sum(1 for e in done if not e.get("uploaded"))
        return summary

    def finished(self, job: Job) -> None:
        """A queued photo's outcome."""
        if job.get("error"):
            self.finished_failed()
        else:
            self.finished_done(
                int(job.get("faces") or 0),
                bool(job.get("replaced")),
                int(job.get("xmp_names") or 0),
                int(job.get("xmp_matched") or 0),
            )

    def finished_failed(self) -> None:
        """A queued photo failed."""
        self.queued -= 1
        self.failed += 1

    def finished_done(self, faces: int, replaced: bool, xmp_names: int = 0, xmp_matched: int = 0) -> None:
        """A queued photo is done, with ``faces`` faces; ``replaced``: an older version of it."""
        self.queued -= 1
        self._add_done(faces, replaced)
        self.xmp_names += xmp_names
        self.xmp_matched += xmp_matched

    def _add_done(self, faces: int, replaced: bool) -> None:
        self.done += 1
        self.changed += replaced
        self.faces += faces
        self.no_face += faces == 0

    @property
    def acted(self) -> bool:
        """Whether photos were taken (done, queued, failed) or found duplicates: worth a line."""
        return bool(self.done or self.queued or self.failed or self.duplicates)

    def line(self) -> str:
        """``photos 4: done 1 (faces 1, no face 0), already done 0, duplicates 0, failed 3``."""
        skipped = count_skipped(self.skipped)
        return f"photos {self.photos:,}: " + ", ".join(self._parts()) + (f"; {skipped}" if skipped else "")

    def _parts(self) -> list[str]:
        # `enqueue` without --wait knows no outcome; the ledger always has one to tell.
        parts = (
            [f"done {self.done:,} (faces {self.faces:,}, no face {self.no_face:,})"]
            if self.done or not self.queued or self.whole_ledger
            else []
        )
        if self.changed:
            parts.append(f"changed {self.changed:,}")
        if not self.whole_ledger:  # the ledger's done photos are all done already
            parts.append(f"already done {self.already:,}")
        parts.append(f"duplicates {self.duplicates:,}")
        # In the ledger, a queued photo may be in a queue or left by an interrupted run: pending.
        if self.whole_ledger:
            parts.append(f"pending {self.queued:,}")
        elif self.queued:
            parts.append(f"queued {self.queued:,}")
        parts.append(f"failed {self.failed:,}")
        if self.not_uploaded is not None:
            parts.append(f"not uploaded {self.not_uploaded:,}")
        if self.xmp_names:
            parts.append(f"names from XMP {self.xmp_names:,} ({self.xmp_matched:,} matched)")
        if self.skipped_failed:
            parts.append(f"failed earlier {self.skipped_failed:,} (--retry-failed takes them again)")
        return parts


def _stat_matches(entry: dict, found: Found) -> bool:
    return entry.get("size") == found.size and entry.get("mtime_ns") == found.mtime_ns


class Planner:
    """Walks an import folder against the ledger and yields the jobs to run."""

    def __init__(
        self,
        ledger: Ledger,
        model: str,
        upload: bool,
        retry_failed: bool = False,
        report: Callable[[str], None] = lambda line: None,
        record_queued: bool = True,
        follow_links: bool = False,
        retire: Callable[[str, str], Replaced | None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.model = model
        self.upload = upload
        self.retry_failed = retry_failed
        self.report = report
        self.record_queued = record_queued
        self.follow_links = follow_links
        self.retire = retire
        self._queued_now: set[str] = set()
        self.summary = Summary()
        self.state: LedgerState = ledger.read()
        # Watching a folder: a file is taken only once ``steady(found)`` says it stopped
        # changing (still being copied otherwise); the others wait for a later look.
        self.steady: Callable[[Found], bool] | None = None
        self.waiting = 0

    def _error(self, file: Path, reason: str) -> None:
        self.report(cannot_process(file, reason))

    def check_root(self, root: Path) -> Path:
        """The import folder, or ImportFolderError: missing, unreadable or empty (an empty
        folder is most often a drive that is not mounted)."""
        root = check_import_folder(root)
        try:
            empty = not any(True for _ in root.iterdir())
        except OSError as e:
            raise ImportFolderError(f"import folder {root} cannot be read ({e.strerror})") from None
        if empty and self.steady is None:  # a watched folder may well be empty for now
            known = any(r == str(root) for r, _ in self.state.by_path)
            raise ImportFolderError(
                f"import folder {root} is empty"
                + (", but the ledger holds photos from it" if known else "")
                + " (is the drive mounted? check the path)"
            )
        return root

    def new_jobs(self, root: Path, looked_at: Callable[[], None] = lambda: None) -> Iterator[Job]:
        """The jobs of the new photos under ``root``, each file hashed as the scan meets it;
        ``looked_at()`` after each file the scan saw (a progress bar)."""
        root = self.check_root(root)
        yield from self.jobs_of(root, self._walk(root, looked_at))  # both lazy: a file at a time

    def to_hash(
        self, root: Path, looked_at: Callable[[], None] = lambda: None, first: Callable[[], None] = lambda: None
    ) -> list[Found]:
        """The scan of ``root`` without reading a file: the photos that must be hashed to know
        whether they are new (``jobs_of``), everything else counted and recorded. ``first()``
        as the first of them is found, while the scan goes on."""
        found: list[Found] = []
        for item in self._walk(self.check_root(root), looked_at):
            if not found:
                first()
            found.append(item)
        return found

    def jobs_of(
        self, root: Path, found: Iterable[Found], passed_over: Callable[[], None] = lambda: None
    ) -> Iterator[Job]:
        """The jobs of those of ``found`` (under ``root``) whose content is new, each hashed when
        the caller asks for the next; ``passed_over()`` for each that is not (a duplicate, the
        same photo again, or failed)."""
        root_key = str(root)
        for item in found:
            job = self._consider(root_key, item)
            if job is None:
                passed_over()
                continue
            yield job
            entry = {k: job[k] for k in ("root", "sha256", "image_id", "size", "mtime_ns")}
            entry.update(path=job["path"], status=Status.QUEUED)
            if self.record_queued:
                self._record(entry)
            else:
                self.state.add(entry)
                self._queued_now.add(job["sha256"])
            self.summary.queued += 1

    def _walk(self, root: Path, looked_at: Callable[[], None]) -> Iterator[Found]:
        """The photos under ``root`` to hash; the rest (skipped, unreadable, unchanged since the
        ledger saw them, still being copied) counted and recorded."""
        root_key = str(root)
        for item in scan(root, follow_links=self.follow_links):
            looked_at()
            if isinstance(item, Skipped):
                self._skipped(root_key, item)
                continue
            self.summary.photos += 1
            if isinstance(item, Unreadable):
                self._failed(root_key, item.file, item.path, item.reason, None, None)
                continue
            if self._unchanged(self.state.by_path.get((root_key, item.path)), item):
                continue
            if self.steady is not None and not self.steady(item):
                self.summary.photos -= 1
                self.waiting += 1
                continue
            yield item

    def _skipped(self, root: str, item: Skipped) -> None:
        counts = self.summary.skipped
        counts[item.category] = counts.get(item.category, 0) + 1
        if not item.quiet:
            self.report(f"skipped: {display(item.file)}: {item.reason}")
        known = self.state.by_path.get((root, item.path))
        if known is None or known.get("status") != Status.SKIPPED or known.get("reason") != item.reason:
            entry: dict[str, object] = {
                "path": item.path,
                "root": root,
                "status": Status.SKIPPED,
                "reason": item.reason,
                "category": item.category,
            }
            if item.folder:
                entry["folder"] = True
            self._record(entry)

    def _record(self, entry: dict) -> None:
        self.state.add(self.ledger.append(entry))

    def _pending(self, entry: dict) -> bool:
        """A ``queued`` entry left by an earlier embedded run: it was never finished."""
        return (
            entry.get("status") == Status.QUEUED
            and not self.record_queued
            and entry.get("sha256") not in self._queued_now
        )

    def _consider(self, root: str, found: Found) -> Job | None:
        """The job of ``found``, or None: unreadable, or content the ledger knows (each counted,
        and recorded where the ledger learns something)."""
        sha = self._hash(root, found)
        if sha is None or self._known_content(root, found, sha):
            return None
        return Job(
            image_id=ids.image_id(sha),
            sha256=sha,
            file=str(found.file),
            root=root,
            path=found.path,
            size=found.size,
            mtime_ns=found.mtime_ns,
            model=self.model,
            upload=self.upload,
            companions=list(found.companions),
        )

    def _unchanged(self, entry: dict | None, found: Found) -> bool:
        """The ledger has this file with the same size and mtime and nothing to do again
        (counted): it is not read."""
        if entry is None or not _stat_matches(entry, found):
            return False
        status = entry.get("status")
        if (status == Status.FAILED and self.retry_failed) or self._pending(entry):
            return False
        if status == Status.FAILED:
            self.summary.skipped_failed += 1
        else:
            self.summary.already += 1
        return True

    def _hash(self, root: str, found: Found) -> str | None:
        """The file's SHA-256, or None: it failed (empty, or it cannot be read)."""
        if found.size == 0:  # every empty file has the same hash: never a duplicate, just bad
            self._failed(root, found.file, found.path, "empty file (0 bytes)", found.size, found.mtime_ns)
            return None
        try:
            return ids.sha256_file(found.file)
        except OSError as e:
            reason = f"cannot read file ({e.strerror or type(e).__name__})"
            self._failed(root, found.file, found.path, reason, found.size, found.mtime_ns)
            return None

    def _known_content(self, root: str, found: Found, sha: str) -> bool:
        """Whether the ledger's line for this content settles the file (counted and recorded):
        a duplicate of a photo at another path, the same photo again, or failed before."""
        known = self.state.by_hash.get(sha)
        if known is None or self._pending(known):
            return False
        base = {
            "path": found.path,
            "root": root,
            "sha256": sha,
            "image_id": ids.image_id(sha),
            "size": found.size,
            "mtime_ns": found.mtime_ns,
        }
        same_path = (known.get("root"), known.get("path")) == (root, found.path)
        status = known.get("status")
        if status in (Status.DONE, Status.QUEUED) and not same_path:
            self.summary.duplicates += 1
            self._retire_old_version(root, found, sha)
            self._record(
                {
                    **base,
                    "status": Status.DUPLICATE,
                    "duplicate_of": known.get("path"),
                    "duplicate_root": known.get("root"),
                }
            )
            return True
        if status in (Status.DONE, Status.QUEUED) and same_path:
            self.summary.already += 1
            self._record({**known, **base, "time": None})  # refresh size and mtime
            return True
        if status == Status.FAILED and not self.retry_failed:
            self.summary.skipped_failed += 1
            return True
        return False

    def _retire_old_version(self, root: str, found: Found, sha: str) -> None:
        """A done photo whose file now holds content stored under another path (a duplicate):
        its old version goes (``retire``, given by the caller that owns the database), as a
        new version processed would replace it in the index stage."""
        before = self.state.by_path.get((root, found.path))
        if self.retire is None or before is None or before.get("status") != Status.DONE:
            return
        if before.get("sha256") in (None, sha):
            return
        replaced = self.retire(root, found.path)
        if replaced is not None:
            from facepic import versions  # the database's side: loaded by the runs that retire

            self.report(versions.note(display(found.file), replaced))

    def _failed(self, root: str, file: Path, path: str, reason: str, size: int | None, mtime_ns: int | None) -> None:
        self.summary.failed += 1
        self._error(file, reason)
        self._record(
            {"path": path, "root": root, "status": Status.FAILED, "reason": reason, "size": size, "mtime_ns": mtime_ns}
        )
        return None

    def pending_jobs(self) -> Iterator[Job]:
        """Photos still `queued`: to send again when a broker crash lost their chains."""
        for entry in list(self.state.entries(Status.QUEUED)):
            if not entry.get("sha256"):
                continue
            self.summary.photos += 1
            self.summary.queued += 1
            yield Job(
                image_id=entry["image_id"],
                sha256=entry["sha256"],
                file=str(Path(entry["root"]) / entry["path"]),
                root=entry["root"],
                path=entry["path"],
                size=entry.get("size"),
                mtime_ns=entry.get("mtime_ns"),
                model=self.model,
                upload=self.upload,
            )

    def upload_jobs(self) -> Iterator[Job]:
        """Photos processed with upload disabled, for ``--upload-only``."""
        for entry in list(self.state.entries(Status.DONE)):
            if entry.get("uploaded") or not entry.get("image_id"):
                continue
            file = Path(entry["root"]) / entry["path"]
            self.summary.photos += 1
            self.summary.queued += 1
            yield Job(
                image_id=entry["image_id"],
                sha256=entry["sha256"],
                file=str(file),
                root=entry["root"],
                path=entry["path"],
                size=entry.get("size"),
                mtime_ns=entry.get("mtime_ns"),
                model=entry.get("model") or self.model,
                upload=True,
                upload_only=True,
                faces=entry.get("faces", 0),
                ext=entry.get("ext") or ids.safe_extension(entry["path"]),
            )


class Steady:
    """Whether a file has stopped changing: the same size and modification time at two looks
    in a row, and not modified for ``quiet`` seconds (a file being copied grows or is touched).
    A file older than a minute at its first look (there before the watch began) is taken at once."""

    def __init__(self, quiet: float) -> None:
        self.quiet = quiet
        self.seen: dict[str, tuple[int, int]] = {}

    def __call__(self, found: Found) -> bool:
        looks = (found.size, found.mtime_ns)
        before = self.seen.get(str(found.file))
        self.seen[str(found.file)] = looks
        age = time.time() - found.mtime_ns / 1e9
        return age >= self.quiet and (before == looks or (before is None and age >= 60))
