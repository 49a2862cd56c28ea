"""The distributed deployment for real: Flower with basic auth, and CPU workers as if on
different machines sharing only what the README says must be shared."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests import servers
from tests.conftest import REPO, copy_photos, invoke, settings_of, wait_for_ledger
from tests.servers import spawn_worker, start_workers, stop_workers
from tests.test_pipeline_e2e import check_library, library_of

FLOWER_USER, FLOWER_PASSWORD = "admin", "flower-test-password"


def get(url: str, auth: bool = True) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{FLOWER_USER}:{FLOWER_PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_flower_shows_every_stage_behind_basic_auth(server_env, workers, tmp_path: Path) -> None:
    port = servers.free_port()
    env = {**os.environ, **server_env, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}", "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "flower.log", "wb")
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", "--address=127.0.0.1", f"--port={port}"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        servers.wait_for(lambda: get(f"{base}/healthcheck", auth=False)[0] in (200, 401), "flower", 30)
        photos = tmp_path / "drive"
        labels = copy_photos(photos, group=False)
        assert invoke(server_env, "enqueue", str(photos)).exit_code == 0
        wait_for_ledger(settings_of(server_env), len(labels))

        assert get(f"{base}/api/workers", auth=False)[0] == 401
        status, body = get(f"{base}/api/workers?refresh=1")
        assert status == 200
        names = set(json.loads(body))
        assert any(n.startswith("cpu@") for n in names) and any(n.startswith("index@") for n in names)

        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while time.monotonic() < deadline:
            status, body = get(f"{base}/api/tasks")
            assert status == 200
            seen = {t["name"] for t in json.loads(body).values() if t.get("name")}
            if {"facepic.detect", "facepic.thumbnails", "facepic.upload", "facepic.index"} <= seen:
                break
            time.sleep(0.5)
        assert {"facepic.detect", "facepic.thumbnails", "facepic.upload", "facepic.index"} <= seen

        status, body = get(f"{base}/metrics")
        assert status == 200
        assert b'flower_events_total{task="facepic.detect",type="task-succeeded"' in body
        # secrets are not in what Flower shows
        _, tasks = get(f"{base}/api/tasks")
        assert servers.S3_SECRET_KEY.encode() not in tasks and b"mongodb://" not in tasks
    finally:
        flower.terminate()
        flower.wait(timeout=20)
        log.close()


def test_two_cpu_workers_on_separate_machines_equal_a_single_run(finished_library, server_env, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    labels = copy_photos(photos)
    total = len(labels) + 1

    def machine(name: str) -> dict[str, str]:
        """What differs between two machines: home, temp and model cache folders."""
        home = tmp_path / f"machine-{name}"
        (home / "tmp").mkdir(parents=True)
        return {
            **server_env,
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "FACEPIC_MODEL_ROOT": str(home / "models"),
        }

    started = start_workers(
        spawn_worker(machine("a"), tmp_path / "machine-a" / "w", "cpu-a", "cpu,upload", 1),
        spawn_worker(machine("b"), tmp_path / "machine-b" / "w", "cpu-b", "cpu,upload", 1),
        spawn_worker(server_env, tmp_path / "main" / "w", "index", "index", 1),
    )
    try:
        assert invoke(server_env, "enqueue", str(photos)).exit_code == 0
        lines = wait_for_ledger(settings_of(server_env), total)
    finally:
        stop_workers(started)
    done = [line for line in lines if line["status"] == "done"]
    assert len(done) == total == len({line["path"] for line in done})  # each photo once
    for name in ("cpu-a", "cpu-b"):
        log = (tmp_path / f"machine-{name[-1]}" / "w" / f"{name}.log").read_text()
        assert "facepic.detect" in log and "succeeded" in log, f"{name} did no work"
    lib = library_of(server_env)
    assert lib.images.count_documents({}) == total
    distributed = check_library(lib, lines, labels)

    run = finished_library()  # `facepic run` of the same photos, in a folder of its own
    from facepic.context import Context
    from facepic.embedded import embedded_database
    from tests.conftest import ledger_lines

    with embedded_database(settings_of(run.copy(tmp_path / "single"))) as running, Context(running) as ctx:
        single = check_library(ctx.library, ledger_lines(running), run.labels)
    assert distributed == single
