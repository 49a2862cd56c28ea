"""EXIF metadata: capture time, camera, orientation and GPS. Corrupt EXIF yields less, never an error."""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

from PIL import Image

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_DATETIME_ORIGINAL = 0x9003


def extract(im: Image.Image) -> dict[str, Any]:
    """``{"orientation": 1..8, "taken_at"?, "camera"?, "gps"?}`` from ``im``'s EXIF."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; we just take less of it
        try:
            tags = im.getexif()
        except Exception:  # noqa: BLE001 - any parse failure means "no EXIF"
            return {"orientation": 1}
        return _extract(tags)


def from_tags(tags: Image.Exif) -> dict[str, Any]:
    """As ``extract``, from EXIF tags read elsewhere (a RAW file's own TIFF structure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _extract(tags)


def _extract(tags: Image.Exif) -> dict[str, Any]:
    meta: dict[str, Any] = {"orientation": 1}
    try:
        orientation = int(tags.get(_ORIENTATION, 1))
        meta["orientation"] = orientation if 1 <= orientation <= 8 else 1
    except (TypeError, ValueError):
        pass
    camera = " ".join(s for s in (_text(tags.get(_MAKE)), _text(tags.get(_MODEL))) if s).strip()
    if camera:
        meta["camera"] = camera
    try:
        sub = tags.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001
        sub = {}
    taken = _exif_time(sub.get(_DATETIME_ORIGINAL)) or _exif_time(tags.get(_DATETIME))
    if taken:
        meta["taken_at"] = taken
    try:
        gps = _gps(tags.get_ifd(_GPS_IFD))
    except Exception:  # noqa: BLE001
        gps = None
    if gps:
        meta["gps"] = gps
    return meta


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip("\x00 ").strip() if value is not None else ""


def _exif_time(value: Any) -> str | None:
    text = _text(value)
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _degrees(value: Any, ref: Any) -> float | None:
    d, m, s = (float(v) for v in value)
    result = d + m / 60 + s / 3600
    if _text(ref).upper() in ("S", "W"):
        result = -result
    return round(result, 7)


def _gps(ifd: dict) -> dict[str, float] | None:
    if not ifd or 2 not in ifd or 4 not in ifd:
        return None
    try:
        lat = _degrees(ifd[2], ifd.get(1))
        lon = _degrees(ifd[4], ifd.get(3))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    gps: dict[str, float] = {"latitude": lat, "longitude": lon}
    try:
        if 6 in ifd:
            alt = float(ifd[6])
            ref = ifd.get(5, 0)
            if (ref[0] if isinstance(ref, bytes) and ref else ref) == 1:
                alt = -alt
            gps["altitude"] = round(alt, 2)
    except (TypeError, ValueError, ZeroDivisionError):
        pass
    return gps
