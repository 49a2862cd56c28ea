"""XMP face regions: read the named Face regions of a photo (its embedded packet and its sidecar
files), and write them into a sidecar, keeping everything else the sidecar holds.

Two schemas, as digiKam, Lightroom, Picasa and Windows Photo Gallery write them:
- MWG (``mwg-rs:Regions``, of type RegionInfo; ``mwg-rs:RegionInfo`` read too): ``Area`` x, y the centre, w, h the size, normalised to the image
  as stored (before EXIF orientation), with ``AppliedToDimensions`` the stored size; read first;
- Microsoft (``MP:RegionInfo``): ``MPReg:Rectangle`` "x, y, w, h" from the top left, normalised;
  read where a photo has no MWG face region.
Boxes here are in pixels of the full-size upright photo, as FacePic's faces are: the EXIF
orientation turns a stored region upright on reading, and back on writing. XML is parsed with the
standard library; a document type declaration (entity expansion) is refused as bad XMP.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facepic.errors import FacePicError

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS = {
    "x": "adobe:ns:meta/",
    "rdf": RDF,
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
    "MP": "http://ns.microsoft.com/photo/1.2/",
    "MPRI": "http://ns.microsoft.com/photo/1.2/t/RegionInfo#",
    "MPReg": "http://ns.microsoft.com/photo/1.2/t/Region#",
}
JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
MAX_SIDECAR = 16 * 1024 * 1024  # bytes: a sidecar larger than this is not a sidecar


class XmpError(FacePicError):
    """XMP that cannot be read (not XML, a document type, a sidecar unreadable): the photo goes on."""


Box = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True)
class Region:
    name: str
    box: Box  # pixels of the full-size upright photo


def as_box(values: Sequence[float]) -> Box:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def qname(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


# --- where the XMP is ------------------------------------------------------------------------


def sidecars(photo: Path) -> list[Path]:
    """The sidecar files of ``photo`` that exist: ``IMG_0001.JPG.xmp`` (digiKam, darktable) and
    ``IMG_0001.xmp`` (Lightroom), either case of the extension."""
    names = [photo.name + ext for ext in (".xmp", ".XMP")] + [photo.stem + ext for ext in (".xmp", ".XMP")]
    found: list[Path] = []
    for name in dict.fromkeys(names):
        path = photo.with_name(name)
        if path.is_file() and all(not path.samefile(p) for p in found):
            found.append(path)
    return found


def is_sidecar_of(name: str, photo_names: Iterable[str]) -> str | None:
    """The photo (among ``photo_names``, in one folder) whose sidecar a file called ``name`` is."""
    stem, ext = name.rsplit(".", 1) if "." in name else (name, "")
    if ext.lower() != "xmp":
        return None
    photos = list(photo_names)
    for photo in photos:
        if photo == stem:  # IMG_0001.JPG.xmp
            return photo
    for photo in photos:
        if photo.rsplit(".", 1)[0] == stem:  # IMG_0001.xmp
            return photo
    return None


def embedded_packet(data: bytes) -> bytes | None:
    """The XMP packet a photo's bytes hold: a JPEG's APP1 XMP segment, else (PNG, TIFF, HEIF,
    WebP keep it as text) the first ``x:xmpmeta`` element found in the file."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_packet(data)
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    return data[start : end + len(b"</x:xmpmeta>")] if end >= 0 else None


def _jpeg_packet(data: bytes) -> bytes | None:
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body.startswith(JPEG_XMP):
            return body[len(JPEG_XMP) :]
        pos += 2 + length
    return None


# --- reading regions -------------------------------------------------------------------------


def parse(packet: bytes) -> ET.Element:
    """The packet's XML tree; XmpError when it is not XML, or declares a document type."""
    if re.search(rb"<!DOCTYPE|<!ENTITY", packet, re.IGNORECASE):
        raise XmpError("XMP declares a document type (refused)")
    # Some writers end the segment with NUL bytes after `<?xpacket end="w"?>` (a photo of
    # ../shared/photos does): padding, not XML.
    packet = packet.rstrip(b"\x00 \t\r\n")
    try:
        return ET.fromstring(packet)
    except ET.ParseError as e:
        raise XmpError(f"XMP is not well-formed XML ({e})") from None


