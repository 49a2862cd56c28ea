from pathlib import Path

import pytest

from facepic.scan import ImportFolderError, scan


def touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_finds_photo_extensions_in_any_case_recursively_in_stable_order(tmp_path: Path) -> None:
    for name in ["b/2.JPG", "b/1.jpeg", "a.png", "c/d/e.WebP", "notes.txt", "movie.mp4", "z.HEIC"]:
        touch(tmp_path / name)
    found = [f.rel for f in scan(tmp_path)]
    assert found == ["a.png", "b/1.jpeg", "b/2.JPG", "c/d/e.WebP", "z.HEIC"]
    assert found == [f.rel for f in scan(tmp_path)]


def test_skips_hidden_files_and_folders(tmp_path: Path) -> None:
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / ".thumbs" / "a.jpg")
    touch(tmp_path / "visible.jpg")
    assert [f.rel for f in scan(tmp_path)] == ["visible.jpg"]


def test_symlink_cycle_ends_and_each_folder_is_visited_once(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "1.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "again").symlink_to(tmp_path / "a", target_is_directory=True)
    assert [f.rel for f in scan(tmp_path)] == ["a/1.jpg"]


def test_records_size_and_mtime(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg", b"12345")
    (found,) = list(scan(tmp_path))
    assert found.size == 5
    assert found.mtime_ns == (tmp_path / "a.jpg").stat().st_mtime_ns


def test_broken_symlink_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    errors = []
    assert list(scan(tmp_path, on_error=lambda p, r: errors.append((p.name, r)))) == []
    assert errors == [("gone.jpg", "broken symbolic link")]


def test_missing_folder_and_file_instead_of_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImportFolderError, match="does not exist"):
        list(scan(tmp_path / "nope"))
    touch(tmp_path / "file.jpg")
    with pytest.raises(ImportFolderError, match="is not a folder"):
        list(scan(tmp_path / "file.jpg"))
