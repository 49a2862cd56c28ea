"""The work file: a photo's faces between the detect and the index stage (and, for a
thumbnails task in another process, its decoded pixels). Written atomically; dropped once
the photo is logged."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from facepic.datafolder import DataFolder, replace_atomically


def save(folder: DataFolder, image_id: str, arrays: dict[str, np.ndarray]) -> None:
    replace_atomically(folder.work_file(image_id), lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def save_pixels(folder: DataFolder, image_id: str, rgb: np.ndarray) -> None:
    replace_atomically(folder.pixels_file(image_id), lambda f: np.save(f, rgb, allow_pickle=False))


def load(folder: DataFolder, image_id: str, pixels: bool = False) -> dict[str, Any] | None:
    """The work file's arrays and ``info``; with ``pixels``, ``rgb`` and ``scale`` when kept."""
    path = folder.work_file(image_id)
    if not path.exists():
        return None
    with np.load(path) as data:
        work = {k: data[k] for k in data.files if k != "scale" or pixels}
    if pixels:
        try:
            work["rgb"] = np.load(folder.pixels_file(image_id), allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            pass
    work["info"] = json.loads(work["info"].tobytes().decode())
    return work


def drop(folder: DataFolder, image_id: str) -> None:
    """The photo's work file, and its pixels if a photo that failed early left them."""
    folder.work_file(image_id).unlink(missing_ok=True)
    folder.pixels_file(image_id).unlink(missing_ok=True)
