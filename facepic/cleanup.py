"""Wiping FacePic's data on purpose: the plan is shown first, and only FacePic's keys go."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from facepic.db import Library
from facepic.settings import Settings
from facepic.storage import is_facepic_key, open_store


@dataclass
class CleanupPlan:
    database: dict[str, int]
    keys: list[str]
    store: str
    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [
            "database: " + ", ".join(f"{k} {v}" for k, v in self.database.items()),
            f"{self.store}: {len(self.keys)} FacePic objects",
        ]
        lines += [f"local: {p}" for p in self.files]
        return lines


def plan(settings: Settings, library: Library) -> CleanupPlan:
    store = open_store(settings)
    keys = [k for k in store.list_keys() if is_facepic_key(k)] if _store_exists(settings) else []
    files = [
        p
        # The folder store is not here: its objects go through delete_keys, FacePic's keys only.
        for p in (settings.ledger_path, settings.thumbnails_dir, settings.work_dir, settings.data_dir / "persons.html")
        if p.exists()
    ]
    return CleanupPlan(library.counts(), keys, store.describe(), files)


def _store_exists(settings: Settings) -> bool:
    return settings.bucket_configured or settings.objects_dir.exists()


def execute(plan: CleanupPlan, settings: Settings, library: Library) -> None:
    library.drop_all()
    if plan.keys:
        open_store(settings).delete_keys(plan.keys)
    for path in plan.files:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
