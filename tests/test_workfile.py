"""The work file between the detect and the index stage: what is written is read back, a torn
or foreign file is an error (the photo then fails alone), and an .npz of an earlier version
is still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facepic.datafolder import DataFolder
from facepic.pipeline import workfile


def arrays(faces: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(faces)
    return {
        "boxes": rng.random((faces, 4)),
        "landmarks": rng.random((faces, 5, 2)),
        "scores": rng.random(faces),
        "embeddings": rng.random((faces, 512), dtype=np.float32),
        "quality": rng.random((faces, 3)),
        "info": np.frombuffer(json.dumps({"width": 4032, "metadata": {"make": "Çanon"}}).encode(), dtype=np.uint8),
    }


@pytest.mark.parametrize("faces", [0, 1, 4])
def test_what_is_saved_is_loaded(tmp_path: Path, faces: int) -> None:
    folder = DataFolder(tmp_path)
    saved = {**arrays(faces), "scale": np.array(0.25)}
    saved["landmarks"] = saved["landmarks"][:, ::-1]  # not contiguous
    workfile.save(folder, "img", saved)
    work = workfile.load(folder, "img", pixels=True)
    assert work is not None
    assert work["info"] == {"width": 4032, "metadata": {"make": "Çanon"}}
    for name, a in saved.items():
        if name != "info":
            assert work[name].dtype == a.dtype and np.array_equal(work[name], a), name
    assert "scale" not in workfile.load(folder, "img")  # type: ignore[operator]
    work["boxes"][...] = 0  # writable, as np.load's arrays were
    workfile.drop(folder, "img")
    assert workfile.load(folder, "img") is None and not list(folder.work.iterdir())


def test_a_torn_or_foreign_work_file_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = DataFolder(tmp_path)
    workfile.save(folder, "img", arrays(2))
    whole = folder.work_file("img").read_bytes()
    for broken in (whole[:-1], whole + b"x", whole[: len(whole) // 2], b"not a work file", b""):
        folder.work_file("img").write_bytes(broken)
        with pytest.raises(workfile.WorkFileError, match="its work file img.work cannot be read"):
            workfile.load(folder, "img")
    folder.work_file("img").unlink()
    for legacy in (b"PK\x03\x04 torn", b"random bytes"):  # an .npz that is not a whole one
        (folder.work / "img.npz").write_bytes(legacy)
        with pytest.raises(workfile.WorkFileError, match="its work file img.npz cannot be read"):
            workfile.load(folder, "img")
    np.savez(folder.work / "img.npz", boxes=np.zeros((1, 4)))  # no info
    with pytest.raises(workfile.WorkFileError, match="img.npz"):
        workfile.load(folder, "img")


def test_an_npz_left_by_an_earlier_version_is_read_and_dropped(tmp_path: Path) -> None:
    folder = DataFolder(tmp_path)
    folder.work.mkdir(parents=True)
    np.savez(folder.work / "img.npz", **arrays(3))
    work = workfile.load(folder, "img")
    assert work is not None and np.array_equal(work["embeddings"], arrays(3)["embeddings"])
    workfile.drop(folder, "img")
    assert not list(folder.work.iterdir())


def test_a_cover_shares_its_crop_s_content_and_neither_disturbs_the_other(tmp_path: Path) -> None:
    """The index stage makes a person's cover file from a face crop with a hard link (a copy cost
    the main process 0.5 s on 1,705 LFW photos): replacing either file later leaves the other."""
    from facepic.datafolder import same_file_atomically, write_atomic

    crop, cover = tmp_path / "face_a.jpg", tmp_path / "faces" / "person_p.jpg"
    write_atomic(crop, b"crop a")
    same_file_atomically(crop, cover)
    assert cover.read_bytes() == b"crop a"
    assert cover.stat().st_ino == crop.stat().st_ino  # a link, not a copy
    write_atomic(crop, b"crop a, again")  # a crop made again (reembed)
    assert cover.read_bytes() == b"crop a"
    other = tmp_path / "face_b.jpg"
    write_atomic(other, b"crop b")
    same_file_atomically(other, cover)  # a better face: the cover is replaced whole
    assert cover.read_bytes() == b"crop b" and crop.read_bytes() == b"crop a, again"
    assert sorted(p.name for p in cover.parent.iterdir()) == ["person_p.jpg"]  # no temporary left
    with pytest.raises(FileNotFoundError):
        same_file_atomically(tmp_path / "missing.jpg", cover)
    assert cover.read_bytes() == b"crop b"
