"""The face engine: InsightFace detection + recognition on onnxruntime, nothing else loaded."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np

from facepic.models import ModelChoice, ModelError

log = logging.getLogger(__name__)

# insightface's alignment calls a scikit-image API deprecated upstream; not ours to fix.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.")

EMBEDDING_DIM = 512


@dataclass
class DetectedFace:
    box: np.ndarray  # x1, y1, x2, y2 in the coordinates of the image given to detect()
    landmarks: np.ndarray  # 5 x 2, same coordinates
    score: float
    embedding: np.ndarray  # 512 float32, L2-normalised


def providers() -> list[str]:
    """Accelerated providers first where installed, always ending with the CPU."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    preferred = ["CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider"]
    return [p for p in preferred if p in available] or ["CPUExecutionProvider"]


def default_threads(processes: int) -> int:
    """onnxruntime threads per process so that processes x threads fits the cores."""
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes))


class FaceEngine:
    """Loads the pack's detector and recognizer once; ``detect`` is then called per photo."""

    def __init__(self, choice: ModelChoice, det_size: int = 640, threads: int = 1) -> None:
        import onnxruntime
        from insightface.app import FaceAnalysis

        self.model = choice.name
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        try:
            self._app = FaceAnalysis(
                name=choice.location,
                root=str(choice.root),
                allowed_modules=["detection", "recognition"],
                providers=providers(),
                sess_options=options,
            )
        except (OSError, ConnectionError) as e:
            raise ModelError(f"cannot load face model {choice.name}: {e}") from None
        except AssertionError:
            raise ModelError(f"face model {choice.name} has no detection model") from None
        if "recognition" not in self._app.models:
            raise ModelError(f"face model {choice.name} has no recognition model")
        self._app.prepare(ctx_id=-1, det_size=(det_size, det_size))
        self._det_size = det_size
        self._detector = self._app.det_model
        self._recognizer = self._app.models["recognition"]

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The detector's input (width, height): the long side ``det_size``, the short side
        as the photo's shape needs, in steps of 32, rather than a padded square (a 4:3 photo
        costs 640x480, a quarter less than 640x640)."""
        long_side = self._det_size
        short = min(width, height) / max(width, height, 1) * long_side
        short = int(min(long_side, max(32, -(-short // 32) * 32)))
        return (long_side, short) if width >= height else (short, long_side)

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Every face in an RGB uint8 image, in a stable order (left to right)."""
        from insightface.app.common import Face

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        h, w = bgr.shape[:2]
        boxes, marks = self._detector.detect(bgr, input_size=self.input_size(w, h), max_num=0, metric="default")
        found = []
        for i in range(boxes.shape[0]):
            face = Face(bbox=boxes[i, 0:4], kps=marks[i] if marks is not None else None, det_score=boxes[i, 4])
            self._recognizer.get(bgr, face)
            found.append(face)
        faces = []
        for f in found:
            emb = np.asarray(f.embedding, dtype=np.float32)
            norm = float(np.linalg.norm(emb))
            if not np.isfinite(norm) or norm == 0:
                continue
            faces.append(
                DetectedFace(
                    box=np.asarray(f.bbox, dtype=np.float64),
                    landmarks=np.asarray(f.kps, dtype=np.float64).reshape(5, 2),
                    score=float(f.det_score),
                    embedding=emb / norm,
                )
            )
        faces.sort(key=lambda d: (round(float(d.box[0]), 1), round(float(d.box[1]), 1)))
        return faces
