"""Open a photo safely and decode it only as large as detection and thumbnails need.

JPEGs are decoded with libjpeg's DCT scaling (``draft``: 1/2, 1/4, 1/8 almost for free);
other formats are decoded and then reduced. EXIF orientation is applied, so every
coordinate FacePic stores refers to the upright photo at its full size.
"""

from __future__ import annotations

import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from typing import Iterator

from facepic import exif

ImageFile.LOAD_TRUNCATED_IMAGES = False

try:  # HEIC/HEIF when pillow-heif is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


class PhotoError(Exception):
    """A photo that cannot be processed; the message is the reason shown to the user."""


@dataclass
class Decoded:
    rgb: np.ndarray  # upright, RGB, uint8, at the reduced size
    width: int  # upright width at full size
    height: int
    scale: float  # reduced / full
    format: str
    metadata: dict

    def to_full(self, values: np.ndarray) -> np.ndarray:
        """Coordinates on the reduced image -> coordinates on the full-size upright photo."""
        return values / self.scale


def decode(path: Path, target: int, max_pixels: int) -> Decoded:
    """Decode ``path`` so that its long side is at least ``target`` pixels (if it has them).

    Raises PhotoError for an empty, unreadable, unrecognised, truncated or oversized file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PhotoError("file disappeared before it could be read") from None
    except OSError as e:
        raise PhotoError(f"cannot read file ({e.strerror})") from None
    if size == 0:
        raise PhotoError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")  # corrupt EXIF
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = max_pixels
            with Image.open(path) as im:
                return _decode_open(im, target, max_pixels)
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoError(f"image too large (more than {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        raise PhotoError("not a recognised image format") from None
    except PermissionError:
        raise PhotoError("cannot read file (permission denied)") from None
    except FileNotFoundError:
        raise PhotoError("file disappeared before it could be read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if "truncated" in str(e):
            raise PhotoError("truncated image (the file ends before the picture does)") from None
        raise PhotoError(f"corrupt image ({_short(e)})") from None


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """PhotoError if the block takes longer than ``seconds`` (main thread only; elsewhere no limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise PhotoError(f"took longer than {seconds:g} s to decode and analyse")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


FORMAT_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic",
                     "GIF": "gif", "TIFF": "tif", "BMP": "bmp"}


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]


def _decode_open(im: Image.Image, target: int, max_pixels: int) -> Decoded:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise PhotoError("image has no pixels")
    if w * h > max_pixels:
        raise PhotoError(f"image too large ({w}x{h} pixels, limit {max_pixels})")
    fmt = im.format or "unknown"
    meta = exif.extract(im)
    orientation = meta.get("orientation", 1)
    if im.format == "JPEG":
        r = min(1.0, target / max(w, h))
        im.draft("RGB", (max(1, int(w * r)), max(1, int(h * r))))
    im.load()
    rgb = _to_rgb(im)
    cap = 2 * target
    if max(rgb.size) > cap:
        rgb.thumbnail((cap, cap), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if orientation != 1:
        rgb = _orient(rgb, orientation)
    full_w, full_h = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    scale = rgb.size[0] / full_w
    return Decoded(np.asarray(rgb), full_w, full_h, scale, fmt, meta)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.uint32)
        top = int(arr.max()) or 1
        shift = max(0, top.bit_length() - 8)
        return Image.fromarray((arr >> shift).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return im.transpose(method) if method is not None else im


__all__ = ["Decoded", "PhotoError", "decode"]
