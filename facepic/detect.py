"""The face engine: InsightFace detection + recognition, nothing else loaded, on the runtime
of :mod:`facepic.runtime` (OpenVINO or onnxruntime)."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facepic.models import ModelChoice, ModelError
from facepic.runtime import Runtime

log = logging.getLogger(__name__)

# insightface's alignment calls a scikit-image API deprecated upstream; not ours to fix.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.")


@dataclass
class DetectedFace:
    box: np.ndarray  # x1, y1, x2, y2 in the coordinates of the image given to detect()
    landmarks: np.ndarray  # 5 x 2, same coordinates
    score: float
    embedding: np.ndarray  # 512 float32, L2-normalised


def _task(model_file: Path) -> str | None:
    """``detection``, ``recognition`` or None, by InsightFace's own routing rules (its
    ``ModelRouter``), read from the ONNX graph so that no session is built for the models of
    the pack FacePic does not use."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load_model(str(model_file), load_external_data=False).graph
    except (OSError, ValueError, DecodeError):
        return None  # not a model: the pack then lacks one, and says which
    if len(graph.output) >= 5:
        return "detection"
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] if graph.input else []
    # 192: the landmark models, 96: gender and age, two inputs: the face swapper.
    if (
        len(graph.input) == 1
        and len(dims) == 4
        and dims[2] == dims[3]
        and dims[2] >= 112
        and dims[2] % 16 == 0
        and dims[2] != 192
    ):
        return "recognition"
    return None


ROUTES_FILE = "pack-routes.json"  # beside the packs: each model file's task, by size and mtime


def _routes(root: Path, files: list[Path]) -> dict[Path, str | None]:
    """Each file's task (``_task``), remembered in ``root``/ROUTES_FILE by path, size and
    modification time: ``_task`` parses the whole file (0.14 s per 166 MB here), and each pool
    process asked it of every file of the pack at each start (buffalo_l: five files, 326 MB).
    A file changed since is read again; a root that cannot be written only costs the reads."""
    from facepic.datafolder import write_atomic

    cache = root / ROUTES_FILE
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    routes: dict[Path, str | None] = {}
    changed = False
    for file in files:
        st = file.stat()
        entry = known.get(str(file))
        if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            routes[file] = entry.get("task")
            continue
        routes[file] = _task(file)
        known[str(file)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "task": routes[file]}
        changed = True
    if changed:
        try:
            write_atomic(cache, json.dumps(known, indent=1, sort_keys=True).encode())
        except OSError:
            pass  # read-only: each start reads the files, as before
    return routes


def pack_files(choice: ModelChoice) -> dict[str, Path]:
    """The pack's detector and recognizer files, downloading the pack where InsightFace can."""
    folder = Path(choice.location).expanduser()
    if not folder.is_dir():
        from insightface.utils.storage import ensure_available  # engine_parts may not run utils' __init__

        try:
            folder = Path(ensure_available("models", choice.location, root=str(choice.root)))
        except (OSError, ConnectionError) as e:
            raise ModelError(f"cannot load face model {choice.name}: {e}") from None
    files: dict[str, Path] = {}
    routes = _routes(Path(choice.root).expanduser(), sorted(folder.glob("*.onnx")))
    for model_file, task in routes.items():  # the first of each task, as InsightFace does
        if task is not None and task not in files:
            files[task] = model_file
    if "detection" not in files:
        raise ModelError(f"face model {choice.name} has no detection model")
    if "recognition" not in files:
        raise ModelError(f"face model {choice.name} has no recognition model")
    return files


class FaceEngine:
    """Loads the pack's detector and recognizer once; ``detect`` is then called per photo.
    The only place that builds the models' sessions, all of them from ``runtime``."""

    def __init__(self, choice: ModelChoice, det_size: int = 640, runtime: Runtime | None = None) -> None:
        from facepic.engine_parts import SCRFD, ArcFaceONNX

        self.model = choice.name
        self.runtime = runtime or Runtime.resolve("auto")
        files = pack_files(choice)
        try:
            self._detector = SCRFD(
                model_file=str(files["detection"]),
                session=self.runtime.session(files["detection"], self.runtime.detector_precision),
                resolution_session_factory=self.runtime.detector_sessions(),
            )
            self._recognizer = ArcFaceONNX(
                model_file=str(files["recognition"]),
                session=self.runtime.session(files["recognition"]),
            )
        except (OSError, RuntimeError) as e:
            raise ModelError(f"cannot load face model {choice.name}: {e}") from None
        # ctx_id 0 keeps the sessions' providers; -1 would drop onnxruntime's CUDA or CoreML.
        self._detector.prepare(0, input_size=(det_size, det_size), det_thresh=0.5)
        self._recognizer.prepare(0)
        self._det_size = det_size
        log.info("face model %s on %s", choice.name, self.runtime.describe())

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
        import cv2

        from facepic.align import norm_crop

        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        boxes, marks = self._detector.detect(bgr, input_size=self.input_size(w, h), max_num=0, metric="default")
        if boxes.shape[0] == 0:
            return []
        if marks is None:
            raise ModelError(f"face model {self.model}: its detector gives no landmarks to align faces by")
        # InsightFace's alignment (facepic.align: the same crops) and input blob, as its
        # ``ArcFaceONNX.get`` does face by face, with the photo's faces in one call: a batch of
        # four costs less than four of one.
        side = self._recognizer.input_size[0]
        aligned = [norm_crop(bgr, marks[i], side) for i in range(boxes.shape[0])]
        embeddings = np.asarray(self._recognizer.get_feat(aligned), dtype=np.float32).reshape(len(aligned), -1)
        faces = []
        for i, emb in enumerate(embeddings):
            norm = float(np.linalg.norm(emb))
            if not np.isfinite(norm) or norm == 0:
                continue
            faces.append(
                DetectedFace(
                    box=np.asarray(boxes[i, 0:4], dtype=np.float64),
                    landmarks=np.asarray(marks[i], dtype=np.float64).reshape(5, 2),
                    score=float(boxes[i, 4]),
                    embedding=emb / norm,
                )
            )
        faces.sort(key=lambda d: (round(float(d.box[0]), 1), round(float(d.box[1]), 1)))
        return faces
