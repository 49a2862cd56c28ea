"""The face engine on a GPU, where a machine has one: FACEPIC_RUNTIME=auto takes onnxruntime's
CUDA provider only where an NVIDIA GPU is visible, and the embeddings it gives are the CPU's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facepic import runtime
from facepic.runtime import Runtime
from tests.conftest import PHOTOS


def test_auto_takes_cuda_only_where_a_gpu_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU is needed here: onnxruntime-gpu without a GPU is what a worker image meets on a
    # machine (or in a container) given none, and that cannot be produced otherwise.
    import onnxruntime

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(runtime, "gpu_visible", lambda: True)
    chosen = Runtime.resolve("auto")
    assert (chosen.backend, chosen.providers[0]) == ("onnxruntime", "CUDAExecutionProvider")
    assert chosen.describe().startswith("onnxruntime f32 with CUDA (auto: onnxruntime has CUDAExecutionProvider)")
    monkeypatch.setattr(runtime, "gpu_visible", lambda: False)
    chosen = Runtime.resolve("auto")
    assert "CUDAExecutionProvider" not in chosen.providers
    assert chosen.backend == ("openvino" if runtime._installed("openvino") else "onnxruntime")


def test_without_a_gpu_off_a_mac_the_providers_are_the_cpu_without_importing_onnxruntime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each process of a run asks: importing onnxruntime to learn it costs 0.045 s of CPU."""
    monkeypatch.setattr(runtime, "gpu_visible", lambda: False)
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setitem(runtime.sys.modules, "onnxruntime", None)  # importing it raises ImportError
    assert runtime.onnxruntime_providers() == ["CPUExecutionProvider"]
    monkeypatch.setattr(runtime, "gpu_visible", lambda: True)
    with pytest.raises(ImportError):
        runtime.onnxruntime_providers()  # with a GPU, onnxruntime is asked


def _cuda_here() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "this onnxruntime has no CUDA provider (the GPU image installs requirements/worker-cuda.txt)"
    if not runtime.gpu_visible():
        return "no NVIDIA GPU is visible on this machine"
    return ""


@pytest.mark.skipif(bool(_cuda_here()), reason=f"no GPU here: {_cuda_here()}")
def test_the_face_engine_on_the_gpu_finds_the_faces_the_cpu_finds(model_root: Path) -> None:
    from facepic.decode import decode
    from facepic.detect import FaceEngine
    from facepic.models import resolve

    choice = resolve("buffalo_s", model_root)
    gpu = FaceEngine(choice, 640, Runtime.resolve("auto"))
    cpu = FaceEngine(choice, 640, Runtime("onnxruntime", "f32", 1, ("CPUExecutionProvider",)))
    assert gpu.runtime.providers[0] == "CUDAExecutionProvider"
    for photo in sorted(PHOTOS.glob("*/*.jpg"))[:6]:
        rgb = decode(photo, 1280, 100_000_000).rgb
        on_gpu, on_cpu = gpu.detect(rgb), cpu.detect(rgb)
        assert len(on_gpu) == len(on_cpu)
        for a, b in zip(on_gpu, on_cpu):
            assert float(np.dot(a.embedding, b.embedding)) > 0.99
