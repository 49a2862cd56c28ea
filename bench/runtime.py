"""The face models on each runtime and precision, one thread: ms per detection and per face,
and how far each is from onnxruntime (face count, box, embedding cosine) on real photos.

    python bench/runtime.py                          # tests/photos and tests/photos-group
    python bench/runtime.py --photos ../shared/photos --rounds 7

Rows: onnxruntime f32; OpenVINO f32; OpenVINO bf16 (where the CPU has it) for both models;
the shipped OpenVINO default (bf16 recognizer, f32 detector); and the detector compiled once
with dynamic input dims instead of once per input size. Rounds interleave the rows, so a noisy
neighbour slows every row alike; the figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from facepic.decode import decode
from facepic.detect import FaceEngine
from facepic.models import resolve
from facepic.runtime import Runtime, openvino_precision

TESTS = HERE.parent / "tests"


def engines(model: str, threads: int) -> dict[str, FaceEngine]:
    choice = resolve(model, Path(tempfile.mkdtemp(prefix="facepic-bench-models-")))
    rows = {
        "onnxruntime f32": Runtime.resolve("onnxruntime", threads),
        "OpenVINO f32": Runtime.resolve("openvino", threads, "f32", "f32"),
    }
    if openvino_precision() == "bf16":
        rows["OpenVINO bf16 (both models)"] = Runtime.resolve("openvino", threads, "bf16", "bf16")
    shipped = Runtime.resolve("openvino", threads)
    rows[f"OpenVINO shipped: {shipped.precision}, detector {shipped.detector_precision}"] = shipped
    built = {name: FaceEngine(choice, 640, runtime) for name, runtime in rows.items()}
    for precision in ("f32", "bf16") if openvino_precision() == "bf16" else ("f32",):
        # The same detector compiled once with free input dims (SCRFD reuses its main session).
        engine = FaceEngine(choice, 640, Runtime.resolve("openvino", threads, precision, precision))
        engine._detector.static_shape_sessions = False
        engine._detector._reset_resolution_session_pool()
        built[f"OpenVINO {precision}, detector dynamic dims"] = engine
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, nargs="*", default=[TESTS / "photos", TESTS / "photos-group"])
    parser.add_argument("--model", default="buffalo_s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from insightface.utils import face_align

    files = sorted(p for folder in args.photos for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    images = [np.ascontiguousarray(decode(p, 640, 150_000_000).rgb[:, :, ::-1]) for p in files]
    built = engines(args.model, args.threads)
    reference = built["onnxruntime f32"]
    # Every row recognizes the same aligned faces: onnxruntime's landmarks, so the per-face time
    # and the recognizer-only cosine do not depend on the detector.
    sizes = [reference.input_size(img.shape[1], img.shape[0]) for img in images]
    boxes = [reference._detector.detect(img, input_size=size, max_num=0) for img, size in zip(images, sizes)]
    aligned = [
        face_align.norm_crop(img, landmark=k, image_size=112) for img, (_, kpss) in zip(images, boxes) for k in kpss
    ]
    det_ms: dict[str, list[float]] = {name: [] for name in built}
    rec_ms: dict[str, list[float]] = {name: [] for name in built}
    for engine in built.values():  # compile every input size and warm up
        for img, size in zip(images, sizes):
            engine._detector.detect(img, input_size=size, max_num=0)
        engine._recognizer.get_feat(aligned[0])
    for _ in range(args.rounds):
        for name, engine in built.items():
            start = time.perf_counter()
            for img, size in zip(images, sizes):
                engine._detector.detect(img, input_size=size, max_num=0)
            det_ms[name].append((time.perf_counter() - start) * 1000 / len(images))
            start = time.perf_counter()
            for face in aligned:
                engine._recognizer.get_feat(face)
            rec_ms[name].append((time.perf_counter() - start) * 1000 / len(aligned))
    ref_faces = [reference.detect(img[:, :, ::-1]) for img in images]
    ref_embeddings = np.array([reference._recognizer.get_feat(a).ravel() for a in aligned])
    ref_embeddings /= np.linalg.norm(ref_embeddings, axis=1, keepdims=True)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    print(
        f"{len(images)} photos (detector input {', '.join(sorted({f'{w}x{h}' for w, h in sizes}))}), "
        f"{len(aligned)} faces, {args.threads} thread, {args.rounds} rounds, {cpu}"
    )
    print(f"{'runtime':<44} {'ms/detect':>9} {'ms/face':>8} {'faces':>6} {'box px':>7} {'cos rec':>8} {'cos all':>8}")
    for name, engine in built.items():
        faces = [engine.detect(img[:, :, ::-1]) for img in images]
        same = all(len(a) == len(b) for a, b in zip(faces, ref_faces))
        box = max(
            (float(np.abs(a.box - b.box).max()) for fa, fb in zip(faces, ref_faces) for a, b in zip(fa, fb)),
            default=0.0,
        )
        cos_all = min(
            (float(a.embedding @ b.embedding) for fa, fb in zip(faces, ref_faces) for a, b in zip(fa, fb)), default=1.0
        )
        emb = np.array([engine._recognizer.get_feat(a).ravel() for a in aligned])
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        cos_rec = float(np.min(np.sum(emb * ref_embeddings, axis=1)))
        print(
            f"{name:<44} {statistics.median(det_ms[name]):9.2f} {statistics.median(rec_ms[name]):8.2f} "
            f"{'same' if same else 'DIFF':>6} {box:7.2f} {cos_rec:8.4f} {cos_all:8.4f}"
        )
    print(
        "box px: largest box difference to onnxruntime; cos rec: least cosine to onnxruntime's embedding "
        "of the same aligned face; cos all: least cosine through detection, alignment and recognition"
    )


if __name__ == "__main__":
    main()
