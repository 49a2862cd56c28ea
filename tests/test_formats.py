"""Every supported format, colour mode and orientation, on real files written here."""

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facepic import scan
from facepic.decode import PhotoError, decode
from facepic.formats import FORMAT_EXTENSIONS, PILLOW_FORMATS, RAW_EXTENSIONS, classify

LIMIT = 150_000_000
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def marked(w: int = 400, h: int = 200) -> Image.Image:
    """White, with a red mark in the stored top-left corner."""
    im = Image.new("RGB", (w, h), WHITE)
    im.paste(RED, (0, 0, 40, 40))
    return im


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def is_colour(pixel: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - rgb) < 40))


# A minimal little-endian TIFF writer, enough for a DNG: LibRaw reads what it writes.
def _tiff(ifds: list[dict], magic: bytes = b"II*\x00") -> bytes:
    """``ifds``: tag -> (type, values); type "ifd" points at other IFDs, "data" at a blob."""
    offsets, pos = [], 8
    for d in ifds:
        offsets.append(pos)
        pos += 2 + 12 * len(d) + 4
    blobs = bytearray()

    def blob(data: bytes) -> int:
        blobs.extend(b"\x00" * (len(blobs) % 2))
        blobs.extend(data)
        return pos + len(blobs) - len(data)

    out = bytearray(magic + struct.pack("<I", 8))
    for d in ifds:
        out += struct.pack("<H", len(d))
        for tag in sorted(d):
            typ, values = d[tag]
            if typ == "ifd":
                typ, values = 4, [offsets[i] for i in values]
            elif typ == "data":
                typ, values = 4, [blob(values)]
            if typ == 2:
                raw, count = values.encode() + b"\x00", len(values) + 1
            elif typ == 5:
                raw, count = struct.pack(f"<{2 * len(values)}I", *(x for v in values for x in v)), len(values)
            else:
                raw, count = (
                    struct.pack(f"<{len(values)}{'B' if typ == 1 else 'H' if typ == 3 else 'I'}", *values),
                    len(values),
                )
            field = raw.ljust(4, b"\x00") if len(raw) <= 4 else struct.pack("<I", blob(raw))
            out += struct.pack("<HHI", tag, typ, count) + field
        out += struct.pack("<I", 0)
    return bytes(out + blobs)


def dng(
    preview: Image.Image | None, orientation: int = 1, preview_exif: bytes = b"", magic: bytes = b"II*\x00"
) -> bytes:
    """A DNG: IFD0 a 32x16 thumbnail; SubIFDs a 64x32 CFA raw and ``preview`` as a JPEG."""
    thumb = marked(32, 16).tobytes()
    raw = np.random.default_rng(0).integers(0, 4000, (32, 64)).astype("<u2").tobytes()
    ifd0 = {
        254: (4, [1]),
        256: (4, [32]),
        257: (4, [16]),
        258: (3, [8, 8, 8]),
        259: (3, [1]),
        262: (3, [2]),
        271: (2, "Canon"),
        272: (2, "EOS 5D"),
        273: ("data", thumb),
        274: (3, [orientation]),
        277: (3, [3]),
        278: (4, [16]),
        279: (4, [len(thumb)]),
        284: (3, [1]),
        330: ("ifd", [1, 2] if preview else [1]),
        34665: ("ifd", [3]),
        34853: ("ifd", [4]),
        50706: (1, [1, 4, 0, 0]),
        50707: (1, [1, 1, 0, 0]),
        50708: (2, "Canon EOS 5D"),
    }
    cfa = {
        254: (4, [0]),
        256: (4, [64]),
        257: (4, [32]),
        258: (3, [16]),
        259: (3, [1]),
        262: (3, [32803]),
        273: ("data", raw),
        277: (3, [1]),
        278: (4, [32]),
        279: (4, [len(raw)]),
        284: (3, [1]),
        33421: (3, [2, 2]),
        33422: (1, [0, 1, 1, 2]),
        50717: (4, [4095]),
    }
    exif_ifd = {36867: (2, "2021:07:04 12:30:00")}
    gps = {1: (2, "N"), 2: (5, [(48, 1), (51, 1), (2988, 100)]), 3: (2, "W"), 4: (5, [(2, 1), (17, 1), (402, 10)])}
    ifds = [ifd0, cfa, {}, exif_ifd, gps]
    if preview:
        jpg = io.BytesIO()
        preview.save(jpg, "JPEG", quality=95, exif=preview_exif)
        jpg = jpg.getvalue()
        # Drop Pillow's JFIF segment: a camera's preview starts with its EXIF segment, and LibRaw
        # adds an EXIF of its own (with the RAW's orientation) to a JPEG that does not.
        jpg = jpg[:2] + jpg[4 + struct.unpack(">H", jpg[4:6])[0] :]
        ifds[2] = {
            254: (4, [1]),
            256: (4, [preview.width]),
            257: (4, [preview.height]),
            258: (3, [8, 8, 8]),
            259: (3, [7]),
            262: (3, [6]),
            273: ("data", jpg),
            277: (3, [3]),
            278: (4, [preview.height]),
            279: (4, [len(jpg)]),
            284: (3, [1]),
        }
    else:
        ifds[2] = {254: (4, [1])}  # unused: an empty-ish IFD nothing points at
    return _tiff(ifds, magic)


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kind",
    [
        ("IMG_0001.JPG", "photo"),
        ("a.jpeg", "photo"),
        ("a.heic", "photo"),
        ("a.avif", "photo"),
        ("scan.TIFF", "photo"),
        ("a.gif", "photo"),
        ("a.bmp", "photo"),
        ("a.webp", "photo"),
        ("DSC_1.NEF", "raw"),
        ("a.dng", "raw"),
        ("a.cr3", "raw"),
        ("a.rw2", "raw"),
        ("clip.MOV", "skip"),
        ("a.mp4", "skip"),
        ("IMG_1.AAE", "skip"),
        ("a.jpg.xmp", "skip"),
        ("a.json", "skip"),
        (".DS_Store", "skip"),
        ("Thumbs.db", "skip"),
        ("desktop.ini", "skip"),
        ("notes.txt", "skip"),
        ("._IMG_1.jpg", "skip"),
        ("dir/sub/._x.heic", "skip"),
        ("a.psd", "other"),
        ("README", "other"),
    ],
)
def test_classify(name: str, kind: str) -> None:
    assert classify(name) == kind


