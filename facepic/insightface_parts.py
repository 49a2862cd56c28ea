"""The three parts of InsightFace that FacePic uses: its detector (SCRFD), its recognizer
(ArcFaceONNX) and its face alignment, imported without running the ``__init__`` of the
``insightface`` package and of its ``model_zoo`` and ``utils``.

Those ``__init__`` files import every model class, the analysis app, its liveness add-on and
its download helpers, with their dependencies (scipy's spatial index, requests, onnxruntime):
0.6 s of CPU, paid by every `facepic run` (its pool's fork server) and every CPU worker's
start, for nothing FacePic calls. Where the whole package is loaded already, it is used as it is.
"""

from __future__ import annotations

import importlib.util
import sys


def _bare(package: str) -> None:
    """``package`` in sys.modules as a namespace its submodules import from, its
    ``__init__`` not run; nothing when it is loaded already or not installed (the import of a
    part then says so)."""
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        return
    sys.modules[package] = importlib.util.module_from_spec(spec)


for _package in ("insightface", "insightface.model_zoo", "insightface.utils"):
    _bare(_package)

from insightface.model_zoo.arcface_onnx import ArcFaceONNX  # noqa: E402
from insightface.model_zoo.scrfd import SCRFD  # noqa: E402
from insightface.utils import face_align  # noqa: E402


def ensure_available(sub_dir: str, name: str, root: str) -> str:
    """InsightFace's download of a model pack into ``root`` (the pack's folder)."""
    from insightface.utils.storage import ensure_available as download

    return str(download(sub_dir, name, root=root))


__all__ = ["SCRFD", "ArcFaceONNX", "ensure_available", "face_align"]
