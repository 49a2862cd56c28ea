"""Where the face models run, and the one place that builds their inference sessions.

- ``openvino``: the pack's ONNX files compiled by OpenVINO for the CPU, in bf16 where the CPU
  has bf16 instructions (AVX-512 BF16, AMX) and f32 elsewhere. 2 to 4x faster than
  onnxruntime on such CPUs (docs/performance.md, "Runtimes").
- ``onnxruntime``: the fallback, and the runtime of a user whose onnxruntime has CUDA or
  CoreML.
- ``auto``: onnxruntime where it has an accelerated provider, else OpenVINO where it is
  installed, else onnxruntime.

InsightFace's model classes take a session object; :class:`OpenVINOSession` is the part of
onnxruntime's ``InferenceSession`` they use, so their pre- and post-processing and alignment
stay InsightFace's own.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facepic.errors import FacePicError
from facepic.settings import RUNTIMES as CHOICES

# `import openvino` sends a usage event to Google Analytics unless its user opted out (a file
# under ~/intel, or CI=true): not from a self-hosted photo library's machines. OpenVINO falls
# back to its own no-op stub when the telemetry package cannot be imported.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

log = logging.getLogger(__name__)

ACCELERATED = ("CUDAExecutionProvider", "CoreMLExecutionProvider")
OPENVINO_PIN = "openvino==2026.4.1"


class RuntimeUnavailable(FacePicError):
    """The runtime asked for is not installed; the message says what to install or set."""


def default_threads(processes: int) -> int:
    """Inference threads per process so that processes x threads fits the cores."""
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes))


_blas_unlimited: int | None = None  # BLAS's threads in this process before its first limit


def blas_threads_unlimited() -> int:
    """BLAS's own number of threads in this process, before ``limit_blas_threads`` (its
    default: the cores this process may use, or OPENBLAS_NUM_THREADS); 1 without threadpoolctl."""
    global _blas_unlimited
    if _blas_unlimited is None:
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            return 1
        found = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
        _blas_unlimited = max(found, default=1)
    return _blas_unlimited


def limit_blas_threads(threads: int) -> None:
    """NumPy's BLAS (OpenBLAS) at ``threads`` threads in this process. Its extra threads spin
    after every matrix product: in a process that works beside a pool of busy processes, or
    does many small products (the index stage's matching), they burn a core for nothing
    (`facepic run` on 1,705 small photos: its main process 17.5 -> 9.3 core-seconds). Commands
    that are alone on the machine (recluster) keep them all. Without threadpoolctl: unchanged."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    blas_threads_unlimited()  # noted before the first limit
    threadpool_limits(max(1, threads), user_api="blas")


def limit_image_threads(threads: int) -> None:
    """OpenCV's threads (resizing, colour conversion, warping, the detector's input blob) at
    ``threads`` in this process. By default it runs one per core in each process, so a pool of
    one process per core ran twice as many threads as cores: on 1,705 LFW photos the pool's
    processes took 32 core-seconds, 29-31 with one thread each (bench/scaleout.py, the ceiling,
    always ran them with one)."""
    import cv2

    cv2.setNumThreads(max(1, threads))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules, as the enqueuer's tests do
        return False


def engine_installed() -> bool:
    """Whether this machine can run the face models at all (the enqueuer's image cannot)."""
    return _installed("openvino") or _installed("onnxruntime")


def onnxruntime_providers() -> list[str]:
    """Accelerated providers first where installed and usable, always ending with the CPU.
    onnxruntime-gpu lists CUDA whether or not the machine has a GPU: CUDA counts only where an
    NVIDIA GPU is visible (a container given none, a machine without one, runs on the CPU).
    Where neither accelerator can be (no GPU visible, not a Mac) onnxruntime is not imported:
    the answer is the CPU, and the import cost each process of `facepic run` 0.045 s of CPU."""
    if not gpu_visible() and sys.platform != "darwin":
        return ["CPUExecutionProvider"]
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    if not gpu_visible():
        available.discard("CUDAExecutionProvider")
    preferred = [*ACCELERATED, "CPUExecutionProvider"]
    return [p for p in preferred if p in available] or ["CPUExecutionProvider"]


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible to this process: its device files (the driver makes
    them; the NVIDIA Container Toolkit passes them into a container given a GPU)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


_core: Any = None
_cache_warned = False


def openvino_core() -> Any:
    """One OpenVINO Core per process (it holds the plugins and their thread pools)."""
    global _core
    if _core is None:
        import openvino

        _core = openvino.Core()
    return _core


def openvino_precision() -> str:
    """bf16 where the CPU computes it natively (AVX-512 BF16 or AMX), else f32."""
    capabilities = openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else "f32"


def _usable_cache(folder: Path) -> bool:
    """Whether OpenVINO can keep compiled models in ``folder`` (made if missing); if not, one
    warning per process (OpenVINO itself would say nothing and compile each time)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        reason = "" if os.access(folder, os.W_OK | os.X_OK) else "not writable"
    except OSError as e:
        reason = e.strerror or type(e).__name__
    if reason:
        _no_cache(folder, reason)
    return not reason


def _no_cache(folder: Path | str, reason: str) -> None:
    """The one warning per process that compiled models are not kept."""
    global _cache_warned
    if not _cache_warned:
        log.warning("OpenVINO cannot keep compiled models in %s (%s): it compiles them at each start", folder, reason)
        _cache_warned = True


@dataclass(frozen=True)
class Runtime:
    """Which runtime, precision and threads the face models of this process run with."""

    backend: str  # "openvino" or "onnxruntime"
    precision: str  # the recognizer's, where the time goes: "bf16" or "f32"
    threads: int  # per process
    providers: tuple[str, ...] = ()  # onnxruntime's, accelerated first
    reason: str = ""  # why ``auto`` chose it; empty when configured
    # The detector's: the recognizer's unless set. In bf16 its landmarks move by up to a pixel
    # and the embeddings come to cosine 0.99 of onnxruntime's (0.9998 with an f32 detector),
    # for half its time; the persons of bench/quality.py are the same (docs/performance.md, "Runtimes").
    detector_precision: str = "f32"
    # OpenVINO keeps what it compiled here, so that a process starting later loads it (0.26 s
    # less per process for buffalo_s, more for larger packs); empty: no cache.
    cache_dir: str = ""

    @classmethod
    def resolve(
        cls,
        setting: str = "auto",
        threads: int = 1,
        precision: str | Callable[[], str | None] | None = None,
        detector_precision: str | None = None,
    ) -> Runtime:
        """The runtime for FACEPIC_RUNTIME ``setting``; ``precision`` and ``detector_precision``
        override OpenVINO's (the benchmark and the tests compare f32 with bf16). ``precision``
        may be a function, asked only where the runtime is OpenVINO (None from it: OpenVINO
        is asked here)."""
        setting = (setting or "auto").strip().lower()
        if setting not in CHOICES:
            raise RuntimeUnavailable(f"unknown runtime {setting!r}: use {', '.join(CHOICES)}")
        threads = max(1, threads)
        reason = ""
        if setting == "auto":
            accelerated = [p for p in onnxruntime_providers() if p in ACCELERATED] if _installed("onnxruntime") else []
            if accelerated:
                setting, reason = "onnxruntime", f"auto: onnxruntime has {accelerated[0]}"
            elif _installed("openvino"):
                setting, reason = "openvino", "auto: OpenVINO is installed"
            elif _installed("onnxruntime"):
                setting, reason = "onnxruntime", "auto: OpenVINO is not installed"
            else:
                raise RuntimeUnavailable("no face model runtime is installed: pip install -r requirements/worker.txt")
        if setting == "openvino":
            if not _installed("openvino"):
                raise RuntimeUnavailable(
                    f"FACEPIC_RUNTIME=openvino, but OpenVINO is not installed: pip install {OPENVINO_PIN}, "
                    "or set FACEPIC_RUNTIME=auto"
                )
            if callable(precision):
                precision = precision()
            precision = precision or openvino_precision()
            return cls("openvino", precision, threads, (), reason, detector_precision or precision)
        if not _installed("onnxruntime"):
            raise RuntimeUnavailable(
                "FACEPIC_RUNTIME=onnxruntime, but onnxruntime is not installed: "
                "pip install -r requirements/worker.txt, or set FACEPIC_RUNTIME=auto"
            )
        return cls("onnxruntime", "f32", threads, tuple(onnxruntime_providers()), reason)

    @classmethod
    def for_settings(
        cls, settings: Any, processes: int = 1, precision: str | Callable[[], str | None] | None = None
    ) -> Runtime:
        """The runtime of one of ``processes`` processes sharing this machine's cores, caching
        OpenVINO's compiled models beside the model packs; ``precision``: OpenVINO's, or who to
        ask for it (``resolve``)."""
        runtime = cls.resolve(settings.runtime, settings.ort_threads or default_threads(processes), precision)
        cache = Path(settings.model_root) / "openvino-cache"
        if runtime.backend != "openvino" or not _usable_cache(cache):
            return runtime
        return dataclasses.replace(runtime, cache_dir=str(cache))

    def describe(self) -> str:
        """``OpenVINO bf16 (detector f32), 1 thread per process``, with auto's reason where it chose."""
        name = "OpenVINO" if self.backend == "openvino" else "onnxruntime"
        accelerated = [p.removesuffix("ExecutionProvider") for p in self.providers if p in ACCELERATED]
        device = f" with {accelerated[0]}" if accelerated else ""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''} per process"
        notes = [f"detector {self.detector_precision}"] if self.detector_precision != self.precision else []
        notes += [self.reason] if self.reason else []
        extra = f" ({'; '.join(notes)})" if notes else ""
        return f"{name} {self.precision}{device}{extra}, {threads}"

    def session(self, model_file: Path, precision: str | None = None, shape: Sequence[int] | None = None) -> Any:
        """An inference session over ``model_file`` with onnxruntime's ``InferenceSession``
        interface; OpenVINO's in ``precision`` (default: the recognizer's), its first input
        fixed to ``shape`` if given."""
        if self.backend == "openvino":
            return OpenVINOSession(model_file, self._openvino_config(precision or self.precision), shape)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        onnxruntime.set_default_logger_severity(3)
        if "CUDAExecutionProvider" in self.providers and hasattr(onnxruntime, "preload_dlls"):
            # CUDA and cuDNN from their pip wheels (requirements/worker-cuda.txt), not the system's
            onnxruntime.preload_dlls()
        return onnxruntime.InferenceSession(str(model_file), sess_options=options, providers=list(self.providers))

    def detector_sessions(self) -> Callable[[Any, tuple[int, int], Any], Any] | None:
        """For InsightFace's SCRFD: a session per detector input size (width, height), or None
        for its own (onnxruntime: it clones the reference session with that size fixed).
        OpenVINO runs a fixed shape 10 to 20% faster than a dynamic one; SCRFD caches them."""
        if self.backend != "openvino":
            return None

        def factory(model_file: Any, input_size: tuple[int, int], reference: Any) -> Any:
            width, height = input_size
            return self.session(Path(model_file), self.detector_precision, (1, 3, int(height), int(width)))

        return factory

    def _openvino_config(self, precision: str) -> dict[str, Any]:
        cache = {"CACHE_DIR": self.cache_dir} if self.cache_dir else {}
        return cache | {
            "INFERENCE_NUM_THREADS": self.threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
            # OpenVINO pins its threads to cores it picks per process, without knowing of the
            # other processes of a pool: they would all pin to the same core.
            "ENABLE_CPU_PINNING": False,
        }


