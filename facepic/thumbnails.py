"""The photo's 300x300 thumbnail, a square crop of each face, and the page's screen-size
rendition of the whole photo, as JPEG bytes.

The thumbnail is a square *crop* (cover), not a fit: a grid of photos reads best with
every tile filled, and the crop window is slid towards the faces so nobody is cut off
where the photo allows it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

THUMB_SIZE = 300
FACE_SIZE = 160
JPEG_QUALITY = 85
DISPLAY_SIZE = 1600  # the longest side of the page's whole-photo view
DISPLAY_MAX_PIXELS = 200_000_000  # an original larger than this is not opened by the page
FACE_MARGIN = 1.5  # the crop's side, relative to the larger side of the face box


def _jpeg(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=JPEG_QUALITY, optimize=False)
    return out.getvalue()


def thumbnail(rgb: np.ndarray, face_boxes: Sequence[Sequence[float]] = (), size: int = THUMB_SIZE) -> bytes:
    """A ``size`` x ``size`` JPEG of the photo, cropped to a square centred on its faces."""
    h, w = rgb.shape[:2]
    left, top, side = square_window(w, h, face_boxes)
    return _jpeg(Image.fromarray(_resize(rgb[top : top + side, left : left + side], size)))


def _resize(square: np.ndarray, size: int) -> np.ndarray:
    """``square`` at ``size`` x ``size``: pixel-area averaging down (a fifth of the time of
    Pillow's Lanczos, alike to the eye at these sizes), bicubic up."""
    import cv2  # a worker's import: the enqueuer image, which serves the web page, has no OpenCV

    grow = square.shape[0] < size
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)


def square_window(w: int, h: int, face_boxes: Sequence[Sequence[float]] = ()) -> tuple[int, int, int]:
    """The thumbnail's square (left, top, side) in a ``w`` x ``h`` photo, centred on its faces:
    the web page draws face boxes on the thumbnail with it."""
    side = min(w, h)
    if len(face_boxes):
        boxes = np.asarray(face_boxes, dtype=np.float64)
        cx = float((boxes[:, 0].min() + boxes[:, 2].max()) / 2)
        cy = float((boxes[:, 1].min() + boxes[:, 3].max()) / 2)
    else:
        cx, cy = w / 2, h / 2
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    top = int(round(min(max(cy - side / 2, 0), h - side)))
    return left, top, side


def face_crop(rgb: np.ndarray, box: Sequence[float] | np.ndarray, size: int = FACE_SIZE) -> bytes:
    """A ``size`` x ``size`` JPEG around one face box (reduced-image coordinates)."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * FACE_MARGIN
    side = max(2.0, min(side, float(max(w, h))))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    iside = int(round(side))
    # The part of the photo under the window; parts outside stay black.
    sx1, sy1 = max(left, 0), max(top, 0)
    sx2, sy2 = min(left + iside, w), min(top + iside, h)
    if (sx1, sy1, sx2, sy2) == (left, top, left + iside, top + iside):
        window = rgb[top : top + iside, left : left + iside]
    else:
        window = np.zeros((iside, iside, 3), dtype=np.uint8)
        if sx2 > sx1 and sy2 > sy1:
            window[sy1 - top : sy2 - top, sx1 - left : sx2 - left] = rgb[sy1:sy2, sx1:sx2]
    return _jpeg(Image.fromarray(_resize(window, size)))


def display(source: BinaryIO, longest: int = DISPLAY_SIZE) -> bytes | None:
    """The whole photo upright (as its face boxes are), its longest side at most ``longest``,
    as JPEG; None when Pillow cannot read it (a RAW file, a corrupt or oversized one)."""
    try:
        with Image.open(source) as im:
            if im.width * im.height > DISPLAY_MAX_PIXELS:
                return None
            im.draft("RGB", (longest, longest))  # a JPEG decodes at a fraction of its size
            upright = ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None
    upright.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return _jpeg(upright)
