"""The work file: a photo's faces between the detect and the index stage (and, for a
thumbnails task in another process, its decoded pixels). Written atomically; dropped once
the photo is logged.

The format is a few small arrays in a row behind a JSON line naming them: reading one back
takes about 60 microseconds, against about 0.8 ms for the .npz it replaced (a zip archive and
one parsed header per array), a cost the serial index stage paid once per photo. An .npz left
by an earlier version (a chain in flight across an upgrade) is still read.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from facepic.datafolder import DataFolder, replace_atomically
from facepic.errors import first_line
from facepic.pipeline.job import Job

MAGIC = b"FACEPIC-WORK-1\n"


class WorkFileError(ValueError):
    """A work file that cannot be read back (torn, foreign, an .npz that is not ours): the photo
    fails with this one line, and `--retry-failed` takes it again from the start."""


def save(folder: DataFolder, image_id: str, arrays: dict[str, np.ndarray]) -> None:
    replace_atomically(folder.work_file(image_id), lambda f: _write(f, arrays))


def _write(f: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    names = [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
    f.write(MAGIC + json.dumps(names).encode() + b"\n")
    for a in arrays.values():
        f.write(a.tobytes())  # in C order, whatever the array's layout


def _read(path: Path) -> dict[str, np.ndarray]:
    data = bytearray(path.read_bytes())  # writable arrays, as np.load gave
    if not data.startswith(MAGIC):
        raise ValueError("not a FacePic work file")
    end = data.find(b"\n", len(MAGIC))
    try:
        names = json.loads(data[len(MAGIC) : end])
        arrays, offset = {}, end + 1
        for name, dtype, shape in names:
            kind = np.dtype(dtype)
            count = math.prod(shape)
            arrays[name] = np.frombuffer(data, kind, count, offset).reshape(shape)
            offset += count * kind.itemsize
    except (ValueError, TypeError) as e:  # a torn or foreign file: np.frombuffer says too short
        raise ValueError(f"not a whole FacePic work file ({e})") from None
    if offset != len(data):
        raise ValueError("not a whole FacePic work file (its length)")
    return arrays


def kept(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The work as ``load`` reads it back, from the arrays ``save`` would have written: what
    `facepic run`'s pool hands its main process with the photo's job instead of a file (the
    index stage runs there; a file written, read and deleted cost each photo three file
    operations)."""
    work: dict[str, Any] = {k: a for k, a in arrays.items() if k not in ("info", "scale")}
    work["info"] = json.loads(arrays["info"].tobytes().decode())
    return work


def held(folder: DataFolder, job: Job, pixels: bool = False) -> dict[str, Any] | None:
    """The photo's work: the one its job carries (``kept``), else its work file's (``load``)."""
    if "work" in job:
        return dict(job["work"])  # a copy: a stage may take from it, a retry needs it whole
    return load(folder, job["image_id"], pixels)


def save_pixels(folder: DataFolder, image_id: str, rgb: np.ndarray) -> None:
    replace_atomically(folder.pixels_file(image_id), lambda f: np.save(f, rgb, allow_pickle=False))


def load(folder: DataFolder, image_id: str, pixels: bool = False) -> dict[str, Any] | None:
    """The work file's arrays and ``info``; with ``pixels``, ``rgb`` and ``scale`` when kept."""
    path = folder.work_file(image_id)
    legacy = path.with_suffix(".npz")
    found = path if path.exists() else legacy if legacy.exists() else None
    if found is None:
        return None
    try:
        arrays = _read(path) if found == path else _read_npz(legacy)
        info = json.loads(arrays["info"].tobytes().decode())
    except (ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise WorkFileError(f"its work file {found.name} cannot be read ({first_line(e)})") from None
    work: dict[str, Any] = {k: a for k, a in arrays.items() if k != "scale" or pixels}
    if pixels:
        try:
            work["rgb"] = np.load(folder.pixels_file(image_id), allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            pass
    work["info"] = info
    return work


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """A work file of a version before the raw format (a chain in flight across an upgrade)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def drop(folder: DataFolder, image_id: str) -> None:
    """The photo's work file, and its pixels if a photo that failed early left them."""
    path = folder.work_file(image_id)
    path.unlink(missing_ok=True)
    path.with_suffix(".npz").unlink(missing_ok=True)
    folder.pixels_file(image_id).unlink(missing_ok=True)
