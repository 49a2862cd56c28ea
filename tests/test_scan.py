import os
from pathlib import Path

import pytest

from facepic.scan import Found, ImportFolderError, Skipped, Unreadable, photos, scan


def touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def outcomes(root: Path, **kw) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """path -> "photo" or the reason it was skipped / cannot be read."""
    out = {}
    for item in scan(root, **kw):
        out[item.path] = "photo" if isinstance(item, Found) else item.reason
    return out


def test_finds_photo_extensions_in_any_case_recursively_in_stable_order(tmp_path: Path) -> None:
    names = [
        "b/2.JPG",
        "b/1.jpeg",
        "a.png",
        "c/d/e.WebP",
        "notes.txt",
        "movie.mp4",
        "z.HEIC",
        "s.tif",
        "t.TIFF",
        "g.gif",
        "b.bmp",
        "v.avif",
        "r.NEF",
    ]
    for name in names:
        touch(tmp_path / name)
    found = [f.path for f in photos(tmp_path)]
    assert found == [
        "a.png",
        "b/1.jpeg",
        "b/2.JPG",
        "b.bmp",
        "c/d/e.WebP",
        "g.gif",
        "r.NEF",
        "s.tif",
        "t.TIFF",
        "v.avif",
        "z.HEIC",
    ]
    assert found == [f.path for f in photos(tmp_path)]


def test_every_entry_is_a_photo_or_skipped_with_its_reason(tmp_path: Path) -> None:
    for name in [
        "DCIM/IMG_0001.MOV",
        "DCIM/IMG_0001.AAE",
        "DCIM/IMG_0002.jpg",
        "x.xmp",
        "meta.json",
        "Thumbs.db",
        "desktop.ini",
        "notes.txt",
        ".DS_Store",
        "._IMG_0002.jpg",
        ".thumbnails/a.jpg",
    ]:
        touch(tmp_path / name)
    got = outcomes(tmp_path)
    assert got == {
        ".DS_Store": "hidden file",
        "._IMG_0002.jpg": "hidden file",
        ".thumbnails": "hidden folder",
        "DCIM/IMG_0001.AAE": "not a photo",
        "DCIM/IMG_0001.MOV": "not a photo",
        "DCIM/IMG_0002.jpg": "photo",
        "Thumbs.db": "not a photo",
        "desktop.ini": "not a photo",
        "meta.json": "not a photo",
        "notes.txt": "not a photo",
        "x.xmp": "not a photo",
    }
    quiet = {i.path for i in scan(tmp_path) if isinstance(i, Skipped) and i.quiet}
    assert quiet == set(got) - {"DCIM/IMG_0002.jpg"}


def test_symlink_cycle_ends_is_reported_once_and_each_folder_is_visited_once(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "1.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "again").symlink_to(tmp_path / "a", target_is_directory=True)
    assert outcomes(tmp_path) == {
        "a/1.jpg": "photo",
        "a/loop": "symbolic link loop (points to an enclosing folder)",
        "again": "folder scanned already under another path",
    }


def test_links_out_of_the_import_folder_are_skipped_unless_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch(root / "in.jpg")
    touch(outside / "away.jpg")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "passwd.jpg").symlink_to("/etc/passwd")
    (root / "inside.jpg").symlink_to(root / "in.jpg")
    (root / "self.jpg").symlink_to("self.jpg")
    got = outcomes(root)
    assert got == {
        "in.jpg": "photo",
        "inside.jpg": "photo",
        "linked": "symbolic link to outside the import folder",
        "passwd.jpg": "symbolic link to outside the import folder",
        "self.jpg": "symbolic link loop",
    }
    followed = outcomes(root, follow_links=True)
    assert followed["linked/away.jpg"] == "photo" and followed["passwd.jpg"] == "photo"


def test_special_files_are_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    touch(tmp_path / "ok.jpg")
    # Opening the FIFO for reading would block the scan forever; finishing at all is the check.
    assert outcomes(tmp_path) == {"ok.jpg": "photo", "pipe.jpg": "special file (FIFO), never opened"}


def test_odd_dot_names_are_hidden_and_accounted_for(tmp_path: Path) -> None:
    touch(tmp_path / "..jpg")
    touch(tmp_path / "..weird" / "a.jpg")
    assert outcomes(tmp_path) == {"..jpg": "hidden file", "..weird": "hidden folder"}


