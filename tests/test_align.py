"""FacePic's face alignment against InsightFace's (scikit-image's similarity transform), and the
pool's imports without InsightFace's package ``__init__`` modules."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from facepic import align

REPO = Path(__file__).parent.parent


def _landmarks(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Five points as a detector gives them: the template turned, scaled, moved and jittered,
    and a few that are nothing like a face (a line, a mirror image, a tiny face)."""
    out = []
    for _ in range(n):
        angle = rng.uniform(-np.pi, np.pi)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = align.ARCFACE_TEMPLATE @ turn.T * rng.uniform(0.05, 30) + rng.uniform(-2000, 6000, 2)
        out.append((points + rng.normal(0, rng.uniform(0, 8), points.shape)).astype(np.float32))
    line = np.stack([np.linspace(0, 100, 5), np.linspace(10, 60, 5)], axis=1).astype(np.float32)
    mirrored = align.ARCFACE_TEMPLATE * np.array([-1, 1], dtype=np.float32) + 300
    return [*out, line, mirrored, align.ARCFACE_TEMPLATE / 50 + 7]


@pytest.mark.parametrize("size", [112, 128, 224])
def test_the_crop_transform_is_insightfaces(size: int) -> None:
    face_align = pytest.importorskip("insightface.utils.face_align")
    for points in _landmarks(np.random.default_rng(size), 400):
        ours = align.crop_matrix(points, size)
        theirs = face_align.estimate_norm(points, size)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(theirs).max())))


def test_the_crops_are_insightfaces_pixel_for_pixel() -> None:
    face_align = pytest.importorskip("insightface.utils.face_align")
    rng = np.random.default_rng(7)
    photo = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for points in _landmarks(rng, 50):
        points = (points - points.mean(axis=0)) / max(1.0, float(np.ptp(points))) * 120 + [320, 240]
        points = points.astype(np.float32)
        np.testing.assert_array_equal(align.norm_crop(photo, points, 112), face_align.norm_crop(photo, points, 112))


def test_an_input_size_the_template_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="112 or 128"):
        align.crop_matrix(align.ARCFACE_TEMPLATE, 100)


def _imports_of(code: str, path: list[Path] | None = None) -> set[str]:
    env_path = ":".join(str(p) for p in [*(path or []), REPO])
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return set(out.stdout.split())


def test_the_pools_fork_server_imports_neither_requests_nor_scipy() -> None:
    pytest.importorskip("insightface")
    from facepic.poolserver import POOL_PRELOAD

    loaded = _imports_of(f"import importlib\nfor m in {list(POOL_PRELOAD)!r}: importlib.import_module(m)")
    assert {"facepic.engine_parts", "insightface.model_zoo.scrfd", "insightface.model_zoo.arcface_onnx"} <= loaded
    assert not {m for m in loaded if m.split(".")[0] in ("requests", "urllib3", "scipy")}
    assert "insightface.app" not in loaded


def test_another_insightface_layout_is_imported_the_normal_way(tmp_path: Path) -> None:
    """An InsightFace whose modules need their package's ``__init__`` to have run."""
    package = tmp_path / "insightface"
    for folder, init in ((package, "STARTED = True\n"), (package / "model_zoo", ""), (package / "utils", "")):
        folder.mkdir()
        (folder / "__init__.py").write_text(init)
    (package / "model_zoo" / "scrfd.py").write_text(
        textwrap.dedent(
            """
            from insightface import STARTED  # fails unless the package's __init__ ran

            class SCRFD:
                pass
            """
        )
    )
    (package / "model_zoo" / "arcface_onnx.py").write_text("class ArcFaceONNX:\n    pass\n")
    loaded = _imports_of(
        "import facepic.engine_parts as p, insightface\n"
        "assert insightface.STARTED and p.SCRFD.__module__ == 'insightface.model_zoo.scrfd'",
        [tmp_path],
    )
    assert "insightface.model_zoo.scrfd" in loaded
