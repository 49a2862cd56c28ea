"""Open a photo safely and decode it only as large as detection and thumbnails need.

JPEGs are decoded with libjpeg's DCT scaling (1/2, 1/4, 1/8 almost for free), by simplejpeg
where it is installed (its newer libjpeg-turbo decodes a camera photo a fifth faster than
Pillow's, to the same pixels) and by Pillow's ``draft`` otherwise or where simplejpeg refuses
the file; other formats are decoded and then reduced. EXIF orientation is applied, so every
coordinate FacePic stores refers to the upright photo at its full size.

A camera RAW is decoded from the preview JPEG the camera embeds in it (LibRaw, via rawpy),
never from the sensor data: the photo's width and height are the upright preview's, and
face coordinates refer to it. The RAW's own TIFF EXIF (camera, time, GPS) is kept.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import signal
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from facepic import exif
from facepic.errors import first_line
from facepic.formats import FORMAT_EXTENSIONS, PILLOW_FORMATS, raw_format

ImageFile.LOAD_TRUNCATED_IMAGES = False

try:  # HEIC/HEIF when pillow-heif is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass

try:
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - Pillow decodes JPEGs then
    _simplejpeg = None

Image.init()
# Only the formats this Pillow can open: Image.open raises KeyError on a name it does not know.
_OPENERS = tuple(f for f in PILLOW_FORMATS if f in Image.OPEN)


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


CHANGED = "it changed while it was being read (run again to take it as it is now)"


def read_photo(path: Path, sha256: str) -> bytes:
    """The photo's bytes, read once, when they are the ones the scan hashed as ``sha256``;
    PhotoError otherwise (the file changed since, or cannot be read). Decoding these bytes,
    never the file again, is what makes the photo stored the photo its id was taken from."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO put in its place: no wait
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            data = f.read()
    except FileNotFoundError:
        raise PhotoError("file disappeared before it could be read") from None
    except PermissionError:
        raise PhotoError("cannot read file (permission denied)") from None
    except OSError as e:
        raise PhotoError(f"cannot read file ({e.strerror or type(e).__name__})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PhotoError(CHANGED)
    return data


def decode(path: Path, target: int, max_pixels: int, data: bytes | None = None) -> Decoded:
    """Decode ``path`` so that its long side is at least ``target`` pixels (if it has them);
    given ``data`` (its bytes, from ``read_photo``), those are decoded and the file is not read.

    Raises PhotoError for an empty, unreadable, unrecognised, truncated or oversized file.
    """
    path = Path(path)
    if _size_of(path, data) == 0:
        raise PhotoError("empty file (0 bytes)")
    source: Path | io.BytesIO = path if data is None else io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")  # corrupt EXIF
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = max_pixels
            return _decode_source(source, raw_format(path.name), target, max_pixels)
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
        raise PhotoError(f"corrupt image ({first_line(e)})") from None


def _size_of(path: Path, data: bytes | None) -> int:
    """The size of ``data``, else of the file at ``path``; PhotoError when it cannot be read."""
    if data is not None:
        return len(data)
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise PhotoError("file disappeared before it could be read") from None
    except OSError as e:
        raise PhotoError(f"cannot read file ({e.strerror})") from None


def _decode_source(source: Path | io.BytesIO, kind: str | None, target: int, max_pixels: int) -> Decoded:
    """``source`` decoded by LibRaw where ``kind`` names a RAW format (or it is a DNG), else by Pillow."""
    if kind is not None:
        decoded = _decode_raw(source, kind, target, max_pixels)
        if decoded is not None:
            return decoded
    with Image.open(_rewound(source), formats=_OPENERS) as im:
        if im.format == "TIFF" and (kind is not None or _DNG_VERSION in im.tag_v2):  # type: ignore[attr-defined]
            # Pillow would decode a RAW's first TIFF page: a tiny thumbnail, or nothing.
            decoded = None if kind is not None else _decode_raw(source, "DNG", target, max_pixels)
            if decoded is None:
                raise PhotoError("unreadable RAW file (LibRaw does not recognise it)")
            return decoded
        return _decode_open(im, target, max_pixels)


def _rewound(source: Path | io.BytesIO) -> Path | io.BytesIO:
    """The source, a path or bytes in memory read from their start (a decoder tried before
    may have moved it)."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return source


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


def _decode_open(
    im: Image.Image,
    target: int,
    max_pixels: int,
    orientation: int | None = None,
    fmt: str | None = None,
    meta: dict | None = None,
) -> Decoded:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise PhotoError("image has no pixels")
    if w * h > max_pixels:
        raise PhotoError(f"image too large ({w}x{h} pixels, limit {max_pixels})")
    fmt = fmt or im.format or "unknown"
    own = exif.extract(im)  # before load(): Pillow's TIFF plugin drops the tag once it has applied it
    meta = own if meta is None else {**own, **meta}
    pixels = None
    if im.format == "JPEG":
        r = min(1.0, target / max(w, h))
        reduced = (max(1, int(w * r)), max(1, int(h * r)))
        pixels = _jpeg_pixels(im, reduced)
        if pixels is None:
            im.draft("RGB", reduced)
    if pixels is None:
        im.load()
    if orientation is None:
        # Only what the decoder left undone: Pillow 13 turns TIFFs upright itself (its size is the
        # upright one from open()) and pillow-heif turns HEIC upright; both then drop the tag.
        # JPEG, PNG, WebP and AVIF keep it, and their pixels as stored.
        orientation = _orientation_tag(im)
    rgb = Image.fromarray(pixels) if pixels is not None else _to_rgb(im)
    cap = 2 * target
    if max(rgb.size) > cap:
        rgb.thumbnail((cap, cap), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if orientation != 1:
        rgb = _orient(rgb, orientation)
    full_w, full_h = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    scale = rgb.size[0] / full_w
    return Decoded(np.asarray(rgb), full_w, full_h, scale, fmt, meta)


def _jpeg_pixels(im: Image.Image, reduced: tuple[int, int]) -> np.ndarray | None:
    """An RGB or greyscale JPEG's pixels, DCT-scaled to at least ``reduced``, by simplejpeg;
    None to leave it to Pillow: simplejpeg missing, a CMYK JPEG, or anything simplejpeg finds
    wrong (strict: a truncated or corrupt file then gets Pillow's reason)."""
    fp = getattr(im, "fp", None)  # an ImageFile's open file
    if _simplejpeg is None or im.mode not in ("RGB", "L") or fp is None:
        return None
    start = fp.tell()
    try:
        fp.seek(0)
        data = fp.read()
        return _simplejpeg.decode_jpeg(data, "RGB", min_width=reduced[0], min_height=reduced[1], strict=True)
    except (ValueError, OSError):
        return None
    finally:
        fp.seek(start)


def _orientation_tag(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - corrupt EXIF: the pixels as stored
        return 1
    return value if 1 <= value <= 8 else 1


_ORIENTATION = 0x0112
_DNG_VERSION = 50706
# LibRaw's flip (bit 0: mirror, bit 1: upside down, bit 2: transpose) as an EXIF orientation.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
_MIN_PREVIEW = 320  # long side, pixels


def _decode_raw(source: Path | io.BytesIO, kind: str, target: int, max_pixels: int) -> Decoded | None:
    """Decode the preview a camera embeds in a RAW; None when LibRaw says it is no RAW at all."""
    try:
        import rawpy  # only the worker decodes RAWs; the enqueuer never imports this
    except ImportError:
        raise PhotoError("RAW photos need the rawpy package (pip install rawpy)") from None
    try:
        _rewound(source)
        with rawpy.imread(str(source) if isinstance(source, Path) else source) as raw:
            flip = raw.sizes.flip
            thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        raise PhotoError(
            "RAW file without an embedded preview (FacePic decodes only the camera's "
            "preview; export a JPEG from the RAW to include it)"
        ) from None
    except rawpy.LibRawFileUnsupportedError:
        return None  # a JPEG named .cr2, say: decoded by content
    except rawpy.LibRawError as e:
        raise PhotoError(f"corrupt RAW file ({first_line(e)})") from None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            preview: Image.Image = Image.open(io.BytesIO(bytes(thumb.data)), formats=["JPEG"])
        else:  # an uncompressed RGB preview
            preview = Image.fromarray(np.ascontiguousarray(thumb.data))
    except UnidentifiedImageError:
        raise PhotoError("RAW file whose embedded preview is not a readable JPEG") from None
    with preview:
        if max(preview.size) < _MIN_PREVIEW:
            # LibRaw falls back to the IFD0 thumbnail when the real preview is missing or cut off;
            # at 160 pixels no face can be found, and "0 faces" would hide the reason.
            raise PhotoError(
                f"RAW file whose embedded preview is only {preview.width}x{preview.height} "
                "pixels (too small to find faces; the preview may be missing or cut off)"
            )
        # A preview is stored as the sensor is. One that carries no EXIF gets LibRaw's, with the
        # RAW's orientation (IFD0 or maker notes) in it; one tagged 1 or not at all takes the RAW's.
        own = _orientation_tag(preview) if preview.format == "JPEG" else 1
        orientation = own if own != 1 else _FLIP_TO_ORIENTATION.get(flip, 1)
        meta = {**_raw_tiff_metadata(source), "orientation": orientation}
        return _decode_open(preview, target, max_pixels, orientation, kind, meta)


def _raw_tiff_metadata(source: Path | io.BytesIO) -> dict:
    """EXIF from a TIFF-based RAW's IFD0 (DNG, CR2, NEF, ARW, ORF, RW2); {} for CR3 and RAF."""
    try:
        with open(source, "rb") if isinstance(source, Path) else io.BytesIO(source.getvalue()) as f:
            head = f.read(8)
            endian = {b"II": "<", b"MM": ">"}.get(head[:2])
            if endian is None or len(head) < 8:
                return {}
            # ORF ("IIRO") and RW2 ("IIU\0") are TIFF with a magic number of their own that
            # Pillow's header check refuses: read IFD0 at its offset with the byte order given.
            tags = Image.Exif()
            tags.endian = endian
            tags.load_from_fp(f, struct.unpack(endian + "I", head[4:])[0])
            meta = exif.from_tags(tags)  # inside the with: the EXIF and GPS IFDs are read lazily
    except Exception:  # noqa: BLE001 - unreadable metadata: the preview's, if any, remains
        return {}
    meta.pop("orientation", None)
    return meta


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


__all__ = ["CHANGED", "FORMAT_EXTENSIONS", "Decoded", "PhotoError", "decode", "read_photo", "time_limit"]
