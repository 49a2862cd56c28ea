"""int8 face models (NNCF post-training quantization) against the shipped OpenVINO ones, on
this machine: speed, and whether the faces and the persons stay the same.

    python bench/int8.py                                   # all of it, on ../shared
    python bench/int8.py --skip-quality --rounds 9         # speeds only
    python bench/int8.py --skip-speed --folders photos     # one folder's quality only
    python bench/int8.py --skip-speed --int8 recognition   # which model costs what

Rows: ``f32`` (OpenVINO f32, both models); ``shipped`` (what FACEPIC_RUNTIME=openvino runs:
bf16 where the CPU has it, both models); ``int8`` (both models quantized, or the one --int8
names; their other layers in the shipped precision).

1. Quantize, once: each model read from its ONNX file by OpenVINO and quantized by
   ``nncf.quantize`` (default preset: symmetric int8 weights and activations), calibrated on
   what the product feeds it over --calibration's photos (default ../shared/photos): the
   detector's resized input blobs and the recognizer's aligned 112x112 crops, recorded from
   ``FaceEngine.detect`` on OpenVINO f32. Kept as OpenVINO IR under <model_root>/int8/<pack>/,
   named by the ONNX file's and the calibration photos' digests.
2. Speed, one thread, the rows interleaved round by round (A B, B A, ...): ms per detection (InsightFace's
   resize, the model and its output decoding, as bench/runtime.py) and ms per face (one aligned
   face), by wall clock and by the process's CPU time (less moved by other processes on a
   shared machine); ``int8/shipped`` is the median over rounds of each round's ratio. Then
   bench/scaleout.py's CPU stages on its camera photos (decode, detect and embed, quality,
   thumbnails), shipped and int8 interleaved.
3. Quality on each labelled folder: every photo detected and embedded on each row; BCubed F of
   bench/quality.py's rows (naive; online: the index stage; run: what `facepic run` stores);
   faces one row finds and f32 does not, or the reverse (boxes matched at IoU 0.5); the cosine
   of each row's embedding to f32's of the same face. Each row's faces are kept under
   CACHE-ROW in bench/quality.py's format (`python bench/quality.py --photos FOLDER --cache
   DIR` scores them again), with their boxes beside them.

Needs ``pip install nncf`` (a benchmark's dependency, not FacePic's).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from bench import quality, scaleout
from facepic.decode import decode
from facepic.detect import FaceEngine, pack_files
from facepic.models import ModelChoice, resolve
from facepic.runtime import Runtime
from facepic.settings import Settings

SHARED = HERE.parent.parent / "shared"
TESTS = HERE.parent / "tests"
FOLDERS = ("photos", "photos-varied", "lfw-dev")
PHOTO_TYPES = (".jpg", ".jpeg", ".png", ".webp")
F_TOLERANCE = 0.002  # issue #25: int8 ships only if no labelled folder's F moves by more


# --- sessions that record or swap the models ------------------------------------------------------


class Recorded:
    """A session that keeps every input it is given, one item per image, and runs it."""

    def __init__(self, session: Any, into: list[np.ndarray]) -> None:
        self._session, self._into = session, into

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, names: Any, feed: dict[str, np.ndarray], run_options: Any = None) -> Any:
        (blob,) = feed.values()
        for item in blob:
            # The detector's blob is (2p - 255) / 256 of a uint8 pixel: exact in float16, at a
            # quarter of the memory (205 photos at 640x480: 190 MB instead of 760).
            small = item[None].astype(np.float16)
            self._into.append(small if np.array_equal(small, item[None]) else item[None].copy())
        return self._session.run(names, feed, run_options)


@dataclass(frozen=True)
class Recording(Runtime):
    """A runtime whose sessions record their inputs, by model file name."""

    taken: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def session(self, model_file: Path, precision: str | None = None, shape: Sequence[int] | None = None) -> Any:
        return Recorded(super().session(model_file, precision, shape), self.taken.setdefault(Path(model_file).name, []))


@dataclass(frozen=True)
class Swapped(Runtime):
    """OpenVINO on other files for the pack's models: ``files`` maps an ONNX file's name to the
    IR that replaces it."""

    files: tuple[tuple[str, str], ...] = ()
    label: str = ""

    def session(self, model_file: Path, precision: str | None = None, shape: Sequence[int] | None = None) -> Any:
        swapped = dict(self.files).get(Path(model_file).name)
        return super().session(Path(swapped) if swapped else model_file, precision, shape)

    def describe(self) -> str:
        return f"{self.label}, the rest {super().describe()}"


# --- quantization ---------------------------------------------------------------------------------


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_TYPES)


def _digest(paths: Sequence[Path], root: Path | None = None) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.relative_to(root) if root else p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:10]


def quantized(choice: ModelChoice, model_root: Path, calibration: Path) -> dict[str, Path]:
    """The pack's two models in int8, by task (detection, recognition), made on the first call."""
    files = pack_files(choice)
    photos = photos_in(calibration)
    folder = model_root / "int8" / choice.name
    wanted = {}
    for task, onnx_file in files.items():
        key = hashlib.sha256(onnx_file.read_bytes()).hexdigest()[:10]
        wanted[task] = folder / f"{onnx_file.stem}-{key}-cal{_digest(photos, calibration)}.xml"
    if all(p.is_file() for p in wanted.values()):
        return wanted
    # Imported after facepic.runtime, which keeps openvino_telemetry from loading: NNCF's own
    # usage events then go nowhere either.
    import nncf
    import openvino

    nncf.set_log_level(logging.WARNING)
    started = time.perf_counter()
    recording = Recording(**dataclasses.asdict(Runtime.resolve("openvino", 1, "f32", "f32")))
    engine = FaceEngine(choice, Settings.detect_size, recording)
    for path in photos:
        engine.detect(decode(path, Settings.detect_size, Settings.max_pixels).rgb)
    print(
        f"calibration: {len(photos)} photos of {calibration}: "
        + ", ".join(f"{len(recording.taken[files[t].name])} {t} inputs" for t in files)
        + f" in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    for task, onnx_file in files.items():
        started = time.perf_counter()
        items = recording.taken[onnx_file.name]
        # convert_model, not read_model: read_model leaves a Reshape of a computed shape in front
        # of each depthwise convolution's weights, NNCF then quantizes those weights with a
        # FakeQuantize that OpenVINO's CPU plugin does not fold, and runs those layers in bf16
        # with a reorder on each side (16 of the recognizer's 49 convolutions): slower than bf16.
        model = openvino.convert_model(str(onnx_file))
        data = nncf.Dataset(items, lambda item: item.astype(np.float32))
        int8 = nncf.quantize(model, data, subset_size=len(items))
        out = wanted[task]
        tmp = out.with_name(f"{out.stem}.tmp{os.getpid()}.xml")
        openvino.save_model(int8, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), out.with_suffix(".bin"))  # the .xml last: it says the pair is whole
        os.replace(tmp, out)
        print(f"{task}: quantized on {len(items)} inputs in {time.perf_counter() - started:.0f} s: {out}", flush=True)
    return wanted