def test_scanner_uses_the_one_extension_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("x.CR2", "x2.avif", "x.mov", "y.json"):
        (tmp_path / name).write_bytes(b"x")
    assert [f.path for f in scan.photos(tmp_path)] == ["x.CR2", "x2.avif"]


def test_every_decoded_format_has_an_object_key_extension() -> None:
    for fmt in PILLOW_FORMATS:
        assert FORMAT_EXTENSIONS[fmt].isalnum()
    for ext in RAW_EXTENSIONS:  # a RAW original keeps its own extension
        assert FORMAT_EXTENSIONS[ext[1:].upper()] == ext[1:]


# --- formats -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, name, kw",
    [
        ("JPEG", "a.jpg", {"quality": 95}),
        ("PNG", "a.png", {}),
        ("WEBP", "a.webp", {"quality": 95}),
        ("HEIF", "a.heic", {"quality": 95}),
        ("AVIF", "a.avif", {"quality": 95}),
        ("TIFF", "a.tif", {}),
        ("GIF", "a.gif", {}),
        ("BMP", "a.bmp", {}),
    ],
)
def test_each_format_decodes(tmp_path: Path, fmt: str, name: str, kw: dict) -> None:
    marked().save(tmp_path / name, fmt, **kw)
    d = decode(tmp_path / name, 640, LIMIT)
    assert d.format == fmt and (d.width, d.height) == (400, 200) and d.rgb.shape == (200, 400, 3)
    assert is_colour(d.rgb[10, 10], RED) and is_colour(d.rgb[150, 300], WHITE)


@pytest.mark.parametrize("fmt, wrong_name", [("PNG", "a.jpg"), ("HEIF", "a.jpg"), ("JPEG", "a.png"), ("JPEG", "a.nef")])
def test_a_mislabelled_file_is_decoded_by_content(tmp_path: Path, fmt: str, wrong_name: str) -> None:
    marked().save(tmp_path / wrong_name, fmt)
    d = decode(tmp_path / wrong_name, 640, LIMIT)
    assert d.format == fmt and is_colour(d.rgb[10, 10], RED)


def test_formats_outside_the_list_are_not_opened(tmp_path: Path) -> None:
    marked().save(tmp_path / "a.jpg", "PPM")  # Pillow reads PPM, FacePic does not
    with pytest.raises(PhotoError, match="not a recognised image format"):
        decode(tmp_path / "a.jpg", 640, LIMIT)


# --- colour modes ------------------------------------------------------------------------


