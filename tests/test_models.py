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