def test_raw_beside_a_jpeg_of_the_same_name_is_one_photo(tmp_path: Path) -> None:
    for name in ["IMG_0001.CR2", "IMG_0001.JPG", "IMG_0002.CR2", "other/IMG_0001.dng"]:
        touch(tmp_path / name)
    items = {i.path: i for i in scan(tmp_path)}
    assert isinstance(items["IMG_0001.JPG"], Found) and items["IMG_0001.JPG"].companions == ("IMG_0001.CR2",)
    assert items["IMG_0001.CR2"].reason == "RAW+JPEG pair: processed as IMG_0001.JPG"  # type: ignore[union-attr]
    assert isinstance(items["IMG_0002.CR2"], Found)  # a RAW alone is a photo
    assert isinstance(items["other/IMG_0001.dng"], Found)  # only a pair within one folder


def test_unreadable_folder_is_skipped_with_its_reason_and_the_rest_goes_on(tmp_path: Path, monkeypatch) -> None:
    touch(tmp_path / "a" / "1.jpg")
    touch(tmp_path / "b" / "2.jpg")
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name == "a":  # root reads everything: inject the refusal
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert outcomes(tmp_path) == {"a": "unreadable folder (Permission denied)", "b/2.jpg": "photo"}


def test_records_size_and_mtime(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg", b"12345")
    (found,) = list(photos(tmp_path))
    assert found.size == 5
    assert found.mtime_ns == (tmp_path / "a.jpg").stat().st_mtime_ns


def test_broken_symlink_is_skipped_not_raised(tmp_path: Path) -> None:
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (item,) = list(scan(tmp_path))
    assert isinstance(item, Skipped) and item.reason == "broken symbolic link (its target is gone)"
    assert not isinstance(item, Unreadable)


def test_missing_folder_and_file_instead_of_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImportFolderError, match="does not exist"):
        list(scan(tmp_path / "nope"))
    touch(tmp_path / "file.jpg")
    with pytest.raises(ImportFolderError, match="is not a folder"):
        list(scan(tmp_path / "file.jpg"))


def test_a_photo_without_an_extension_is_found_by_its_first_bytes(tmp_path: Path) -> None:
    """Some phone backups and app exports name photos IMG_0001: those that begin as a JPEG,
    PNG, GIF, WebP or HEIF does are photos; other files without an extension, and files with
    an extension that is not a photo's, stay "not a photo" whatever they hold."""
    from PIL import Image

    Image.new("RGB", (64, 48), "red").save(tmp_path / "IMG_0001", "JPEG")
    Image.new("RGB", (64, 48), "red").save(tmp_path / "IMG_0002", "PNG")
    Image.new("RGB", (64, 48), "red").save(tmp_path / "IMG_0003", "WEBP")
    (tmp_path / "README").write_text("not a photo\n")
    (tmp_path / "empty").write_bytes(b"")
    Image.new("RGB", (64, 48), "red").save(tmp_path / "backup.bin", "JPEG")
    found = {e.path for e in scan(tmp_path) if isinstance(e, Found)}
    skipped = {e.path: e.reason for e in scan(tmp_path) if isinstance(e, Skipped)}
    assert found == {"IMG_0001", "IMG_0002", "IMG_0003"}
    assert skipped == {"README": "not a photo", "empty": "not a photo", "backup.bin": "not a photo"}


def test_an_xmp_sidecar_of_a_photo_is_its_companion_and_a_lone_one_is_not_a_photo(tmp_path: Path) -> None:
    for name in ["IMG_0001.JPG", "IMG_0001.JPG.xmp", "IMG_0002.jpg", "IMG_0002.xmp", "lone.xmp", "IMG_0003.mov.xmp"]:
        touch(tmp_path / name)
    got = outcomes(tmp_path)
    assert got == {
        "IMG_0001.JPG": "photo",
        "IMG_0001.JPG.xmp": "XMP sidecar of IMG_0001.JPG",
        "IMG_0002.jpg": "photo",
        "IMG_0002.xmp": "XMP sidecar of IMG_0002.jpg",
        "lone.xmp": "not a photo",
        "IMG_0003.mov.xmp": "not a photo",
    }
    assert all(i.quiet for i in scan(tmp_path) if isinstance(i, Skipped))
