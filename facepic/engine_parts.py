"""The two parts of InsightFace the face engine uses, SCRFD and ArcFaceONNX, imported without
running the ``insightface``, ``insightface.model_zoo`` and ``insightface.utils`` package
``__init__`` modules.

Those import everything the package offers (its app, its model router, its download helpers
with requests, its liveness add-on with scipy.spatial): 0.3 s of a core that each `facepic run`
paid in its pool's fork server before the first photo, for modules the pool never uses. The
two modules themselves import numpy, cv2, onnx, onnxruntime and siblings in the same packages
(arcface_onnx imports ``face_align``, whose scikit-image import is lazy), which the import
system finds through the packages' paths without running their ``__init__``. The alignment
is FacePic's own (``facepic.align``).

Where that does not work (another InsightFace than the pinned one), the package is imported
the normal way.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

_PACKAGES = ("insightface", "insightface.model_zoo", "insightface.utils")


def _lean_packages() -> list[str]:
    """Put each package of ``_PACKAGES`` not imported yet into ``sys.modules`` with its path
    but without running its ``__init__``; the names put there."""
    put = []
    for name in _PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            break
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)  # as importing it would
        put.append(name)
    return put


def _import_parts() -> tuple[ModuleType, ModuleType]:
    import insightface.model_zoo.arcface_onnx
    import insightface.model_zoo.scrfd

    return insightface.model_zoo.scrfd, insightface.model_zoo.arcface_onnx


def _load() -> tuple[ModuleType, ModuleType]:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # as insightface's __init__ sets it
    put = _lean_packages()
    try:
        return _import_parts()
    except (ImportError, AttributeError):
        if not put:
            raise
    # Another layout: forget what was imported through the lean packages, import normally.
    for name in [n for n in sys.modules if n == "insightface" or n.startswith("insightface.")]:
        del sys.modules[name]
    return _import_parts()


_scrfd, _arcface = _load()
SCRFD = _scrfd.SCRFD
ArcFaceONNX = _arcface.ArcFaceONNX
