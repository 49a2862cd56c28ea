"""A folder of every kind of file a real drive holds, mixed with good photos.

``build(root)`` returns, for each photo path relative to ``root``, what must become of it:
``("done", faces)`` or ``("failed", words the reason must contain)``.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

from PIL import Image

from tests.conftest import PHOTOS

FACE = PHOTOS / "tom_hanks" / "07.jpg"

# How to store an upright photo so that EXIF orientation N shows it upright again.
TO_STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def face() -> Image.Image:
    return Image.open(FACE).convert("RGB")


def _bomb_png() -> bytes:
    """A tiny PNG whose header declares 30000 x 30000 pixels."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length and type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", 30000, 30000)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _corrupt_exif_jpeg() -> bytes:
    buf = io.BytesIO()
    face().save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    garbage = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + bytes(range(256)) * 2
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return data[:2] + segment + data[2:]


def build(root: Path) -> dict[str, tuple[str, object]]:
    root.mkdir(parents=True)
    expect: dict[str, tuple[str, object]] = {}

    def put(path: str, data: bytes, outcome: tuple[str, object]) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        expect[path] = outcome

    def encoded(im: Image.Image, fmt: str, **kw: object) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    for name in ("00.jpg", "05.jpg", "09.jpg"):
        put(f"good/{name}", (PHOTOS / "jessica_alba" / name).read_bytes(), ("done", 1))
    good = FACE.read_bytes()
    put("empty.jpg", b"", ("failed", "empty file"))
    put("truncated.jpg", good[: len(good) // 2], ("failed", "truncated"))
    put("random.jpg", random.Random(3).randbytes(20000), ("failed", "not a recognised image format"))
    put("text.jpg", b"shopping list: milk, eggs\n" * 40, ("failed", "not a recognised image format"))
    put("bad\nname.jpg", b"", ("failed", "empty file"))
    put("bomb.png", _bomb_png(), ("failed", "too large"))
    put("png-named.jpg", encoded(face(), "PNG"), ("done", 1))
    put("cmyk.jpg", encoded(face().convert("CMYK"), "JPEG", quality=90), ("done", 1))
    put("grey.jpg", encoded(face().convert("L"), "JPEG", quality=90), ("done", 1))
    grey16 = face().convert("L").point(lambda v: v).convert("I").point(lambda v: v * 257)
    put("png16.png", encoded(grey16.convert("I;16"), "PNG"), ("done", 1))
    put("palette.png", encoded(face().quantize(255), "PNG", transparency=0), ("done", 1))
    frames = [face(), Image.new("RGB", face().size, "black")]
    put("animated.webp", encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100), ("done", 1))
    put("corrupt-exif.jpg", _corrupt_exif_jpeg(), ("done", 1))
    for n, transpose in TO_STORED.items():
        stored = face() if transpose is None else face().transpose(transpose)
        exif = Image.Exif()
        exif[0x0112] = n
        put(f"orientation/{n}.jpg", encoded(stored, "JPEG", quality=92, exif=exif.tobytes()), ("done", 1))
    put("x.jpg/inside.jpg", (PHOTOS / "tom_hanks" / "08.jpg").read_bytes(), ("done", 1))
    put("with space.jpg", (PHOTOS / "keanu_reeves" / "00.jpg").read_bytes(), ("done", 1))
    put("ünïcödé 写真.jpg", (PHOTOS / "keanu_reeves" / "05.jpg").read_bytes(), ("done", 1))
    put("new\nline.jpg", (PHOTOS / "keanu_reeves" / "07.jpg").read_bytes(), ("done", 1))
    put("deleted.jpg", (PHOTOS / "tom_hanks" / "09.jpg").read_bytes(), ("failed", "disappeared"))
    put("unreadable.jpg", (PHOTOS / "person_03" / "img16.jpg").read_bytes(), ("failed", "cannot read file"))
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "notes.txt").write_text("not a photo, never scanned")
    return expect


def make_unreadable(root: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Make unreadable.jpg unreadable: really (chmod 000), or, for root who reads anything,
    by injecting the EACCES the file system would give any other user."""
    path = root / "unreadable.jpg"
    if os.geteuid() != 0:
        path.chmod(0)
        return
    from facepic import ids

    real = ids.sha256_file

    def denied(p: Path) -> str:
        if Path(p) == path:
            raise PermissionError(13, "Permission denied", str(p))
        return real(p)

    monkeypatch.setattr(ids, "sha256_file", denied)


def delete_later(root: Path) -> None:
    (root / "deleted.jpg").unlink()