@dataclass(frozen=True)
class TensorInfo:
    """What onnxruntime's ``NodeArg`` tells of an input or output: name, shape, type."""

    name: str
    shape: list[int | str]
    type: str = "tensor(float)"


class OpenVINOSession:
    """An OpenVINO model behind onnxruntime's session interface, as far as InsightFace's model
    classes use it: ``get_inputs``, ``get_outputs``, ``run``, ``get_providers``. Compiled on the
    first ``run``, so a session kept only for its shapes costs no compilation."""

    def __init__(self, model_file: Path, config: Mapping[str, Any], shape: Sequence[int] | None = None) -> None:
        core = openvino_core()
        self.model_file = str(model_file)
        self._model = core.read_model(self.model_file)
        if shape is not None:
            self._model.reshape({0: list(shape)})
        self._config = dict(config)
        self._request: Any = None
        self._inputs = [TensorInfo(p.get_any_name(), _dims(p.get_partial_shape())) for p in self._model.inputs]
        self._outputs = [TensorInfo(p.get_any_name(), _dims(p.get_partial_shape())) for p in self._model.outputs]
        self._output_index = {name: i for i, p in enumerate(self._model.outputs) for name in p.get_names()}

    def _compile(self) -> Any:
        try:
            return openvino_core().compile_model(self._model, "CPU", self._config)
        except RuntimeError as e:
            if "CACHE_DIR" not in self._config:
                raise
            # A cache it cannot write after all (a disk that filled up): compile every time.
            said = [line.strip() for line in str(e).splitlines() if line.strip(" )")]
            _no_cache(self._config.pop("CACHE_DIR"), said[-1] if said else type(e).__name__)
            return openvino_core().compile_model(self._model, "CPU", self._config)

    def get_inputs(self) -> list[TensorInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[TensorInfo]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [f"OpenVINO-CPU-{self._config['INFERENCE_PRECISION_HINT']}"]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {}

    def set_providers(self, providers: Sequence[str] | None = None, provider_options: Any = None) -> None:
        """InsightFace's ``prepare(ctx_id=-1)`` asks for the CPU: this session is on it already."""

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, np.ndarray], run_options: Any = None
    ) -> list[np.ndarray]:
        if self._request is None:
            self._request = self._compile().create_infer_request()
        results = self._request.infer(dict(input_feed), share_inputs=True, share_outputs=False)
        names = output_names or [o.name for o in self._outputs]
        return [np.asarray(results[self._output_index[name]]) for name in names]


def _dims(shape: Any) -> list[int | str]:
    """onnxruntime's way of writing a shape: an int per fixed dimension, ``?`` for a free one."""
    return [d.get_length() if d.is_static else "?" for d in shape]