def rows(choice: ModelChoice, int8: dict[str, Path], tasks: Sequence[str], threads: int = 1) -> dict[str, Runtime]:
    """The three rows' runtimes; the int8 row's ``tasks`` (detection, recognition) in int8."""
    shipped = Runtime.resolve("openvino", threads)
    files = pack_files(choice)
    swapped = tuple((files[task].name, str(int8[task])) for task in tasks)
    label = " and ".join({"detection": "detector", "recognition": "recognizer"}[t] for t in tasks)
    return {
        "f32": Runtime.resolve("openvino", threads, "f32", "f32"),
        "shipped": shipped,
        "int8": Swapped(**dataclasses.asdict(shipped), files=swapped, label=f"int8 {label}"),
    }


# --- speed ----------------------------------------------------------------------------------------


def spread(values: Sequence[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def in_turn(named: dict[str, Any], turn: int) -> list[tuple[str, Any]]:
    """The rows in order on even rounds, reversed on odd ones (A B, B A, ...): a row measured
    first in a round (a cold cache, a neighbour's burst) is not always the same row."""
    items = list(named.items())
    return items[::-1] if turn % 2 else items


def timed(work: Callable[[], Any], count: int) -> tuple[float, float]:
    """ms per item, by wall clock and by this process's CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return (time.perf_counter() - wall) * 1000 / count, (time.process_time() - cpu) * 1000 / count


def speeds(engines: dict[str, FaceEngine], photos: list[Path], rounds: int, repeat: int) -> None:
    from insightface.utils import face_align

    images = [
        np.ascontiguousarray(decode(p, Settings.detect_size, Settings.max_pixels).rgb[:, :, ::-1]) for p in photos
    ]
    reference = engines["f32"]
    sizes = [reference.input_size(img.shape[1], img.shape[0]) for img in images]
    # Every row recognizes the same aligned faces (f32's landmarks): the per-face time and the
    # recognizer-only cosine do not depend on the detector.
    aligned = [
        face_align.norm_crop(img, landmark=k, image_size=112)
        for img, size in zip(images, sizes)
        for k in reference._detector.detect(img, input_size=size, max_num=0)[1]
    ]
    for engine in engines.values():  # compile every input size, warm up
        for img, size in zip(images, sizes):
            engine._detector.detect(img, input_size=size, max_num=0)
        engine._recognizer.get_feat(aligned[0])
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in engines}
    load = os.getloadavg()[0]
    for turn in range(rounds):
        for name, engine in in_turn(engines, turn):

            def detect_all(engine: FaceEngine = engine) -> None:
                for _ in range(repeat):
                    for img, size in zip(images, sizes):
                        engine._detector.detect(img, input_size=size, max_num=0)

            def recognize_all(engine: FaceEngine = engine) -> None:
                for _ in range(repeat):
                    for face in aligned:
                        engine._recognizer.get_feat(face)

            for what, work, count in (("det", detect_all, len(images)), ("rec", recognize_all, len(aligned))):
                wall, cpu = timed(work, count * repeat)
                figures[name].setdefault(f"{what} wall", []).append(wall)
                figures[name].setdefault(f"{what} cpu", []).append(cpu)
    embeddings = {}
    for name, engine in engines.items():
        e = np.array([engine._recognizer.get_feat(a).ravel() for a in aligned])
        embeddings[name] = e / np.linalg.norm(e, axis=1, keepdims=True)
    print(
        f"\nspeed: {len(images)} photos (detector inputs {', '.join(sorted({f'{w}x{h}' for w, h in sizes}))}), "
        f"{len(aligned)} faces, each {repeat} times a round, 1 thread, {rounds} rounds interleaved, "
        f"{scaleout.cpu_name()}, load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print("median [min-max] over rounds, ms")
    print(f"{'row':<9} {'per detection, wall':>22} {'cpu':>20} {'per face, wall':>20} {'cpu':>20} {'cos to f32':>11}")
    for name, fig in figures.items():
        cosine = float(np.min(np.sum(embeddings[name] * embeddings["f32"], axis=1)))
        print(
            f"{name:<9} {spread(fig['det wall']):>22} {spread(fig['det cpu']):>20} "
            f"{spread(fig['rec wall']):>20} {spread(fig['rec cpu']):>20} {cosine:11.4f}"
        )
    for metric in ("det wall", "det cpu", "rec wall", "rec cpu"):
        ratios = [a / b for a, b in zip(figures["int8"][metric], figures["shipped"][metric])]
        print(f"int8/shipped, {metric}: {spread(ratios, 3)}")
    print("cos to f32: the least cosine of a row's embedding of the same aligned face to f32's")


def throughput(runtimes: dict[str, Runtime], choice: ModelChoice, count: int, procs: int, rounds: int) -> None:
    """bench/scaleout.py's CPU stages and model-only phase, the rows interleaved."""
    os.environ.update(scaleout.ONE_THREAD)
    folder = HERE / "corpus" / f"scaleout-{count}"
    files = scaleout.corpus_files(folder, count, TESTS / "photos", os.cpu_count() or 1)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runtimes}
    load = os.getloadavg()[0]
    for turn in range(rounds):
        for name, runtime in in_turn(runtimes, turn):
            shared = {"choice": choice, "runtime": runtime, "model_iters": 40, "opencv_threads": 1}
            r = scaleout.measure(procs, files, shared)
            # CPU ms per photo: the processes' CPU time (cpu/wall of their wall) over the photos.
            results[name].append(
                {
                    "wall": 1000 / r["rate"],
                    "cpu": 1000 * procs * r["cpu_ratio"] / r["rate"],
                    "model wall": r["model_ms"],
                    "model cpu": r["model_ms"] * r["model_cpu_ratio"],
                }
            )
    print(
        f"\nbench/scaleout.py's stages: {len(files)} camera photos (4032x3024, 4 faces) from {folder}, "
        f"{procs} process{'es' if procs > 1 else ''} of 1 thread, {rounds} rounds interleaved, "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}; median [min-max]"
    )
    print("ms per photo: the CPU stages (wall: 1000 / photos per second), then the models alone (detector + 4 faces)")
    print(f"{'row':<9} {'stages, wall':>20} {'cpu':>20} {'models, wall':>20} {'cpu':>20}")
    metrics = ("wall", "cpu", "model wall", "model cpu")
    for name, runs in results.items():
        print(f"{name:<9} " + " ".join(f"{spread([r[m] for r in runs], 1):>20}" for m in metrics))
    for m in metrics:
        ratios = [a[m] / b[m] for a, b in zip(results["int8"], results["shipped"])]
        print(f"int8/shipped, {m}: {spread(ratios, 3)}")


