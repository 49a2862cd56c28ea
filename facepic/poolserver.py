"""The fork server of `facepic run`'s pool, started as early as the run knows it has photos to
process, from a module light enough that importing it costs nothing on that path (importing
``facepic.runner`` first took 0.3-0.4 s, before the server could start its own imports)."""

from __future__ import annotations

import multiprocessing
import signal

# Imported by the fork server once, instead of by each pool process (1.2 s of CPU each).
POOL_PRELOAD = (
    "facepic.runner",  # first: facepic.runtime keeps OpenVINO's telemetry off
    "facepic.detect",
    "facepic.engine_parts",  # InsightFace's two classes the engine uses, without its __init__s
    "openvino",
    "onnx",
    "cv2",
)


def start_fork_server() -> None:
    """Start the pool's fork server now, its imports (``POOL_PRELOAD``, most of a second of a
    core) overlapping what this process does before the pool (opening the library, choosing the
    model); ``CpuPool`` then forks from it. It starts with Ctrl-C ignored, as it is once its
    imports are done (a Ctrl-C during them printed their traceback); the pool processes take
    Ctrl-C back (``_init_pool``), and this process stops the server with the run."""
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(list(POOL_PRELOAD))
    from multiprocessing import forkserver

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)
