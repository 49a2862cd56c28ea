"""The services one process's stages share: settings, the ledger, and lazily, the face
engines, the database, the bucket and the persons' matchers. What a stage keeps for itself
between photos stays in the stage's module (``Context.state``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from facepic import storage
from facepic.ledger import Ledger
from facepic.models import ModelChoice, resolve
from facepic.settings import Settings
from facepic.storage import ObjectStore

if TYPE_CHECKING:  # the engines and matchers are imported when first used: a command that
    # reads the library starts without NumPy, OpenCV or the runtimes, and the pool's processes
    # (which never meet the database) without pymongo
    from facepic.db import Library
    from facepic.detect import FaceEngine
    from facepic.matching import PersonIndex

logger = logging.getLogger(__name__)

EPOCH_CHECK_SECONDS = 2.0
State = TypeVar("State")


class OfLibrary:
    """The base of a stage's state made of what it read from the library (cover scores, say):
    forgotten with the matchers (``Context.forget_library``)."""


class Context:
    """The services the stages of one process share: settings, and lazily, models and connections."""

    def __init__(
        self,
        settings: Settings,
        processes: int = 1,
        library: Library | None = None,
        store: ObjectStore | None = None,
        stages_together: bool = False,
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
        # A photo's pool stages run one after the other in this process (`facepic run`'s pool),
        # so none needs what another left for a process of its own (a Celery chain's next task).
        self.stages_together = stages_together
        self._states: dict[type, Any] = {}

    @property
    def library(self) -> Library:
        if self._library is None:
            from facepic.db import Library

            self._library = Library(
                self.settings.mongodb_uri, self.settings.mongodb_db, int(self.settings.db_timeout * 1000)
            )
        return self._library

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = storage.open_store(self.settings)
        return self._store

    def on_disk(self) -> None:
        """The library's writes so far are on disk (``Library.on_disk``); nothing to do in a
        process that has not opened it."""
        if self._library is not None:
            self._library.on_disk()

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
                    from facepic.detect import FaceEngine
                    from facepic.runtime import Runtime

                    runtime = Runtime.for_settings(self.settings, self.processes)
                    self._loaded[key] = FaceEngine(choice, self.settings.detect_size, runtime)
                self._engines[source] = self._loaded[key]
            return self._engines[source]

    def matcher(self, model: str) -> PersonIndex:
        if model not in self._matchers:
            from facepic import snapshot
            from facepic.matching import PersonIndex, Rules

            matcher = PersonIndex(Rules.from_settings(self.settings))
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

    def state(self, kind: type[State]) -> State:
        """What one stage keeps in this process between photos: an instance of the stage's own
        ``kind``, made at first use and dropped by ``forget_library``."""
        if kind not in self._states:
            self._states[kind] = kind()
        return self._states[kind]

    def forget_library(self) -> None:
        """Forget what this process read of the library (the matchers, the stages' ``OfLibrary``
        states): read again at the next photo. A batch failed midway and the matcher may know
        faces that were never stored; old versions of photos were removed; the library was wiped."""
        self._matchers.clear()
        self._states = {kind: state for kind, state in self._states.items() if not issubclass(kind, OfLibrary)}

    def claim_model(self, model: str) -> None:
        """Record the library's model once; if the library was wiped since (another epoch,
        looked at every few seconds at most), forget what was held of the old one."""
        now = time.monotonic()
        if now - self._epoch_checked >= EPOCH_CHECK_SECONDS or model not in self._claimed:
            self._epoch_checked = now
            epoch = self.library.epoch_and_revision()
            if epoch is None or epoch != self._epoch:
                self._claimed.clear()
                self.forget_library()
        if model not in self._claimed:
            self.library.claim_model(model)
            self._claimed.add(model)
            self._epoch = self.library.epoch_and_revision()
