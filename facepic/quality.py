"""How good a detected face is: size, sharpness, pose, and one score that combines them.

The score picks each person's cover (best face); the limits decide whether a face is clear
enough to found a person on its own. A face below them is still stored, searchable and may
join a person it clearly matches.

- size: the shorter side of the face box in the original photo, in pixels;
- sharpness: variance of the Laplacian of the face, grey, resampled to 64x64 (blur and
  heavy JPEG smear both lower it);
- frontal: 1 for a face looking at the camera, towards 0 in profile, from how far the nose
  landmark sits from the middle of the eyes, relative to the eyes' distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from facepic.settings import Settings

SHARP_SIDE = 64


@dataclass(frozen=True)
class Limits:
    """The quality gate; its defaults are the settings' (FACEPIC_MIN_FACE_*)."""

    min_size: float  # pixels, shorter side of the box in the original
    min_score: float  # detection score (the detector keeps faces from 0.5)
    min_sharpness: float  # Laplacian variance at 64x64 (sharp faces: 175+)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.min_face_size, settings.min_face_score, settings.min_face_sharpness)


@dataclass(frozen=True)
class FaceQuality:
    size: float
    sharpness: float
    frontal: float
    score: float  # the detector's

    @property
    def value(self) -> float:
        """0..1, higher is a better cover: every factor saturates at a clearly good face."""
        return self.score * min(1.0, self.size / 112.0) * min(1.0, self.sharpness / 300.0) * (0.5 + 0.5 * self.frontal)

    def can_found(self, limits: Limits) -> bool:
        return (
            self.size >= limits.min_size and self.score >= limits.min_score and self.sharpness >= limits.min_sharpness
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "size": round(self.size, 1),
            "sharpness": round(self.sharpness, 1),
            "frontal": round(self.frontal, 3),
            "value": round(self.value, 4),
        }


def sharpness(rgb: np.ndarray, box: np.ndarray) -> float:
    """Laplacian variance of the face inside ``box`` (coordinates of ``rgb``)."""
    import cv2  # a worker's import: the enqueuer image has no OpenCV

    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    import numpy as np

    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (SHARP_SIDE, SHARP_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def frontal(landmarks: np.ndarray) -> float:
    """1 frontal .. 0 profile, from the 5 landmarks (eyes, nose, mouth corners)."""
    import numpy as np  # the worker's: reading the library needs none (a command's start)

    marks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left, right, nose = marks[0], marks[1], marks[2]
    eyes = float(np.linalg.norm(right - left))
    if eyes < 1e-6:
        return 0.0
    offset = abs(float(nose[0] - (left[0] + right[0]) / 2)) / eyes
    return float(np.clip(1.0 - 2.0 * offset, 0.0, 1.0))


def assess(
    rgb: np.ndarray, box_reduced: np.ndarray, box_full: np.ndarray, landmarks: np.ndarray, score: float
) -> FaceQuality:
    size = float(min(box_full[2] - box_full[0], box_full[3] - box_full[1]))
    return FaceQuality(max(size, 0.0), sharpness(rgb, box_reduced), frontal(landmarks), float(score))