def struct_of(el: ET.Element) -> ET.Element:
    """The node holding a struct's fields: the element itself (``rdf:parseType="Resource"``,
    or fields as attributes) or its ``rdf:Description``."""
    desc = el.find(f"{{{RDF}}}Description")
    return desc if desc is not None else el


def value_of(node: ET.Element, tag: str) -> str | None:
    if tag in node.attrib:
        return node.attrib[tag]
    child = node.find(tag)
    if child is None:
        return None
    li = child.find(f".//{{{RDF}}}li")  # a language alternative
    text = li.text if li is not None else child.text
    return text.strip() if text else None


def _items(node: ET.Element, tag: str) -> list[ET.Element]:
    child = node.find(tag)
    if child is None:
        return []
    child = struct_of(child)
    for kind in ("Bag", "Seq", "Alt"):
        container = child.find(f"{{{RDF}}}{kind}")
        if container is not None:
            return [struct_of(li) for li in container.findall(f"{{{RDF}}}li")]
    return []


def _number(text: str | None) -> float:
    if text is None:
        raise ValueError("missing")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not finite")
    return value


def _name(text: str | None) -> str | None:
    name = " ".join((text or "").split())
    return name[:200] if name else None


def mwg_regions(root: ET.Element) -> list[tuple[str, Box]]:
    """Named Face regions of MWG, as (name, box normalised to the stored image, x1 y1 x2 y2)."""
    found: list[tuple[str, Box]] = []
    infos = [*root.iter(qname("mwg-rs", "Regions")), *root.iter(qname("mwg-rs", "RegionInfo"))]
    for info in map(struct_of, infos):
        dims = info.find(qname("mwg-rs", "AppliedToDimensions"))
        size: tuple[float, float] | None = None
        if dims is not None:
            dims = struct_of(dims)
            try:
                size = (_number(value_of(dims, qname("stDim", "w"))), _number(value_of(dims, qname("stDim", "h"))))
            except ValueError:
                size = None
        for region in _items(info, qname("mwg-rs", "RegionList")):
            kind = (value_of(region, qname("mwg-rs", "Type")) or "").lower()
            name = _name(value_of(region, qname("mwg-rs", "Name")))
            area = region.find(qname("mwg-rs", "Area"))
            if kind != "face" or not name or area is None:
                continue
            area = struct_of(area)
            try:
                x, y, w, h = (_number(value_of(area, qname("stArea", k))) for k in ("x", "y", "w", "h"))
            except ValueError:
                continue
            if (value_of(area, qname("stArea", "unit")) or "normalized").lower() == "pixel":
                if not size or not size[0] or not size[1]:
                    continue
                x, w, y, h = x / size[0], w / size[0], y / size[1], h / size[1]
            found.append((name, (x - w / 2, y - h / 2, x + w / 2, y + h / 2)))
    return found


def mp_regions(root: ET.Element) -> list[tuple[str, Box]]:
    """Named regions of Microsoft's schema, as ``mwg_regions`` gives them."""
    found: list[tuple[str, Box]] = []
    for info in root.iter(qname("MP", "RegionInfo")):
        for region in _items(struct_of(info), qname("MPRI", "Regions")):
            name = _name(value_of(region, qname("MPReg", "PersonDisplayName")))
            rect = value_of(region, qname("MPReg", "Rectangle"))
            if not name or not rect:
                continue
            try:
                x, y, w, h = (_number(v) for v in rect.split(","))
            except ValueError:
                continue
            found.append((name, (x, y, x + w, y + h)))
    return found