# --- quality --------------------------------------------------------------------------------------

Kept = tuple[np.ndarray, int, np.ndarray] | None  # bench/quality.py's cache entry for a photo


def faces_of(runtime: Runtime, choice: ModelChoice, folder: Path, cache: Path) -> dict[str, tuple[np.ndarray, Kept]]:
    """Each photo's boxes and cache entry on ``runtime``, read from ``cache`` where it holds them."""
    cache_file = quality._cache_file(cache, folder, choice.name)
    boxes_file = cache_file.with_name(cache_file.stem + "-boxes.npz")
    rels = [str(p.relative_to(folder)) for p in sorted(folder.glob("*/*")) if p.suffix.lower() in PHOTO_TYPES]
    kept = quality._read_cache(cache_file)
    if boxes_file.exists() and set(rels) <= set(kept):
        with np.load(boxes_file, allow_pickle=False) as data:
            ends = np.cumsum(data["counts"])
            boxes = {r: data["boxes"][e - n : e] for r, e, n in zip(data["paths"].tolist(), ends, data["counts"])}
        return {r: (boxes[r], kept[r]) for r in rels}
    engine = FaceEngine(choice, Settings.detect_size, runtime)
    settings = Settings.defaults()
    started = time.perf_counter()
    found: dict[str, tuple[np.ndarray, Kept]] = {}
    for rel in rels:
        faces, entry = quality.found_faces(engine, settings, folder / rel)
        found[rel] = (np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4), entry)
    quality._write_cache(cache_file, {r: entry for r, (_, entry) in found.items()})
    counts = np.array([len(b) for b, _ in found.values()], dtype=np.int64)
    tmp = boxes_file.with_suffix(".tmp.npz")
    np.savez(tmp, paths=np.array(rels), counts=counts, boxes=np.concatenate([b for b, _ in found.values()]))
    os.replace(tmp, boxes_file)
    print(f"  {folder.name}: {len(rels)} photos on {runtime.describe()} in {time.perf_counter() - started:.0f} s")
    return found


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def agreement(found: dict[str, tuple[np.ndarray, Kept]], reference: dict[str, tuple[np.ndarray, Kept]]) -> dict:
    """Faces found by one and not the other (boxes matched greedily at IoU 0.5), and the cosines
    of the matched faces' embeddings."""
    only_here = only_there = 0
    cosines = []
    for rel, (boxes, entry) in found.items():
        ref_boxes, ref_entry = reference[rel]
        pairs = []
        if len(boxes) and len(ref_boxes):
            overlap = iou(boxes, ref_boxes)
            while overlap.size and overlap.max() >= 0.5:
                i, j = np.unravel_index(int(overlap.argmax()), overlap.shape)
                pairs.append((i, j))
                overlap[i, :], overlap[:, j] = -1, -1
        only_here += len(boxes) - len(pairs)
        only_there += len(ref_boxes) - len(pairs)
        if entry is not None and ref_entry is not None:
            cosines += [float(entry[0][i] @ ref_entry[0][j]) for i, j in pairs]
    c = np.array(cosines)
    return {
        "only_here": only_here,
        "only_there": only_there,
        "matched": len(c),
        "median": float(np.median(c)),
        "p1": float(np.percentile(c, 1)),
        "min": float(c.min()),
    }


