"""XMP face names: read from photos (embedded and sidecars, MWG and Microsoft regions, every EXIF
orientation) by `facepic run`, and written back by `facepic xmp export`, checked with exiftool."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from facepic import xmp
from facepic.context import Context
from facepic.decode import _orient
from facepic.derived import Covers
from facepic.embedded import embedded_database
from facepic.persons import merge_persons, move_face, name_person
from tests.conftest import PHOTOS, invoke, settings_of
from tests.hostile import TO_STORED

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool is not installed (apt-get install libimage-exiftool-perl; CI installs it)"
)
Box = tuple[float, float, float, float]


def to_stored(im: Image.Image, orientation: int) -> Image.Image:
    method = TO_STORED[orientation]
    return im.transpose(method) if method is not None else im


def stored_box(box: Box, size: tuple[int, int], orientation: int) -> Box:
    """An upright pixel box normalised to the stored image, found by turning a mask of it as
    the photo is turned (not by the code under test)."""
    mask = Image.new("L", size)
    ImageDraw.Draw(mask).rectangle([round(v) for v in box], fill=255)
    stored = to_stored(mask, orientation)
    x1, y1, x2, y2 = stored.getbbox() or (0, 0, 0, 0)
    w, h = stored.size
    return (x1 / w, y1 / h, (x2 - 1) / w, (y2 - 1) / h)


def test_every_orientation_turns_a_stored_region_upright_as_the_pixels_are() -> None:
    upright = (40.0, 30.0, 100.0, 70.0)
    for orientation in range(1, 9):
        norm = stored_box(upright, (200, 100), orientation)
        got = xmp.upright(norm, orientation, 200, 100)
        assert all(abs(a - b) <= 1.5 for a, b in zip(got, upright)), (orientation, got)
        again = xmp.stored(got, orientation, 200, 100)
        assert all(abs(a - b) < 1e-9 for a, b in zip(again, norm)), orientation
        # And the pixels agree: decode's own turn of the stored mask finds the box there.
        mask = to_stored(Image.new("L", (200, 100)), orientation)
        w, h = mask.size
        ImageDraw.Draw(mask).rectangle([norm[0] * w, norm[1] * h, norm[2] * w, norm[3] * h], fill=255)
        bbox = _orient(mask, orientation).getbbox()
        assert bbox is not None and all(abs(a - b) <= 2 for a, b in zip(bbox, upright)), (orientation, bbox)


def test_bad_or_hostile_xmp_is_refused_with_a_reason() -> None:
    for packet in [b"<x:xmpmeta><unclosed", b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x/>', b"\xff\xfe garbage"]:
        with pytest.raises(xmp.XmpError):
            xmp.regions(packet, 1, 100, 100)


def exiftool(*args: str) -> None:
    assert EXIFTOOL is not None
    done = subprocess.run([EXIFTOOL, "-q", "-q", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def read_back(path: Path, group: str = "XMP-mwg-rs:all") -> dict[str, Any]:
    assert EXIFTOOL is not None
    out = subprocess.run([EXIFTOOL, "-j", "-struct", f"-{group}", str(path)], capture_output=True, text=True)
    return json.loads(out.stdout)[0]


def mwg(name: str, box: Box, size: tuple[int, int], kind: str = "Face") -> str:
    x1, y1, x2, y2 = box
    return (
        f"{{Area={{X={(x1 + x2) / 2:.5f},Y={(y1 + y2) / 2:.5f},W={x2 - x1:.5f},H={y2 - y1:.5f},Unit=normalized}},"
        f"Name={name},Type={kind}}}"
    )


def mwg_info(regions: list[str], size: tuple[int, int]) -> str:
    return f"-XMP-mwg-rs:RegionInfo={{AppliedToDimensions={{W={size[0]},H={size[1]},Unit=pixel}},RegionList=[{','.join(regions)}]}}"


def mp_info(name: str, box: Box) -> str:
    x1, y1, x2, y2 = box
    rect = "|, ".join(f"{v:.5f}" for v in (x1, y1, x2 - x1, y2 - y1))
    return f"-XMP-MP:RegionInfoMP={{Regions=[{{Rectangle={rect},PersonDisplayName={name}}}]}}"


@contextmanager
def library(env: dict[str, str]) -> Iterator[Context]:
    with embedded_database(settings_of(env)) as settings, Context(settings) as ctx:
        yield ctx


SOURCES = {"Alice": PHOTOS / "tom_hanks" / "07.jpg", "Bob": PHOTOS / "keanu_reeves" / "00.jpg"}


def upright_faces(offline_env: dict[str, str], tmp_path: Path) -> dict[str, Box]:
    """The face FacePic finds in each source photo, upright pixels (a first run, no XMP)."""
    root = tmp_path / "upright"
    root.mkdir()
    for name, src in SOURCES.items():
        shutil.copy(src, root / f"{name}.jpg")
    assert invoke(offline_env, "run", str(root)).exit_code == 0
    with library(offline_env) as ctx:
        images = {d["path"]: d for d in ctx.library.images.find({})}
        return {name: tuple(images[f"{name}.jpg"]["faces"][0]["box"]) for name in SOURCES}  # type: ignore[misc]


def build(root: Path, boxes: dict[str, Box]) -> dict[str, tuple[str, int]]:
    """One photo per EXIF orientation, stored turned, its face named by XMP written by exiftool
    in another way each time; returns {photo: (name, orientation)}."""
    photos: dict[str, tuple[str, int]] = {}
    root.mkdir()
    for orientation in range(1, 9):
        name = "Alice" if orientation % 2 else "Bob"
        upright = Image.open(SOURCES[name]).convert("RGB")
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = root / f"IMG_000{orientation}.JPG"
        stored = to_stored(upright, orientation)
        stored.save(path, quality=92, exif=exif.tobytes())
        box = stored_box(boxes[name], upright.size, orientation)
        size = stored.size
        if orientation <= 3:  # embedded MWG
            exiftool("-overwrite_original", mwg_info([mwg(name, box, size)], size), str(path))
        elif orientation == 4:  # embedded MWG with a region no face is in
            corner = mwg("Carol", (0.0, 0.0, 0.08, 0.08), size)
            exiftool("-overwrite_original", mwg_info([mwg(name, box, size), corner], size), str(path))
        elif orientation in (5, 6):  # a sidecar IMG.JPG.xmp (digiKam), with other tags and regions
            others = [mwg("Rex", (0.9, 0.9, 0.98, 0.98), size, "Pet"), mwg("Stranger", (0.0, 0.9, 0.05, 0.99), size)]
            exiftool(
                "-o",
                f"{path}.xmp",
                mwg_info([mwg(name, box, size), *others], size),
                "-XMP-dc:Subject=holiday",
                str(path),
            )
        elif orientation == 7:  # a sidecar IMG.xmp (Lightroom), Microsoft's regions
            exiftool("-o", str(path.with_suffix(".xmp")), mp_info(name, box), str(path))
        else:  # embedded, Microsoft's regions
            exiftool("-overwrite_original", mp_info(name, box), str(path))
        photos[path.name] = (name, orientation)
    return photos


@needs_exiftool
def test_names_from_xmp_in_every_orientation_round_trip_through_export(offline_env, tmp_path: Path) -> None:
    boxes = upright_faces(offline_env, tmp_path)
    root = tmp_path / "named"
    photos = build(root, boxes)
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 0, result.output
    summary = [line for line in result.output.splitlines() if line.startswith("photos ")]
    assert summary == [
        "photos 8: done 8 (faces 8, no face 0), already done 0, duplicates 0, failed 0, "
        "names from XMP 11 (8 matched); skipped 3 XMP sidecars of photos"
    ]
    with library(offline_env) as ctx:
        lib = ctx.library
        images = {d["path"]: d for d in lib.images.find({"root": str(root)})}
        faces = {f["image_id"]: f for f in lib.faces.find({}, {"embedding": 0})}
        person_of: dict[str, str] = {}
        for path, (name, _) in photos.items():
            face = faces[images[path]["_id"]]
            assert face["locked"] is True, path
            assert lib.person(face["person_id"])["name"] == name, path
            assert person_of.setdefault(name, face["person_id"]) == face["person_id"], path  # one person per name
        assert person_of["Alice"] != person_of["Bob"]
        assert [(u["name"]) for u in images["IMG_0004.JPG"]["xmp_unmatched"]] == ["Carol"]
        assert lib.person(person_of["Alice"])["user_locked"] is True
        # The upright photos of the first run hold the same faces: they joined the named persons.
        assert lib.persons_named("Alice") == [lib.person(person_of["Alice"])]

        covers = Covers(ctx)
        bob_face = faces[images["IMG_0006.JPG"]["_id"]]["_id"]
        bobby = move_face(lib, bob_face, None, covers)
        name_person(lib, bobby, "Bobby")
    first = invoke(offline_env, "xmp", "export")
    assert first.exit_code == 0, first.output
    assert (root / "IMG_0006.JPG.xmp").exists() and not (root / "IMG_0001.JPG.xmp.xmp").exists()
    assert names_in(root / "IMG_0006.JPG.xmp") == ["Bobby", "Stranger"]
    with library(offline_env) as ctx:
        name_person(ctx.library, person_of["Alice"], "Alice Smith")
        merge_persons(ctx.library, person_of["Bob"], [bobby], Covers(ctx))
    dry = invoke(offline_env, "xmp", "export", "--dry-run")
    assert dry.exit_code == 0 and "would write" in dry.output
    second = invoke(offline_env, "xmp", "export")
    assert second.exit_code == 0, second.output
    # Alice's 5 photos (the 4 here, the upright one of the first run) renamed, Bobby's merged.
    assert len([line for line in second.output.splitlines() if line.startswith("wrote ")]) == 6
    assert second.output.splitlines()[-1] == "sidecars written 6, unchanged 4, failed 0"
    assert invoke(offline_env, "xmp", "export").output.splitlines()[-1] == "sidecars written 0, unchanged 10, failed 0"

    with library(offline_env) as ctx:
        images = {d["path"]: d for d in ctx.library.images.find({"root": str(root)})}
    for path, (name, orientation) in photos.items():
        sidecar = root / f"{path}.xmp"
        info = read_back(sidecar)["RegionInfo"]
        image = images[path]
        stored = Image.open(root / path).size
        assert (info["AppliedToDimensions"]["W"], info["AppliedToDimensions"]["H"]) == stored
        faces_back = {r["Name"]: r for r in info["RegionList"] if r.get("Type") == "Face"}
        want = {"Alice": "Alice Smith", "Bob": "Bob"}[name]
        assert want in faces_back and name not in set(faces_back) - {want}, (path, faces_back)
        area = faces_back[want]["Area"]
        box = stored_box(tuple(image["faces"][0]["box"]), (image["width"], image["height"]), orientation)  # type: ignore[arg-type]
        got = (
            area["X"] - area["W"] / 2,
            area["Y"] - area["H"] / 2,
            area["X"] + area["W"] / 2,
            area["Y"] + area["H"] / 2,
        )
        assert all(abs(a - b) < 0.01 for a, b in zip(got, box)), (path, got, box)
        mp = read_back(sidecar, "XMP-MP:all")["RegionInfoMP"]["Regions"]
        assert [r["PersonDisplayName"] for r in mp if r["PersonDisplayName"] == want] == [want]
    kept = read_back(root / "IMG_0005.JPG.xmp", "XMP:all")
    assert kept["Subject"] in ("holiday", ["holiday"])  # other tags stay
    assert {r["Name"] for r in kept["RegionInfo"]["RegionList"]} == {"Alice Smith", "Rex", "Stranger"}
    assert not (root / "IMG_0001.JPG").read_bytes().count(b"Alice Smith")  # originals untouched


def names_in(sidecar: Path) -> list[str]:
    return sorted(r["Name"] for r in read_back(sidecar)["RegionInfo"]["RegionList"] if r.get("Type") == "Face")


def test_a_photo_with_broken_xmp_is_done_with_a_warning(offline_env, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    shutil.copy(SOURCES["Bob"], root / "IMG_0001.JPG")
    (root / "IMG_0001.JPG.xmp").write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF")
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 0, result.output
    assert "photos 1: done 1 (faces 1, no face 0)" in result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "IMG_0001.JPG.xmp" in warning[0] and "not well-formed" in warning[0]


def test_a_sidecar_goes_beside_its_original_else_under_to_at_its_path(tmp_path: Path) -> None:
    from facepic.xmp_export import sidecar_path

    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "IMG_0001.JPG").write_bytes(b"x")
    local = {"root": str(tmp_path / "here"), "path": "IMG_0001.JPG"}
    gone = {"root": str(tmp_path / "unmounted"), "path": "DCIM/IMG_0002.JPG"}
    to = tmp_path / "sidecars"
    assert sidecar_path(local, to) == tmp_path / "here" / "IMG_0001.JPG.xmp"
    assert sidecar_path(gone, to) == to / "DCIM" / "IMG_0002.JPG.xmp"
    assert sidecar_path(gone, None) is None
    assert sidecar_path({**gone, "path": "../../etc/x.jpg"}, to) is None


def test_a_packet_padded_with_nul_bytes_is_read() -> None:
    """Some writers end a JPEG's XMP segment with NUL bytes after the packet's end (seen in a
    real photo): read, not refused as broken XML."""
    from facepic.xmp import parse

    packet = (
        b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
        b'<?xpacket end="w"?>\x00\x00'
    )
    assert parse(packet).tag == "{adobe:ns:meta/}xmpmeta"
