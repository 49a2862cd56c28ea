"""The Docker files, validated without a Docker engine: compose config, hadolint, and the
compose services checked against the Celery routing table."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workers.routing import CPU_QUEUES, INDEX_QUEUE, QUEUES

REPO = Path(__file__).parent.parent
ENV = {
    "FACEPIC_S3_ACCESS_KEY_ID": "key",
    "FACEPIC_S3_SECRET_ACCESS_KEY": "secret",
    "FACEPIC_IMPORT_HOST_DIR": "/srv/photos",
    "FLOWER_BASIC_AUTH": "admin:pw",
    "COMPOSE_PROFILES": "local-mongo,local-s3",
}
SPARE_ENV = {**ENV, "FACEPIC_REDIS_URL": "redis://main:6379/0", "FACEPIC_MONGODB_URI": "mongodb://main:27017/",
             "FACEPIC_S3_ENDPOINT": "http://main:8333", "FACEPIC_DATA_HOST_DIR": "/mnt/facepic-data"}


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, f"{name} is missing: pip install -r requirements/test.txt"
    return found


def compose(file: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FACEPIC_", "FLOWER_", "COMPOSE_"))}
    return subprocess.run([tool("docker-compose"), "-f", file, *args], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True)


def services(file: str, env: dict[str, str]) -> dict:
    result = compose(file, env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def worker_args(service: dict) -> tuple[set[str], str]:
    command = service["command"]
    text = command[-1] if command[0] == "sh" else shlex.join(command)
    queues = set(re.search(r"-Q ([\w,]+)", text).group(1).split(","))
    concurrency = re.search(r"-c (\S+)", text).group(1)
    return queues, concurrency


@pytest.mark.parametrize("file,env", [("docker-compose.yml", ENV), ("docker-compose.spare.yml", SPARE_ENV)])
def test_compose_files_are_valid(file: str, env: dict[str, str]) -> None:
    result = compose(file, env, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_has_no_default_secrets() -> None:
    result = compose("docker-compose.yml", {k: v for k, v in ENV.items() if k != "FLOWER_BASIC_AUTH"}, "config", "-q")
    assert result.returncode == 1
    assert "FLOWER_BASIC_AUTH" in result.stderr
    text = (REPO / "docker-compose.yml").read_text()
    assert "FLOWER_BASIC_AUTH: ${FLOWER_BASIC_AUTH:?" in text


def test_compose_workers_consume_exactly_the_routing_tables_queues() -> None:
    svc = services("docker-compose.yml", ENV)
    assert {"redis", "mongo", "s3", "worker", "worker-index", "flower"} <= set(svc)
    cpu_queues, cpu_concurrency = worker_args(svc["worker"])
    index_queues, index_concurrency = worker_args(svc["worker-index"])
    assert cpu_queues == set(CPU_QUEUES)
    assert index_queues == {INDEX_QUEUE} and index_concurrency == "1"
    assert svc["worker-index"]["deploy"]["replicas"] == 1
    assert cpu_queues | index_queues == set(QUEUES)
    assert "FACEPIC_WORKER_CONCURRENCY" in cpu_concurrency and "nproc" in cpu_concurrency
    for name in ("redis", "mongo", "s3"):
        assert "healthcheck" in svc[name], name
    for name in ("worker", "worker-index"):
        assert svc[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        mounts = {v["target"]: v for v in svc[name]["volumes"]}
        assert mounts["/app/import_images"]["read_only"] is True
        assert mounts["/app/import_images"]["source"] == "/srv/photos"
        assert "/data" in mounts and "/models" in mounts


def test_flower_needs_credentials_and_listens_on_loopback_by_default() -> None:
    flower = services("docker-compose.yml", ENV)["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "admin:pw"
    (port,) = flower["ports"]
    assert port["host_ip"] == "127.0.0.1" and port["published"] == "5555"


def test_enqueuer_is_a_one_off_with_the_import_folder_read_only() -> None:
    enqueuer = services("docker-compose.yml", {**ENV, "COMPOSE_PROFILES": "local-mongo,local-s3,tools"})["enqueuer"]
    assert enqueuer["profiles"] == ["tools"]
    mounts = {v["target"]: v for v in enqueuer["volumes"]}
    assert mounts["/app/import_images"]["read_only"] is True


def test_spare_machine_runs_only_cpu_workers_against_the_main_servers() -> None:
    svc = services("docker-compose.spare.yml", SPARE_ENV)
    assert set(svc) == {"worker"}
    assert worker_args(svc["worker"])[0] == set(CPU_QUEUES)
    env = svc["worker"]["environment"]
    assert env["FACEPIC_REDIS_URL"] == "redis://main:6379/0"
    assert env["FACEPIC_DATA_DIR"] == "/data"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.worker", "Dockerfile.enqueuer"])
def test_dockerfiles_pass_hadolint_and_run_as_non_root(dockerfile: str) -> None:
    result = subprocess.run([tool("hadolint"), dockerfile], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / dockerfile).read_text()
    assert "FROM python:3.12-slim" in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert "--mount=type=cache" in text


def test_enqueuer_image_has_no_face_engine() -> None:
    text = (REPO / "Dockerfile.enqueuer").read_text()
    assert "requirements/enqueuer.txt" in text and "worker.txt" not in text
    lines = (REPO / "requirements" / "enqueuer.txt").read_text().lower().splitlines()
    packages = {line.split("==")[0] for line in lines if line and not line.startswith("#")}
    assert not packages & {"onnxruntime", "insightface", "onnx", "opencv-python-headless"}
    # and the enqueuer's code paths import without them
    code = (
        "import sys\n"
        "for m in ('onnxruntime', 'insightface', 'cv2', 'onnx', 'secantus'): sys.modules[m] = None\n"
        "import facepic.cli, workers.dispatch, workers.app\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(facepic.cli.cli, ['--help'], obj={})\n"
        "assert r.exit_code == 0, r.output\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_worker_image_can_bake_the_model_pack() -> None:
    text = (REPO / "Dockerfile.worker").read_text()
    assert 'ARG BAKE_MODEL=""' in text
    assert 'facepic fetch-model "$BAKE_MODEL"' in text
