"""Wiping FacePic's data on purpose: the plan is shown first, and only what this library made goes.

An object in the bucket is deleted only when this library recorded its key: in the
database (images' originals and thumbnails, persons' covers) or in the ledger (a photo
uploaded but not indexed yet, when a crash came between). A key that merely looks like
FacePic's (``<uuid>.jpg``) but was made by another library or app sharing the bucket stays.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from facepic import ids, storage
from facepic.db import COLLECTIONS, Library
from facepic.ledger import Ledger
from facepic.report import counted
from facepic.settings import Settings
from facepic.statuses import Status
from facepic.storage import open_store


@dataclass
class CleanupPlan:
    database: dict[str, int]
    keys: list[str]
    store: str
    files: list[Path] = field(default_factory=list)
    staged: int = 0  # faces staged by `reembed --no-switch`

    def lines(self) -> list[str]:
        lines = [
            "database: "
            + ", ".join(f"{k} {v}" for k, v in self.database.items())
            + (f" (and {counted(self.staged, 'face')} staged for re-embedding)" if self.staged else ""),
            f"{self.store}: {counted(len(self.keys), 'FacePic object')}",
        ]
        lines += [f"local: {p}" for p in self.files]
        return lines


def _ledger_keys(settings: Settings) -> set[str]:
    keys: set[str] = set()
    for entry in Ledger(settings.ledger_path).read().by_path.values():
        image_id = entry.get("image_id")
        if image_id and entry.get("status") in (Status.DONE, Status.QUEUED, Status.FAILED):
            keys.add(storage.original_key(image_id, entry.get("ext") or ids.safe_extension(entry["path"])))
            keys.add(storage.thumbnail_key(image_id))
    return keys


def plan(settings: Settings, library: Library) -> CleanupPlan:
    ours = library.object_keys() | _ledger_keys(settings)
    store = open_store(settings)
    keys = [k for k in store.list_keys() if k in ours] if _store_exists(settings) else []
    files = [
        p
        # The folder store is not here: its objects go through delete_keys, this library's keys only.
        for p in settings.folder.wipeable()
        if p.exists()
    ]
    return CleanupPlan(library.counts(), keys, store.describe(), files, library.staged_faces())


def _store_exists(settings: Settings) -> bool:
    return settings.bucket_configured or settings.folder.objects.exists()


def execute(plan: CleanupPlan, settings: Settings, library: Library) -> None:
    if plan.keys:  # objects first: the database and ledger are the record of what is ours
        open_store(settings).delete_keys(plan.keys)
    library.drop_all()
    for path in plan.files:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


__all__ = ["COLLECTIONS", "CleanupPlan", "execute", "plan"]
