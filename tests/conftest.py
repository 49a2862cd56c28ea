"""Fixtures: real Redis, MongoDB wire server and S3 server, real Celery workers."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from facepic.settings import Settings
from tests import servers
from tests.servers import Worker, start_pipeline_workers, stop_workers
from workers.cli import cli

TESTS = Path(__file__).parent
REPO = TESTS.parent
PHOTOS = TESTS / "photos"
GROUP_PHOTO = TESTS / "photos-group" / "couple.jpg"
_counter = itertools.count(1)

# A suite started in the background by a shell without job control (`nohup pytest &`, a
# script's `&`) inherits Ctrl-C ignored, and every facepic it starts would too: the tests of
# Ctrl-C would then see it do nothing (a run that ends 0, a watcher that never stops). A real
# handler here is reset to the default in each program the tests start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Fixtures that start a real server (Redis, the MongoDB wire server, the S3 server, Celery
# workers, or the embedded database of `facepic run`): tests using them are marked `servers`,
# so that `pytest -m "not servers"` runs the fast part alone. A test that starts one some other
# way (`facepic serve`, Flower, `request.getfixturevalue`) carries the mark itself.
SERVER_FIXTURES = {
    "redis_server",
    "mongo_server",
    "s3_server",
    "server_env",
    "workers",
    "offline_env",
    "finished_library",
}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: two test processes a core, at most 8. The tests spend much of their time
    waiting on the processes and servers they start (a worker's restart, a visibility timeout,
    a browser), so one a core leaves the cores idle: on 2 cores the suite took 318 s with 2 and
    279 s with 4 in one sitting. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides where set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(2 * cores, 8)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


_servers_marked = False  # whether the test now running is marked servers


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _servers_marked
    _servers_marked = item.get_closest_marker("servers") is not None


def _only_when_marked(cls: Any, what: str) -> None:
    """``cls.start`` fails in a test not marked `servers`: the mark stays true, and the fast set fast."""
    start = cls.start

    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _servers_marked:  # pytest.fail: no `except Exception` on the way turns it into an error line
            pytest.fail(f"this test starts {what}: mark it servers (or take the offline_env fixture)", pytrace=False)
        return start(self, *args, **kwargs)

    cls.start = guarded


_only_when_marked(servers.Server, "a server process")
try:
    from secantus import SecantusDBServer
except ImportError:  # without the embedded extra, the tests that need it fail on their own
    pass
else:
    _only_when_marked(SecantusDBServer, "the embedded database")


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def redis_server(server_dir: Path) -> Iterator[str]:
    server, url = servers.start_redis(server_dir)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def mongo_server(server_dir: Path) -> Iterator[str]:
    server, uri = servers.start_mongo(server_dir)
    yield uri
    # Killed: its databases are thrown away, and a clean stop waits 2 s for its accept thread
    # and up to 5 s more for the connections the tests left open.
    server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def s3_server(server_dir: Path) -> Iterator[str]:
    server, endpoint = servers.start_s3(server_dir)
    yield endpoint
    server.stop(signal.SIGKILL)  # its buckets are thrown away; a clean stop takes 2 s


RAM = Path("/dev/shm")


@pytest.fixture
def ram_path(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder in memory where there is room for it (else ``tmp_path``), for a test of
    thousands of files where the disk's fsyncs (milliseconds each) are not what it tests."""
    usable = RAM.is_dir() and os.access(RAM, os.W_OK) and shutil.disk_usage(RAM).free >= 512 << 20
    if not usable:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="facepic-test-", dir=RAM))
    try:
        yield folder
    finally:
        # rm, not shutil.rmtree: a folder chain deeper than Python's recursion limit may be left.
        subprocess.run(["rm", "-rf", "--one-file-system", str(folder)], check=True)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def offline_env(tmp_path: Path, model_root: Path) -> dict[str, str]:
    """Settings for a run with no servers at all (embedded database, folder store)."""
    return offline_settings(tmp_path / "data-local", model_root)


@pytest.fixture
def offline_config(tmp_path: Path, model_root: Path) -> dict[str, str]:
    """The settings of ``offline_env`` for a test whose commands stop before they open the
    library (no embedded database starts): not marked servers."""
    return offline_settings(tmp_path / "data-local", model_root)


def offline_settings(data_dir: Path, model_root: Path) -> dict[str, str]:
    """The environment of a run with no servers, its data folder at ``data_dir``."""
    return {
        "FACEPIC_DATA_DIR": str(data_dir),
        "FACEPIC_MODEL": "buffalo_s",
        "FACEPIC_MODEL_ROOT": str(model_root),
        "FACEPIC_MONGODB_URI": "",
        "FACEPIC_S3_ENDPOINT": "",
        "FACEPIC_S3_ACCESS_KEY_ID": "",
        "FACEPIC_S3_SECRET_ACCESS_KEY": "",
        "FACEPIC_WORKERS": "2",
        # Each command's embedded server stops with it: tests/test_linger.py tests the one that
        # outlives it (a user's default), which would otherwise outlive each test's folder.
        "FACEPIC_DB_LINGER": "0",
    }