def scored(folder: Path, choice: ModelChoice, cache: Path) -> dict[str, dict]:
    """bench/quality.py's rows (naive, online, run) on the faces kept in ``cache``."""
    photos, without = quality.embed(folder, choice.name, cache)  # all cached: no model is loaded
    return quality.table(photos, without, choice.name, orders=0, quiet=True)


def quality_table(runtimes: dict[str, Runtime], choice: ModelChoice, folders: list[Path], cache: str) -> None:
    caches = {name: Path(f"{cache}-{name}") for name in runtimes}
    int8 = runtimes["int8"]
    if isinstance(int8, Swapped):  # a new quantization gets a new cache
        caches["int8"] = Path(f"{cache}-int8-{_digest([Path(p) for _, p in int8.files])}")
    results = {}
    for folder in folders:
        found = {name: faces_of(runtime, choice, folder, caches[name]) for name, runtime in runtimes.items()}
        results[folder.name] = {
            name: (scored(folder, choice, caches[name]), agreement(found[name], found["f32"])) for name in runtimes
        }
    print("\nquality: BCubed F of bench/quality.py's rows (naive, online, run: what `facepic run` stores)")
    print(f"faces kept in {', '.join(str(c) for c in caches.values())}")
    print(
        f"{'folder':<14} {'row':<8} {'faces':>6} {'naive F':>8} {'online F':>9} {'run F':>7} {'persons':>8} "
        f"{'run F - shipped':>16} {'not in f32':>11} {'f32 only':>9} {'cos to f32: median':>19} {'1%':>7} {'min':>7}"
    )
    verdicts = []
    for folder, by_row in results.items():
        shipped_f = by_row["shipped"][0]["run"]["f"]
        for name, (table, agree) in by_row.items():
            run = table["run"]
            moved = run["f"] - shipped_f
            print(
                f"{folder:<14} {name:<8} {agree['matched'] + agree['only_here']:>6} {table['naive']['f']:8.4f} "
                f"{table['online']['f']:9.4f} {run['f']:7.4f} {run['persons']:8d} {moved:+16.4f} "
                f"{agree['only_here']:>11} {agree['only_there']:>9} {agree['median']:19.5f} {agree['p1']:7.4f} "
                f"{agree['min']:7.4f}"
            )
        moved = by_row["int8"][0]["run"]["f"] - shipped_f
        verdicts.append(f"{folder} {moved:+.4f}")
    ok = all(abs(r["int8"][0]["run"]["f"] - r["shipped"][0]["run"]["f"]) <= F_TOLERANCE for r in results.values())
    print(
        f"int8's run F against the shipped runtime's: {', '.join(verdicts)}: "
        f"{'within' if ok else 'NOT within'} {F_TOLERANCE} on every folder"
    )
    print(
        "not in f32 / f32 only: faces this row finds that f32 does not, and the reverse (boxes at IoU 0.5); "
        "cos to f32: the same face's embedding against f32's, through detection, alignment and recognition"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="buffalo_s")
    parser.add_argument("--calibration", type=Path, default=SHARED / "photos", help="photos to calibrate on")
    parser.add_argument("--speed-photos", type=Path, nargs="+", default=[TESTS / "photos", TESTS / "photos-group"])
    parser.add_argument("--rounds", type=int, default=9, help="speed rounds, the rows interleaved")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the speed photos in a round")
    parser.add_argument("--scaleout-photos", type=int, default=32, help="camera photos per scaleout round (0: none)")
    parser.add_argument("--scaleout-rounds", type=int, default=5)
    parser.add_argument("--procs", type=int, default=1, help="scaleout processes")
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS), help=f"folders of {SHARED} to score")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--cache", default="/tmp/int8-emb", help="faces kept in CACHE-f32, CACHE-shipped, CACHE-int8-*")
    parser.add_argument(
        "--int8", choices=("both", "detection", "recognition"), default="both", help="int8 row's models"
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    settings = Settings.load(env_file=None)
    choice = resolve(args.model, settings.model_root)
    tasks = ("detection", "recognition") if args.int8 == "both" else (args.int8,)
    runtimes = rows(choice, quantized(choice, settings.model_root, args.calibration), tasks)
    for name, runtime in runtimes.items():
        print(f"{name:<8} {runtime.describe()}")
    if not args.skip_speed:
        photos = [p for folder in args.speed_photos for p in photos_in(folder)]
        speeds(
            {n: FaceEngine(choice, Settings.detect_size, r) for n, r in runtimes.items()},
            photos,
            args.rounds,
            args.repeat,
        )
        if args.scaleout_photos:
            shipped_and_int8 = {n: runtimes[n] for n in ("shipped", "int8")}
            throughput(shipped_and_int8, choice, args.scaleout_photos, args.procs, args.scaleout_rounds)
    if not args.skip_quality:
        quality_table(runtimes, choice, [args.shared / f for f in args.folders], args.cache)


if __name__ == "__main__":
    main()
