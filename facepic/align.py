"""A face's crop for the recognizer: the similarity transform (rotation, one scale,
translation) that best maps its five landmarks onto ArcFace's template, in the least-squares
sense (Umeyama, "Least-squares estimation of transformation parameters between two point
patterns", IEEE PAMI 13(4), 1991), then one affine warp.

InsightFace's ``face_align.norm_crop`` computes the same transform through scikit-image's
``SimilarityTransform``, whose first use imports scikit-image's transforms and SciPy's linear
algebra: 0.17 s of each `facepic run`'s start, for a 2x2 SVD. The crops are the same
(tests/test_align.py compares both).
"""

from __future__ import annotations

import numpy as np

# Where ArcFace's training put the eyes, the nose tip and the mouth corners in a 112x112 crop.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity transform that maps the points ``src`` (N x 2) closest
    to ``dst`` (N x 2) in the least-squares sense. Computed in the points' own precision (a
    detector's float32), as scikit-image does, so that the crops are the same to the pixel."""
    src, dst = np.asarray(src), np.asarray(dst)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(covariance) < 0:
        sign[1] = -1  # a reflection fits better: take the best rotation instead
    rank = np.count_nonzero(singular > singular.max() * 2 * np.finfo(float).eps)  # matrix_rank's tolerance
    if rank == 0:
        rotation = np.full((2, 2), np.nan)  # every point in one place: no transform
    elif rank == 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        rotation = (u @ vt).astype(np.float64)
    elif rank == 1:
        rotation = u @ np.diag([1.0, -1.0]) @ vt
    else:
        rotation = u @ np.diag(sign) @ vt
    variance = src_c.var(axis=0).sum()
    scale = 1.0 / variance * (singular @ sign) if variance else np.nan  # in this order: the same rounding
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * (rotation @ src_mean)
    return matrix


def crop_matrix(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The transform of a photo onto a ``size`` x ``size`` recognizer crop (112 or 128: the
    template scaled, and centred in a 128 one), as InsightFace's ``estimate_norm``."""
    if size % 112 == 0:
        ratio, shift = size / 112.0, 0.0
    elif size % 128 == 0:
        ratio = size / 128.0
        shift = 8.0 * ratio
    else:
        raise ValueError(f"a recognizer input of {size} pixels: 112 or 128 (or multiples) expected")
    template = ARCFACE_TEMPLATE * ratio
    template[:, 0] += shift
    return similarity(np.asarray(landmarks).reshape(5, 2), template)


def norm_crop(bgr: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The face at ``landmarks`` of ``bgr``, aligned for the recognizer."""
    import cv2

    return cv2.warpAffine(bgr, crop_matrix(landmarks, size), (size, size), borderValue=0.0)