def _cv2_16bit_red(path: Path) -> Path:
    bgr = np.zeros((60, 80, 3), np.uint16)
    bgr[..., 2] = 60000
    assert cv2.imwrite(str(path), bgr)
    with Image.open(path) as im:  # really a 16-bit file, read by Pillow as such
        assert im.tag_v2[258] == (16, 16, 16) if im.format == "TIFF" else im.info.get("bitdepth", 16) == 16
    return path


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("cmyk.jpg", lambda p: Image.new("CMYK", (80, 60), (0, 255, 255, 0)).save(p), RED),
        ("cmyk.tif", lambda p: Image.new("CMYK", (80, 60), (255, 255, 0, 0)).save(p), BLUE),
        ("grey.png", lambda p: Image.new("L", (80, 60), 128).save(p), (128, 128, 128)),
        ("bw.tif", lambda p: Image.new("1", (80, 60), 1).save(p), WHITE),
        ("grey16.png", lambda p: Image.fromarray(np.full((60, 80), 51200, np.uint16)).save(p), (200, 200, 200)),
        ("grey16.tif", lambda p: Image.fromarray(np.full((60, 80), 51200, np.uint16)).save(p), (200, 200, 200)),
        ("rgb16.png", _cv2_16bit_red, (234, 0, 0)),
        ("rgb16.tif", _cv2_16bit_red, (234, 0, 0)),
        ("rgba.png", lambda p: Image.new("RGBA", (80, 60), (255, 0, 0, 0)).save(p), WHITE),
        ("rgba.webp", lambda p: Image.new("RGBA", (80, 60), (255, 0, 0, 0)).save(p, lossless=True), WHITE),
        ("opaque.webp", lambda p: Image.new("RGBA", (80, 60), (0, 0, 255, 255)).save(p, lossless=True), BLUE),
        ("la.png", lambda p: Image.new("LA", (80, 60), (0, 0)).save(p), WHITE),
    ],
)
def test_colour_modes_decode_to_the_right_rgb(tmp_path: Path, name: str, make, expected) -> None:
    make(tmp_path / name)
    d = decode(tmp_path / name, 640, LIMIT)
    assert d.rgb.dtype == np.uint8 and d.rgb.shape == (60, 80, 3)
    assert is_colour(d.rgb[30, 40], expected), d.rgb[30, 40]


def test_palette_gif_transparency_becomes_white(tmp_path: Path) -> None:
    im = Image.new("P", (80, 60), 1)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(0, (0, 0, 40, 60))  # index 0, transparent: left half
    im.save(tmp_path / "t.gif", transparency=0)
    d = decode(tmp_path / "t.gif", 640, LIMIT)
    assert is_colour(d.rgb[30, 10], WHITE) and is_colour(d.rgb[30, 70], BLUE)


@pytest.mark.parametrize("name", ["anim.gif", "pages.tif", "anim.webp"])
def test_first_frame_or_page_only(tmp_path: Path, name: str) -> None:
    first, second = Image.new("RGB", (80, 60), RED), Image.new("RGB", (80, 60), BLUE)
    first.save(tmp_path / name, save_all=True, append_images=[second], duration=100)
    with Image.open(tmp_path / name) as im:
        assert im.n_frames == 2
    d = decode(tmp_path / name, 640, LIMIT)
    assert is_colour(d.rgb[30, 40], RED) and (d.width, d.height) == (80, 60)


# --- orientation -------------------------------------------------------------------------


def _save_oriented(path: Path, orientation: int) -> Path:
    fmt = {".jpg": "JPEG", ".tif": "TIFF", ".webp": "WEBP", ".png": "PNG", ".heic": "HEIF", ".avif": "AVIF"}.get(
        path.suffix
    )
    if fmt is None:  # a DNG whose IFD0 carries the orientation and whose preview does not
        path.write_bytes(dng(marked(), orientation))
    else:
        marked().save(path, fmt, exif=exif_bytes(orientation), quality=95)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("name", ["o.jpg", "o.tif", "o.webp", "o.png", "o.heic", "o.avif", "o.dng"])
def test_exif_orientation_is_applied_once(tmp_path: Path, name: str, orientation: int) -> None:
    d = decode(_save_oriented(tmp_path / name, orientation), 640, LIMIT)
    rotated = orientation in (5, 6, 7, 8)
    assert (d.width, d.height) == ((200, 400) if rotated else (400, 200))
    assert d.rgb.shape[:2] == ((400, 200) if rotated else (200, 400))
    # Where the stored top-left corner ends up, per the EXIF definition of each orientation.
    corner = {1: (0, 0), 2: (0, 1), 3: (1, 1), 4: (1, 0), 5: (0, 0), 6: (0, 1), 7: (1, 1), 8: (1, 0)}[orientation]
    h, w = d.rgb.shape[:2]
    assert is_colour(d.rgb[corner[0] * (h - 20) + 10, corner[1] * (w - 20) + 10], RED)


# --- RAW ---------------------------------------------------------------------------------


