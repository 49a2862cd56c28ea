import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facepic import thumbnails
from facepic.decode import PhotoError, decode
from tests.conftest import PHOTOS

LIMIT = 150_000_000


def save(path: Path, im: Image.Image, fmt: str = "JPEG", **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    return Image.fromarray(np.stack([x, x[::-1, ::-1], np.full_like(x, 90)], -1))


def test_large_jpeg_is_decoded_reduced_but_reports_full_size(tmp_path: Path) -> None:
    path = save(tmp_path / "big.jpg", gradient(4032, 3024), quality=90)
    d = decode(path, 640, LIMIT)
    assert (d.width, d.height) == (4032, 3024)
    assert 640 <= max(d.rgb.shape[:2]) <= 1280  # DCT scaling: 1/4 of 4032 = 1008
    assert d.scale == pytest.approx(d.rgb.shape[1] / 4032)
    assert np.allclose(d.to_full(np.array([d.rgb.shape[1], d.rgb.shape[0]])), [4032, 3024], atol=4)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    im = Image.new("RGB", (200, 100), "white")
    im.paste((255, 0, 0), (0, 0, 20, 20))  # red mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    d = decode(save(tmp_path / "o.jpg", im, exif=exif.tobytes(), quality=95), 640, LIMIT)
    rotated = orientation in (5, 6, 7, 8)
    assert (d.width, d.height) == ((100, 200) if rotated else (200, 100))
    assert d.rgb.shape[:2] == ((200, 100) if rotated else (100, 200))
    # Where the stored top-left corner ends up, per the EXIF definition of each orientation.
    corner = {1: (0, 0), 2: (0, 1), 3: (1, 1), 4: (1, 0), 5: (0, 0), 6: (0, 1), 7: (1, 1), 8: (1, 0)}[orientation]
    h, w = d.rgb.shape[:2]
    y, x = (corner[0] * (h - 10) + 5, corner[1] * (w - 10) + 5)
    assert d.rgb[y, x, 0] > 200 and d.rgb[y, x, 1] < 80


def test_exif_time_camera_and_gps_are_extracted(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2021:07:04 12:30:00"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 29.88), 3: "W", 4: (2.0, 17.0, 40.2), 5: b"\x00", 6: 35.5})
    d = decode(save(tmp_path / "e.jpg", gradient(64, 48), exif=exif.tobytes()), 640, LIMIT)
    assert d.metadata["camera"] == "Canon EOS 5D"
    assert d.metadata["taken_at"] == "2021-07-04T12:30:00"
    assert d.metadata["gps"]["latitude"] == pytest.approx(48.8583, abs=1e-4)
    assert d.metadata["gps"]["longitude"] == pytest.approx(-2.2945, abs=1e-4)
    assert d.metadata["gps"]["altitude"] == pytest.approx(35.5)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: save(p, Image.new("CMYK", (80, 60), (0, 255, 0, 0))),
        lambda p: save(p, Image.new("L", (80, 60), 128)),
        lambda p: save(p, Image.fromarray(np.full((60, 80), 40000, dtype=np.uint16)), "PNG"),
        lambda p: save(p, Image.new("P", (80, 60)), "PNG", transparency=0),
        lambda p: save(p, Image.new("RGBA", (80, 60), (0, 0, 0, 0)), "PNG"),
        lambda p: save(p, gradient(80, 60), "PNG"),  # a PNG named .jpg
    ],
)
def test_unusual_modes_decode_to_rgb(tmp_path: Path, make) -> None:
    d = decode(make(tmp_path / "x.jpg"), 640, LIMIT)
    assert d.rgb.dtype == np.uint8 and d.rgb.shape == (60, 80, 3)


def test_bad_files_raise_photo_error_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, not a photo")
    good = (PHOTOS / "tom_hanks" / "07.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    cases = {
        "empty.jpg": "empty file",
        "text.jpg": "not a recognised image format",
        "cut.jpg": "truncated",
        "missing.jpg": "disappeared",
    }
    for name, reason in cases.items():
        with pytest.raises(PhotoError, match=reason):
            decode(tmp_path / name, 640, LIMIT)


def test_pixel_limit_refuses_decompression_bombs(tmp_path: Path) -> None:
    path = save(tmp_path / "wide.png", Image.new("L", (3000, 2000)), "PNG")
    with pytest.raises(PhotoError, match="too large"):
        decode(path, 640, 5_000_000)
    assert decode(path, 640, 6_000_001).width == 3000


def test_thumbnail_is_300_square_and_face_crop_is_square() -> None:
    rgb = np.asarray(gradient(640, 480))
    thumb = Image.open(io.BytesIO(thumbnails.thumbnail(rgb, [[500, 100, 600, 200]])))
    assert thumb.size == (300, 300) and thumb.format == "JPEG"
    crop = Image.open(io.BytesIO(thumbnails.face_crop(rgb, [600, 400, 700, 500])))  # partly outside
    assert crop.size == (thumbnails.FACE_SIZE, thumbnails.FACE_SIZE)