@pytest.fixture
def server_env(
    tmp_path: Path, redis_server: str, mongo_server: str, s3_server: str, model_root: Path
) -> dict[str, str]:
    """Settings for one test against the real servers: its own Redis db, database and bucket."""
    n = next(_counter)
    db = n % 16
    import redis

    redis.Redis.from_url(f"{redis_server}/{db}").flushdb()
    return {
        "FACEPIC_DATA_DIR": str(tmp_path / "data-servers"),
        "FACEPIC_REDIS_URL": f"{redis_server}/{db}",
        "FACEPIC_MONGODB_URI": mongo_server,
        "FACEPIC_MONGODB_DB": f"facepic_t{n}",
        "FACEPIC_S3_ENDPOINT": s3_server,
        "FACEPIC_S3_REGION": "auto",
        "FACEPIC_S3_BUCKET": f"facepic-t{n}",
        "FACEPIC_S3_ACCESS_KEY_ID": servers.S3_ACCESS_KEY,
        "FACEPIC_S3_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY,
        "FACEPIC_MODEL": "buffalo_s",
        "FACEPIC_MODEL_ROOT": str(model_root),
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.load(env=env, env_file=None)


def invoke(env: dict[str, str], *args: str) -> Result:
    """Run the CLI as a user would, with ``env`` as the environment and no .env file."""
    runner = CliRunner()
    return runner.invoke(cli, ["--env-file", "/nonexistent/.env", *args], env=env, obj={}, catch_exceptions=False)


def copy_photos(target: Path, group: bool = True) -> dict[str, str]:
    """Copy the labelled test photos to ``target``; returns {relative path: identity}."""
    labels = {}
    for src in sorted(PHOTOS.glob("*/*.jpg")):
        path = f"{src.parent.name}/{src.name}"
        (target / src.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target / path)
        labels[path] = src.parent.name
    if group:
        shutil.copy(GROUP_PHOTO, target / "couple.jpg")
    return labels


@dataclass(frozen=True)
class Finished:
    """A library that `facepic run` finished (embedded database, folder store), shared by the
    session's tests: none changes it, each takes a copy of its data folder."""

    env: dict[str, str]
    photos: Path
    labels: dict[str, str]  # {photo path relative to ``photos``: identity}
    output: str  # what the run printed

    def copy(self, data_dir: Path) -> dict[str, str]:
        """The settings of a copy of the library's data folder at ``data_dir``, the test's own."""
        shutil.copytree(self.env["FACEPIC_DATA_DIR"], data_dir, ignore=shutil.ignore_patterns(".facepic.lock"))
        return {**self.env, "FACEPIC_DATA_DIR": str(data_dir)}


@pytest.fixture(scope="session")
def finished_library(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Callable[..., Finished]:
    """``finished_library(group=True)``: the labelled photos (and the couple photo, with
    ``group``) through `facepic run`, once per session, where tests ran it on the same photos
    one after another."""
    built: dict[bool, Finished] = {}

    def finished(group: bool = True) -> Finished:
        if group not in built:
            base = tmp_path_factory.mktemp("finished")
            labels = copy_photos(base / "photos", group=group)
            env = offline_settings(base / "data", model_root)
            result = invoke(env, "run", str(base / "photos"))
            assert result.exit_code == 0, result.output
            built[group] = Finished(env, base / "photos", labels, result.output)
        return built[group]

    return finished


XSS_FILE = "<img src=x onerror=alert(2)>.jpg"  # a photo of the web library, named as markup


@pytest.fixture(scope="session")
def web_built(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> tuple[dict[str, str], Path]:
    """The library of tests/test_web*.py: the committed photos (one of them under a hostile file
    name), built once for the session; each test serves its own copy of the data folder."""
    base = tmp_path_factory.mktemp("web")
    photos = base / "photos"
    copy_photos(photos)
    # Another photo by its content (a byte after the JPEG's end), not a duplicate of its source.
    (photos / XSS_FILE).write_bytes((photos / "tom_hanks" / "07.jpg").read_bytes() + b"\0")
    # Each photo a day older than the next by its file's time (one has an EXIF date too).
    for day, photo in enumerate(sorted(photos.rglob("*.jpg"))):
        stamp = (978_307_200 + day * 86_400) * 10**9  # from 2001-01-01
        os.utime(photo, ns=(stamp, stamp))
    env = offline_settings(base / "data", model_root)
    assert invoke(env, "run", str(photos)).exit_code == 0
    return env, base / "data"


def ledger_lines(settings: Settings) -> list[dict[str, Any]]:
    if not settings.ledger_path.exists():
        return []
    return [json.loads(line) for line in settings.ledger_path.read_text().splitlines()]


def wait_for_ledger(settings: Settings, finished: int, timeout: float = 180.0) -> list[dict[str, Any]]:
    """Wait until ``finished`` photos have a done or failed line; return the final lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = ledger_lines(settings)
        final = {}
        for line in lines:
            if line["status"] in ("done", "failed"):
                final[(line["root"], line["path"])] = line
        if len(final) >= finished:
            return lines
        time.sleep(0.3)
    raise AssertionError(f"only {len(final)} of {finished} photos finished in {timeout:.0f} s")


def running(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie (dead, not yet reaped) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(check: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def workers(server_env: dict[str, str], tmp_path: Path) -> Iterator[list[Worker]]:
    """One CPU worker (cpu and upload queues) and the one index worker, concurrency 1 each."""
    started = start_pipeline_workers(server_env, tmp_path)
    yield started
    stop_workers(started)