def test_dng_decodes_its_embedded_preview_with_the_raw_exif(tmp_path: Path) -> None:
    path = tmp_path / "IMG_1.DNG"
    path.write_bytes(dng(marked(800, 400), orientation=6))
    d = decode(path, 640, LIMIT)
    assert d.format == "DNG" and FORMAT_EXTENSIONS[d.format] == "dng"
    assert (d.width, d.height) == (400, 800)  # the upright preview's size, not the 64x32 sensor's
    assert is_colour(d.rgb[10, d.rgb.shape[1] - 10], RED)  # orientation 6: top-left went top-right
    assert d.metadata["camera"] == "Canon EOS 5D" and d.metadata["taken_at"] == "2021-07-04T12:30:00"
    assert d.metadata["gps"]["latitude"] == pytest.approx(48.8583, abs=1e-4)
    assert d.metadata["gps"]["longitude"] == pytest.approx(-2.2945, abs=1e-4)
    assert d.metadata["orientation"] == 6


def _camera_only() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    return exif.tobytes()


@pytest.mark.parametrize(
    "raw_orientation, preview_exif",
    [
        (1, exif_bytes(6)),  # the preview's own tag wins
        (6, exif_bytes(6)),  # both say 6: turned once, not twice
        (6, _camera_only()),  # the preview's EXIF has no orientation: the RAW's applies
        (6, exif_bytes(1)),  # tagged 1, stored as the sensor is: the RAW's applies
    ],
)
def test_raw_preview_orientation(tmp_path: Path, raw_orientation: int, preview_exif: bytes) -> None:
    (tmp_path / "p.dng").write_bytes(dng(marked(), raw_orientation, preview_exif=preview_exif))
    d = decode(tmp_path / "p.dng", 640, LIMIT)
    assert (d.width, d.height) == (200, 400) and is_colour(d.rgb[10, d.rgb.shape[1] - 10], RED)


def test_a_dng_named_tif_is_decoded_as_a_raw(tmp_path: Path) -> None:
    (tmp_path / "x.tif").write_bytes(dng(marked()))
    d = decode(tmp_path / "x.tif", 640, LIMIT)
    assert d.format == "DNG" and (d.width, d.height) == (400, 200)  # not the 32x16 first page


def test_exif_is_read_from_a_tiff_raw_with_its_own_magic_number(tmp_path: Path) -> None:
    # ORF starts "IIRO" and RW2 "IIU\0": TIFF inside, but Pillow's header check refuses them.
    (tmp_path / "x.orf").write_bytes(dng(marked(), 8, magic=b"IIRO"))
    d = decode(tmp_path / "x.orf", 640, LIMIT)
    assert d.format == "ORF" and d.metadata["camera"] == "Canon EOS 5D" and (d.width, d.height) == (200, 400)


def test_raw_errors_have_one_clear_reason(tmp_path: Path) -> None:
    (tmp_path / "none.dng").write_bytes(dng(None))  # only the 32x16 IFD0 thumbnail
    (tmp_path / "junk.cr2").write_bytes(b"not a raw file at all " * 50)
    whole = dng(marked(800, 400))
    (tmp_path / "cut.nef").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.arw").write_bytes(b"")
    (tmp_path / "big.dng").write_bytes(whole)
    cases = {
        "none.dng": "preview is only 32x16 pixels",
        "junk.cr2": "not a recognised image format",
        "cut.nef": "corrupt|truncated|preview",
        "empty.arw": "empty file",
    }
    for name, reason in cases.items():
        with pytest.raises(PhotoError, match=reason):
            decode(tmp_path / name, 640, LIMIT)
    with pytest.raises(PhotoError, match="too large"):  # the preview's pixels count, at 800x400
        decode(tmp_path / "big.dng", 640, 100_000)


def test_a_raw_without_any_preview(tmp_path: Path) -> None:
    raw = np.zeros((32, 64), "<u2").tobytes()
    ifd0 = {
        254: (4, [0]),
        256: (4, [64]),
        257: (4, [32]),
        258: (3, [16]),
        259: (3, [1]),
        262: (3, [32803]),
        271: (2, "Canon"),
        272: (2, "EOS"),
        273: ("data", raw),
        277: (3, [1]),
        278: (4, [32]),
        279: (4, [len(raw)]),
        284: (3, [1]),
        33421: (3, [2, 2]),
        33422: (1, [0, 1, 1, 2]),
        50706: (1, [1, 4, 0, 0]),
        50708: (2, "Canon EOS"),
        50717: (4, [4095]),
    }
    (tmp_path / "bare.dng").write_bytes(_tiff([ifd0]))
    with pytest.raises(PhotoError, match="RAW file without an embedded preview"):
        decode(tmp_path / "bare.dng", 640, LIMIT)
