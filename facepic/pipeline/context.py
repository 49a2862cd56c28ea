"""What the stages of one process share: settings, and lazily, models and connections."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from facepic import snapshot, storage
from facepic.db import Library
from facepic.detect import FaceEngine
from facepic.ledger import Ledger
from facepic.matching import PersonIndex
from facepic.models import ModelChoice, resolve
from facepic.runtime import Runtime
from facepic.settings import Settings
from facepic.storage import ObjectStore

logger = logging.getLogger(__name__)

EPOCH_CHECK_SECONDS = 2.0


class Context:
    """What the stages of one process share: settings, and lazily, models and connections."""

    def __init__(
        self,
        settings: Settings,
        processes: int = 1,
        library: Library | None = None,
        store: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.folder = settings.folder
        self.ledger = Ledger(self.folder.ledger)
        self._library = library
        self._store = store
        self._engines: dict[str, FaceEngine] = {}
        self._loaded: dict[tuple[str, str], FaceEngine] = {}  # by (pack name, location)
        self._engine_lock = threading.Lock()
        self._matchers: dict[str, PersonIndex] = {}
        self._claimed: set[str] = set()
        self._epoch: str | None = None
        self._epoch_checked = 0.0
        self._folders: set[str] = set()
        # The last photo decoded by detect, for thumbnails when it runs next in this process.
        self.last_decoded: tuple[str, Any] | None = None
        # Keep the decoded pixels in the work file for a thumbnails task in another process
        # (Celery); `facepic run` runs both stages in one process and needs no copy.
        self.pixels_in_work_file = True
        self.best_scores: dict[str, float] = {}
        # photo (root, path, sha256) -> uploaded, for every photo this ledger has as done
        self.logged_done: dict[tuple[str, str, str], bool] | None = None
        self._ledger_seen: tuple[int, int] = (0, 0)  # inode, size when logged_done was last right

    @property
    def library(self) -> Library:
        if self._library is None:
            self._library = Library(
                self.settings.mongodb_uri, self.settings.mongodb_db, int(self.settings.db_timeout * 1000)
            )
        return self._library

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = storage.open_store(self.settings)
        return self._store

    def close(self) -> None:
        """Close connections (the embedded server can only shut down cleanly after this)."""
        if self._library is not None:
            self._library.close()
            self._library = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def model_choice(self, source: str) -> ModelChoice:
        return resolve(source, self.settings.model_root)

    def engine(self, source: str) -> FaceEngine:
        """The face engine of a model source, loaded once per process (two sources that name
        the same pack, "auto" and "buffalo_l" say, share it); safe to call from a thread that
        loads it ahead of the first photo."""
        with self._engine_lock:
            if source not in self._engines:
                choice = self.model_choice(source)
                key = (choice.name, choice.location)
                if key not in self._loaded:
                    runtime = Runtime.for_settings(self.settings, self.processes)
                    self._loaded[key] = FaceEngine(choice, self.settings.detect_size, runtime)
                self._engines[source] = self._loaded[key]
            return self._engines[source]

    def matcher(self, model: str) -> PersonIndex:
        if model not in self._matchers:
            matcher = PersonIndex(self.settings.rules)
            started = time.monotonic()
            known = snapshot.load(self.library, model)
            persons, matrix = known.assigned()
            if persons:
                matcher.add_many(persons, matrix)
            logger.info(
                "index of %s assigned faces (%s) ready in %.1f s",
                len(persons),
                known.source,
                time.monotonic() - started,
            )
            self._matchers[model] = matcher
        return self._matchers[model]

    def persons_known(self, model: str) -> int | None:
        """The persons the index stage's matcher for ``model`` holds (a progress figure), or
        None before it has read them."""
        matcher = self._matchers.get(model)
        return None if matcher is None else matcher.persons

    def forget_matchers(self) -> None:
        """Read the persons' faces from MongoDB again at the next photo (a batch failed
        midway: the matcher may know faces that were never stored)."""
        self._matchers.clear()
        self.best_scores.clear()

    def claim_model(self, model: str) -> None:
        """Record the library's model once; if the library was wiped since (another epoch,
        looked at every few seconds at most), forget what was cached of the old one."""
        now = time.monotonic()
        if now - self._epoch_checked >= EPOCH_CHECK_SECONDS or model not in self._claimed:
            self._epoch_checked = now
            epoch = self.library.epoch()
            if epoch is None or epoch != self._epoch:
                self._claimed.clear()
                self._matchers.clear()
                self.best_scores.clear()
                self._folders.clear()
        if model not in self._claimed:
            self.library.claim_model(model)
            self._claimed.add(model)
            self._epoch = self.library.epoch()

    def upsert_folders(self, docs: list[dict[str, Any]]) -> None:
        """Folders not written by this process yet (a drive has few, a photo many ancestors)."""
        new = [d for d in docs if d["_id"] not in self._folders]
        if new:
            self.library.upsert_folders(new)
            self._folders.update(d["_id"] for d in new)

    def person_best_scores(self, person_ids: set[str]) -> dict[str, float]:
        """Cover scores of persons, cached: the index worker is the only writer of covers."""
        missing = person_ids - self.best_scores.keys()
        if missing:
            self.best_scores.update(self.library.best_scores(missing))
        return {pid: self.best_scores.get(pid, -1.0) for pid in person_ids}
