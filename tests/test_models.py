from pathlib import Path

import pytest

from facepic.models import ModelError, resolve


def test_buffalo_s_resolves_to_the_offline_pack_with_only_two_models(tmp_path: Path) -> None:
    choice = resolve("buffalo_s", tmp_path)
    assert choice.name == "buffalo_s"
    files = sorted(p.name for p in Path(choice.location).iterdir())
    assert files == ["scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"]


def test_auto_prefers_the_library_model_then_buffalo_l_then_offline(tmp_path: Path) -> None:
    assert resolve("auto", tmp_path, library_model="buffalo_s", can_download=lambda: True).name == "buffalo_s"
    online = resolve("auto", tmp_path, can_download=lambda: True)
    assert online.name == "buffalo_l" and "download" in online.reason
    offline = resolve("auto", tmp_path, can_download=lambda: False)
    assert offline.name == "buffalo_s" and "cannot be downloaded" in offline.describe()
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    (tmp_path / "models" / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    present = resolve("auto", tmp_path, can_download=lambda: False)
    assert present.name == "buffalo_l" and "found" in present.reason


def test_a_folder_of_onnx_files_and_bad_names(tmp_path: Path) -> None:
    folder = tmp_path / "mypack"
    folder.mkdir()
    with pytest.raises(ModelError, match="holds no .onnx"):
        resolve(str(folder), tmp_path)
    (folder / "a.onnx").write_bytes(b"x")
    assert resolve(str(folder), tmp_path).name == "mypack"
    with pytest.raises(ModelError, match="unknown model"):
        resolve("buffalo_xl", tmp_path)


def test_a_packs_files_are_classified_once_and_again_when_they_change(tmp_path: Path, monkeypatch) -> None:
    """Which file of a pack detects and which recognizes is read from each whole ONNX file;
    each pool process did it at every start. It is remembered beside the packs by path, size
    and modification time: a later start reads no file, a changed file is read again, and a
    model root that cannot be written only costs the reads."""
    import os
    import shutil

    from facepic import detect

    pack = tmp_path / "mypack"
    shutil.copytree(resolve("buffalo_s", tmp_path).location, pack)
    (pack / "notes.onnx").write_bytes(b"not a model")  # a file of no task: remembered as such
    choice = resolve(str(pack), tmp_path)
    read: list[str] = []
    real = detect._task
    monkeypatch.setattr(detect, "_task", lambda f: read.append(f.name) or real(f))
    first = detect.pack_files(choice)
    assert sorted(read) == ["notes.onnx", "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"]
    assert first == {"detection": pack / "scrfd_500m_bnkps.onnx", "recognition": pack / "w600k_mbf.onnx"}
    read.clear()
    assert detect.pack_files(choice) == first and read == []
    os.utime(pack / "notes.onnx", ns=(1, 1))
    assert detect.pack_files(choice) == first and read == ["notes.onnx"]
    read.clear()
    (tmp_path / detect.ROUTES_FILE).write_text("{not json")  # a torn cache: read the files again
    assert detect.pack_files(choice) == first and len(read) == 3