def test_thumbnail_and_face_crop_show_the_right_part_of_the_photo() -> None:
    rgb = np.zeros((480, 640, 3), dtype=np.uint8)
    rgb[:, :160] = (255, 0, 0)  # red left of x=160, green right of it
    rgb[:, 160:] = (0, 255, 0)
    # Faces on the right: the 480x480 window slides right, to x 160..640, all green.
    thumb = np.asarray(Image.open(io.BytesIO(thumbnails.thumbnail(rgb, [[500, 100, 600, 200]]))), dtype=np.int16)
    assert thumb.shape == (300, 300, 3)
    assert thumb[..., 0].max() < 40 and thumb[..., 1].min() > 215
    # Without faces it is centred (x 80..560): the left sixth red.
    centred = np.asarray(Image.open(io.BytesIO(thumbnails.thumbnail(rgb))), dtype=np.int16)
    assert centred[:, :40, 0].min() > 215 and centred[:, 70:, 0].max() < 40
    # A box partly outside: window x 575..725, y 375..525 (side 1.5 x 100); outside is black.
    crop = np.asarray(Image.open(io.BytesIO(thumbnails.face_crop(rgb, [600, 400, 700, 500]))), dtype=np.int16)
    assert crop.shape == (thumbnails.FACE_SIZE, thumbnails.FACE_SIZE, 3)
    inside = crop[:60, :60]
    assert inside[..., 1].min() > 215 and inside[..., 0].max() < 40
    for corner in (crop[130:, 130:], crop[:60, 130:], crop[130:, :60]):
        assert corner.max() < 40
    # A small face is enlarged to the crop's size.
    small = np.asarray(Image.open(io.BytesIO(thumbnails.face_crop(rgb, [300, 200, 340, 240]))), dtype=np.int16)
    assert small.shape == (thumbnails.FACE_SIZE, thumbnails.FACE_SIZE, 3) and small[..., 1].min() > 215


def test_heic_photos_decode(tmp_path: Path) -> None:
    im = Image.open(PHOTOS / "tom_hanks" / "07.jpg")
    im.save(tmp_path / "phone.HEIC")
    d = decode(tmp_path / "phone.HEIC", 640, LIMIT)
    assert d.format == "HEIF" and (d.width, d.height) == im.size


def test_jpegs_decode_to_the_same_pixels_with_or_without_simplejpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import facepic.decode as decoding

    assert decoding._simplejpeg is not None  # the worker requirements install it
    used = []
    real = decoding._simplejpeg.decode_jpeg

    class Counting:
        @staticmethod
        def decode_jpeg(*args, **kwargs):
            used.append(args[0][:2])
            return real(*args, **kwargs)

    exif = Image.Exif()
    exif[0x0112] = 6
    big = gradient(3000, 2000)
    files = {
        "camera": save(tmp_path / "camera.jpg", big, quality=90),
        "rotated": save(tmp_path / "rotated.jpg", big, quality=90, exif=exif.tobytes()),
        "progressive": save(tmp_path / "progressive.jpg", big, quality=85, progressive=True),
        "grey": save(tmp_path / "grey.jpg", big.convert("L"), quality=90),
        "cmyk": save(tmp_path / "cmyk.jpg", big.convert("CMYK"), quality=90),
        "small": PHOTOS / "tom_hanks" / "07.jpg",
    }
    for name, path in files.items():
        used.clear()
        monkeypatch.setattr(decoding, "_simplejpeg", Counting)
        fast = decode(path, 640, LIMIT)
        assert len(used) == (0 if name == "cmyk" else 1), name  # CMYK: Pillow converts it
        monkeypatch.setattr(decoding, "_simplejpeg", None)
        plain = decode(path, 640, LIMIT)
        assert fast.rgb.shape == plain.rgb.shape and fast.rgb.dtype == np.uint8, name
        assert np.array_equal(fast.rgb, plain.rgb), name
        assert (fast.width, fast.height, fast.scale, fast.metadata) == (
            plain.width,
            plain.height,
            plain.scale,
            plain.metadata,
        ), name
    assert decode(files["rotated"], 640, LIMIT).rgb.shape[:2] == (750, 500)  # upright, 1/4 scale
    # A truncated JPEG: simplejpeg refuses it, and the reason is Pillow's, as without it.
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(files["camera"].read_bytes()[:60_000])
    reasons = []
    for module in (Counting, None):
        monkeypatch.setattr(decoding, "_simplejpeg", module)
        with pytest.raises(PhotoError) as failure:
            decode(cut, 640, LIMIT)
        reasons.append(str(failure.value))
    assert reasons[0] == reasons[1] == "truncated image (the file ends before the picture does)"
