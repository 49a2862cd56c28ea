"""Write named face regions into an XMP sidecar: MWG's (with ``AppliedToDimensions``, the
stored size) and Microsoft's, keeping everything else the sidecar already holds (other tags,
and the regions it is not told to replace)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

from facepic.xmp import NS, RDF, Box, XmpError, parse, qname, struct_of, value_of

PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"  # every XMP packet's id, by the specification


def _prefixes(data: bytes) -> dict[str, str]:
    """The namespace prefixes a document declares (to write it back with the same ones)."""
    found: dict[str, str] = {}
    try:
        for _, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            if prefix:
                found.setdefault(prefix, uri)
    except ET.ParseError:
        pass
    return found


def _skeleton() -> ET.Element:
    meta = ET.Element(qname("x", "xmpmeta"))
    ET.SubElement(meta, f"{{{RDF}}}RDF")
    return meta


def _resource(parent: ET.Element, tag: str) -> ET.Element:
    return ET.SubElement(parent, tag, {f"{{{RDF}}}parseType": "Resource"})


def _text(parent: ET.Element, tag: str, value: str) -> None:
    ET.SubElement(parent, tag).text = value


def _number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _info(rdf: ET.Element, tags: Sequence[str]) -> ET.Element:
    """The node holding the fields of the first of ``tags`` (a region info), made where none is."""
    for tag in tags:
        found = rdf.find(f".//{tag}")
        if found is not None:
            return struct_of(found)
    desc = ET.SubElement(rdf, f"{{{RDF}}}Description", {f"{{{RDF}}}about": ""})
    return _resource(desc, tags[0])


def _bag(info: ET.Element, tag: str) -> ET.Element:
    holder = info.find(tag)
    if holder is None:
        holder = ET.SubElement(info, tag)
    holder = struct_of(holder)
    bag = holder.find(f"{{{RDF}}}Bag")
    return bag if bag is not None else ET.SubElement(holder, f"{{{RDF}}}Bag")


def _mwg_box(region: ET.Element) -> Box | None:
    area = region.find(qname("mwg-rs", "Area"))
    if area is None:
        return None
    area = struct_of(area)
    try:
        x, y, w, h = (float(value_of(area, qname("stArea", k)) or "") for k in ("x", "y", "w", "h"))
    except ValueError:
        return None
    return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)


def _mp_box(region: ET.Element) -> Box | None:
    try:
        x, y, w, h = (float(v) for v in (value_of(region, qname("MPReg", "Rectangle")) or "").split(","))
    except ValueError:
        return None
    return (x, y, x + w, y + h)


def _write_mwg(rdf: ET.Element, faces: Sequence[tuple[str, Box]], size: tuple[int, int], drop: Dropper) -> None:
    info = _info(rdf, (qname("mwg-rs", "Regions"), qname("mwg-rs", "RegionInfo")))
    # Replaced where it stands, so that a sidecar written again unchanged is the same bytes.
    tag = qname("mwg-rs", "AppliedToDimensions")
    old = info.find(tag)
    where = list(info).index(old) if old is not None else 0
    for found in info.findall(tag):
        info.remove(found)
    dims = ET.Element(tag, {f"{{{RDF}}}parseType": "Resource"})
    info.insert(where, dims)
    _text(dims, qname("stDim", "w"), str(size[0]))
    _text(dims, qname("stDim", "h"), str(size[1]))
    _text(dims, qname("stDim", "unit"), "pixel")
    bag = _bag(info, qname("mwg-rs", "RegionList"))
    for li in list(bag):
        region = struct_of(li)
        kind = (value_of(region, qname("mwg-rs", "Type")) or "").lower()
        name = value_of(region, qname("mwg-rs", "Name")) or ""
        if kind == "face" and drop(name, _mwg_box(region)):
            bag.remove(li)
    for name, (x1, y1, x2, y2) in faces:
        li = _resource(bag, f"{{{RDF}}}li")
        area = _resource(li, qname("mwg-rs", "Area"))
        for key, value in (("x", (x1 + x2) / 2), ("y", (y1 + y2) / 2), ("w", x2 - x1), ("h", y2 - y1)):
            _text(area, qname("stArea", key), _number(value))
        _text(area, qname("stArea", "unit"), "normalized")
        _text(li, qname("mwg-rs", "Name"), name)
        _text(li, qname("mwg-rs", "Type"), "Face")


def _write_mp(rdf: ET.Element, faces: Sequence[tuple[str, Box]], drop: Dropper) -> None:
    info = _info(rdf, (qname("MP", "RegionInfo"),))
    bag = _bag(info, qname("MPRI", "Regions"))
    for li in list(bag):
        region = struct_of(li)
        name = value_of(region, qname("MPReg", "PersonDisplayName"))
        if name and drop(name, _mp_box(region)):
            bag.remove(li)
    for name, (x1, y1, x2, y2) in faces:
        li = _resource(bag, f"{{{RDF}}}li")
        _text(li, qname("MPReg", "Rectangle"), ", ".join(_number(v) for v in (x1, y1, x2 - x1, y2 - y1)))
        _text(li, qname("MPReg", "PersonDisplayName"), name)


Dropper = Callable[[str, Box | None], bool]


def write(existing: bytes | None, faces: Sequence[tuple[str, Box]], size: tuple[int, int], drop: Dropper) -> bytes:
    """The sidecar ``existing`` (None: a new one) with ``faces`` (name, box normalised to the
    stored image) as Face regions of both schemas, ``size`` the stored (width, height). An
    existing named face region is removed where ``drop(name, box)`` says FacePic owns it;
    every other element is kept. XmpError when ``existing`` is not XMP FacePic can read."""
    prefixes = {**NS}
    if existing:
        root = parse(existing)
        prefixes = {**_prefixes(existing), **NS}
    else:
        root = _skeleton()
    rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f".//{{{RDF}}}RDF")
    if rdf is None:
        raise XmpError("no rdf:RDF element")
    _write_mwg(rdf, faces, size, drop)
    _write_mp(rdf, faces, drop)
    for prefix, uri in prefixes.items():
        try:
            ET.register_namespace(prefix, uri)
        except ValueError:  # a prefix ElementTree reserves (ns0...): it picks one itself
            pass
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xpacket begin="\ufeff" id="{PACKET_ID}"?>\n{body}\n<?xpacket end="w"?>\n'.encode()