# EXIF orientation: where a point (x, y) of the stored image, normalised, lies on the upright one.
_UPRIGHT = {
    1: lambda x, y: (x, y),
    2: lambda x, y: (1 - x, y),
    3: lambda x, y: (1 - x, 1 - y),
    4: lambda x, y: (x, 1 - y),
    5: lambda x, y: (y, x),
    6: lambda x, y: (1 - y, x),
    7: lambda x, y: (1 - y, 1 - x),
    8: lambda x, y: (y, 1 - x),
}
_INVERSE = {6: 8, 8: 6}  # the others undo themselves


def _turn(box: Box, orientation: int) -> Box:
    f = _UPRIGHT.get(orientation, _UPRIGHT[1])
    (ax, ay), (bx, by) = f(box[0], box[1]), f(box[2], box[3])
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def upright(box: Box, orientation: int, width: int, height: int) -> Box:
    """A box normalised to the stored image -> pixels of the upright photo (``width`` x ``height``)."""
    x1, y1, x2, y2 = _turn(box, orientation)
    clamp = lambda v: min(1.0, max(0.0, v))  # noqa: E731
    return (clamp(x1) * width, clamp(y1) * height, clamp(x2) * width, clamp(y2) * height)


def stored(box: Sequence[float], orientation: int, width: int, height: int) -> Box:
    """Pixels of the upright photo -> a box normalised to the stored image (``upright`` undone)."""
    norm = (box[0] / width, box[1] / height, box[2] / width, box[3] / height)
    return _turn(norm, _INVERSE.get(orientation, orientation))


def regions(packet: bytes, orientation: int, width: int, height: int) -> list[Region]:
    """The named Face regions of an XMP packet on the upright photo: MWG's, else Microsoft's.
    XmpError when the packet cannot be read."""
    root = parse(packet)
    found = mwg_regions(root) or mp_regions(root)
    out: list[Region] = []
    for name, box in found:
        pixels = upright(box, orientation, width, height)
        if pixels[2] > pixels[0] and pixels[3] > pixels[1]:
            out.append(Region(name, pixels))
    return out


def photo_regions(
    photo: Path, data: bytes, orientation: int, width: int, height: int
) -> tuple[list[Region], list[str]]:
    """A photo's named face regions, from its sidecars (first) and its embedded packet (names
    the sidecars lack), one region per name; and a reason for each XMP that could not be read."""
    found: list[Region] = []
    problems: list[str] = []
    sources: list[tuple[str, bytes | None]] = []
    for path in sidecars(photo):
        try:
            if path.stat().st_size > MAX_SIDECAR:
                raise XmpError("larger than 16 MB")
            sources.append((path.name, path.read_bytes()))
        except (OSError, XmpError) as e:
            problems.append(f"XMP sidecar {path.name} not read ({getattr(e, 'strerror', None) or e})")
    sources.append(("embedded XMP", embedded_packet(data)))
    names: set[str] = set()
    for label, packet in sources:
        if not packet:
            continue
        try:
            got = regions(packet, orientation, width, height)
        except XmpError as e:
            problems.append(f"{label} not read: {e}" if label == "embedded XMP" else f"XMP sidecar {label}: {e}")
            continue
        for region in got:
            if region.name.lower() not in names:
                names.add(region.name.lower())
                found.append(region)
    return found, problems


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


MATCH_IOU = 0.3  # a region and a detected face this much alike are one face


def match(found: Sequence[Region], boxes: Sequence[Sequence[float]]) -> tuple[dict[int, str], list[Region]]:
    """Each region given to the detected face it overlaps most (``boxes``, upright pixels; best
    pairs first, one region per face): face index -> name, and the regions no face took."""
    pairs = sorted(
        ((iou(r.box, b), ri, bi) for ri, r in enumerate(found) for bi, b in enumerate(boxes)),
        reverse=True,
    )
    named: dict[int, str] = {}
    taken: set[int] = set()
    for overlap, ri, bi in pairs:
        if overlap < MATCH_IOU:
            break
        if ri in taken or bi in named:
            continue
        named[bi] = found[ri].name
        taken.add(ri)
    return named, [r for ri, r in enumerate(found) if ri not in taken]
