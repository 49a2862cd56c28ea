"""The pool of `facepic run` starts loading the likely model before the library is open: the
guess, the pool told the model the library chose, and a model that cannot load."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from facepic import runtime
from facepic.models import likely_source, resolve
from facepic.runner import CpuPool
from tests.conftest import PHOTOS, invoke, settings_of
from tests.test_cli import facepic_process


def test_the_likely_model_is_the_one_configured_or_a_buffalo_l_on_disk(tmp_path: Path) -> None:
    assert likely_source("buffalo_s", tmp_path) == "buffalo_s"
    assert likely_source("buffalo_l", tmp_path) == "buffalo_l"
    assert likely_source(str(tmp_path / "mypack"), tmp_path) == str(tmp_path / "mypack")
    assert likely_source("auto", tmp_path) is None  # the library, or the network, tells
    assert likely_source("", tmp_path) is None
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    (tmp_path / "models" / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    assert likely_source("auto", tmp_path) == "buffalo_l"


def _pids(pool: CpuPool) -> set[int]:
    return {future.result() for future in [pool.executor.submit(os.getpid) for _ in range(8)]}


def test_a_pool_told_another_model_starts_again_and_one_told_its_own_does_not(offline_config) -> None:
    settings = settings_of(offline_config)
    folder = resolve("buffalo_s", settings.model_root).location  # the same pack, by its folder
    with CpuPool(settings, "buffalo_s", processes=1) as pool:
        first, executor = _pids(pool), pool.executor
        pool.use(folder)
        assert pool.executor is not executor and pool.model == folder
        second = _pids(pool)
        assert second and not second & first  # fresh processes, which loaded the folder's
        pool.use(folder)
        assert _pids(pool) == second


def test_a_pool_started_without_a_model_loads_the_one_it_is_told(offline_config) -> None:
    """Under auto with no buffalo_l on disk the run cannot guess: its pool starts with no model,
    and loads the library's once told, in the same processes."""
    with CpuPool(settings_of(offline_config), None, processes=1) as pool:
        first, executor = _pids(pool), pool.executor
        pool.use("buffalo_s")
        assert pool.executor is executor and pool.model == "buffalo_s"
        assert pool.executor.submit(_has_engine, "buffalo_s").result()
        assert _pids(pool) == first


def _has_engine(source: str) -> bool:
    import facepic.runner as runner

    assert runner._pool_context is not None
    return source in runner._pool_context._engines


def test_a_model_that_cannot_load_stops_the_run_with_one_clear_line(offline_env, tmp_path: Path) -> None:
    broken = tmp_path / "broken-pack"
    broken.mkdir()
    for name in ("det.onnx", "rec.onnx"):
        (broken / name).write_bytes(b"not a model")
    photos = tmp_path / "drive"
    shutil.copytree(PHOTOS / "tom_hanks", photos)
    code, out, err, _ = facepic_process({**offline_env, "FACEPIC_MODEL": str(broken)}, "run", str(photos))
    assert code != 0
    assert err.count("face model broken-pack has no detection model") == 1, err
    assert "Traceback" not in err and "died twice" not in err and "initializer" not in err, err


def test_a_wrong_guess_costs_a_load_never_the_wrong_model(offline_env, tmp_path: Path) -> None:
    """Under auto a buffalo_l on disk is the guess; a library built with buffalo_s keeps it."""
    model_root = tmp_path / "models-root"
    (model_root / "models" / "buffalo_l").mkdir(parents=True)
    (model_root / "models" / "buffalo_l" / "det_10g.onnx").write_bytes(b"not a model")  # loading it fails
    env = {**offline_env, "FACEPIC_MODEL_ROOT": str(model_root)}
    photos = tmp_path / "drive"
    shutil.copytree(PHOTOS / "tom_hanks", photos / "a")
    first = invoke(env, "run", str(photos))
    assert first.exit_code == 0 and "photos 3: done 3 (faces 3" in first.output, first.output
    shutil.copytree(PHOTOS / "person_08", photos / "b")
    second = invoke({**env, "FACEPIC_MODEL": "auto"}, "run", str(photos))
    assert second.exit_code == 0, second.output
    assert "face model: buffalo_s (the library was built with it)" in second.output
    assert "photos 6: done 3 (faces 3, no face 0), already done 3" in second.output


def test_the_pools_processes_run_opencv_on_their_share_of_the_cores(offline_config) -> None:
    """OpenCV runs a thread per core in each process unless told: a pool of one process per
    core ran twice as many threads as cores."""
    import cv2

    cores = os.cpu_count() or 1
    with CpuPool(settings_of(offline_config), None, processes=cores) as pool:
        threads = {pool.executor.submit(cv2.getNumThreads).result() for _ in range(2 * cores)}
    assert threads == {1}


def test_the_runs_own_process_imports_neither_runtime_and_says_where_the_models_run(
    offline_env, tmp_path: Path
) -> None:
    """OpenVINO's precision comes from the pool's processes, which import OpenVINO anyway; the
    run's own process imports neither runtime (0.19 s of CPU before its first photo), and its
    line says what this machine's runtime is."""
    from facepic.runtime import Runtime

    photos = tmp_path / "drive"
    shutil.copytree(PHOTOS / "tom_hanks", photos)
    code, out, err, loaded = facepic_process(offline_env, "run", str(photos))
    assert code == 0, err
    assert "openvino" not in loaded and "facepic.runner" in loaded
    if not runtime.gpu_visible() and sys.platform != "darwin":  # else onnxruntime is asked for its accelerator
        assert "onnxruntime" not in loaded
    settings = settings_of(offline_env)
    expected = Runtime.for_settings(settings, settings.workers or os.cpu_count() or 1).describe()
    assert [line for line in err.splitlines() if line.startswith("face model: ")][0].endswith(f" on {expected}"), err


def test_a_pool_that_cannot_say_the_precision_in_time_leaves_it_to_the_run(offline_config) -> None:
    """A pool process answers once it has loaded its model; one still loading (a model being
    downloaded) does not hold the run's line and first photos: the run asks OpenVINO itself."""
    from facepic.runtime import openvino_precision

    with CpuPool(settings_of(offline_config), "buffalo_s", processes=1) as pool:
        assert pool.openvino_precision(timeout=0.0) is None
        assert pool.openvino_precision() == openvino_precision()
