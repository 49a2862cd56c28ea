"""The embedded database that outlives a command (a user's default, FACEPIC_DB_LINGER): a read
or a correction with the data folder free starts the server in a process of its own, the next
commands connect to it, a command that needs the library to itself stops it, and it stops by
itself once no command has used it for the linger time. Real `facepic` processes throughout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PHOTOS, wait_until
from tests.conftest import running as alive


def facepic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def serving(env: dict[str, str]) -> dict | None:
    path = Path(env["FACEPIC_DATA_DIR"]) / "serving.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture
def library(offline_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two people's photos through `facepic run`, and a linger of a minute from then on; any
    lingering server is stopped after the test."""
    photos = tmp_path / "photos"
    for person in ("tom_hanks", "keanu_reeves"):
        shutil.copytree(PHOTOS / person, photos / person)
    done = facepic(offline_env, "run", str(photos))
    assert done.returncode == 0, done.stdout + done.stderr
    env = {**offline_env, "FACEPIC_DB_LINGER": "60"}
    yield env
    found = serving(env)
    if found and alive(int(found["pid"])):
        os.kill(int(found["pid"]), signal.SIGKILL)


def test_a_read_leaves_the_server_up_and_the_next_commands_use_it(library: dict[str, str]) -> None:
    first = facepic(library, "persons", "--json")
    assert first.returncode == 0, first.stderr
    up = serving(library)
    assert up and up.get("lingering") and up.get("port"), up
    pid = int(up["pid"])
    assert alive(pid), "the server stopped with the command"

    second = facepic(library, "persons", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert serving(library) == up, "the second command started a server of its own"

    # A correction through it, seen by the next read.
    person = max(json.loads(first.stdout), key=lambda p: p["face_count"])["id"]
    named = facepic(library, "name", person, "Ada Lovelace")
    assert named.returncode == 0, named.stderr
    after = json.loads(facepic(library, "persons", "--json").stdout)
    assert [p["name"] for p in after if p["id"] == person] == ["Ada Lovelace"]
    assert int(serving(library)["pid"]) == pid  # type: ignore[index]


def test_run_stops_the_lingering_server_and_has_the_library_to_itself(library: dict[str, str], tmp_path: Path) -> None:
    assert facepic(library, "persons").returncode == 0
    pid = int(serving(library)["pid"])  # type: ignore[index]
    more = tmp_path / "more"
    shutil.copytree(PHOTOS / "jessica_alba", more / "jessica_alba")
    again = facepic(library, "run", str(more))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "is using the data folder" not in again.stderr
    assert not alive(pid), "the lingering server outlived the run that needed the library"
    assert serving(library) is None
    # The library holds the new photos, read through a fresh server.
    listed = facepic(library, "persons", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sum(p["face_count"] for p in json.loads(listed.stdout)) >= len(list((more / "jessica_alba").glob("*.jpg")))


def test_it_stops_by_itself_once_unused_for_the_linger_time(library: dict[str, str]) -> None:
    env = {**library, "FACEPIC_DB_LINGER": "1"}
    assert facepic(env, "persons").returncode == 0
    pid = int(serving(env)["pid"])  # type: ignore[index]
    started = time.monotonic()
    wait_until(lambda: not alive(pid), "the lingering server to stop", timeout=30)
    assert time.monotonic() - started >= 0.5
    assert serving(env) is None, "it left its address behind"
    assert facepic(env, "persons").returncode == 0  # and the next command starts one again


def test_a_killed_lingering_server_is_not_trusted(library: dict[str, str]) -> None:
    assert facepic(library, "persons").returncode == 0
    pid = int(serving(library)["pid"])  # type: ignore[index]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), "the server to die")
    listed = facepic(library, "persons", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout), "no persons after the server was killed"
    now = serving(library)
    assert now and int(now["pid"]) != pid


def test_without_linger_the_server_stops_with_the_command(library: dict[str, str]) -> None:
    env = {**library, "FACEPIC_DB_LINGER": "0"}
    assert facepic(env, "persons").returncode == 0
    assert serving(env) is None


def test_serve_takes_over_from_the_lingering_server_and_commands_follow(library: dict[str, str]) -> None:
    assert facepic(library, "persons").returncode == 0
    lingering = int(serving(library)["pid"])  # type: ignore[index]
    serve = subprocess.Popen(
        [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", "serve", "--port", "0"],
        env={**os.environ, **library},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: (serving(library) or {}).get("pid") == serve.pid, "serve to publish its server", timeout=60)
        assert not alive(lingering)
        assert not serving(library).get("lingering")  # type: ignore[union-attr]
        listed = facepic(library, "persons", "--json")  # through serve's server
        assert listed.returncode == 0 and json.loads(listed.stdout), listed.stderr
        assert (serving(library) or {}).get("pid") == serve.pid
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=60)


def test_a_backup_restored_while_a_server_lingers_is_not_corrupted(library: dict[str, str], tmp_path: Path) -> None:
    """A user restores the data folder from a backup (or moves it) while a server lingers on the
    old one: that server ends without writing into the folder now at the path (its close once
    wrote the database's metadata there, and the restored library could no longer be opened)."""
    data = Path(library["FACEPIC_DATA_DIR"])
    before = facepic(library, "persons", "--json")
    assert before.returncode == 0, before.stderr
    old = int(serving(library)["pid"])  # type: ignore[index]
    backup = tmp_path / "backup"
    shutil.copytree(data, backup, ignore=shutil.ignore_patterns("serving.json"))
    shutil.rmtree(data)
    shutil.copytree(backup, data)
    wait_until(lambda: not alive(old), "the old server to see its folder gone", timeout=30)
    after = facepic({**library, "FACEPIC_DB_LINGER": "0"}, "persons", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    checked = facepic({**library, "FACEPIC_DB_LINGER": "0"}, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_commands_started_together_all_answer_through_one_server(library: dict[str, str]) -> None:
    """Several reads at the same instant on a folder with no server up: one starts it, the
    others wait for its address (or for the lock, as it closes) rather than fail."""
    env = {**os.environ, **library, "FACEPIC_DB_LINGER": "2"}
    argv = [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", "persons", "--json"]
    for _ in range(3):
        procs = [
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
        assert len({out for out, _ in outs}) == 1
        found = serving(library)
        if found:  # the next round meets it stopping, or starts afresh
            pid = int(found["pid"])
            wait_until(lambda pid=pid: not alive(pid), "the server to stop", timeout=30)  # type: ignore[misc]


def test_run_waits_for_a_command_still_using_the_lingering_server(library: dict[str, str], tmp_path: Path) -> None:
    """`run` needs the library alone: it asks the lingering server to stop, which it does once
    the command connected to it is done (it was closed under a running `check` before)."""
    from pymongo import MongoClient

    assert facepic(library, "persons").returncode == 0
    up = serving(library)
    assert up is not None
    client: MongoClient = MongoClient(f"mongodb://127.0.0.1:{up['port']}/?directConnection=true")
    client.facepic.persons.find_one()  # a command still at work, connected
    more = tmp_path / "more"
    shutil.copytree(PHOTOS / "jessica_alba", more / "jessica_alba")
    run = subprocess.Popen(
        [sys.executable, "-m", "facepic.cli", "--env-file", "/nonexistent/.env", "run", str(more)],
        env={**os.environ, **library},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert run.poll() is None, "run did not wait for the command using the server"
        assert alive(int(up["pid"]))
        assert client.facepic.persons.find_one() is not None  # still answered
    finally:
        client.close()
    out, err = run.communicate(timeout=240)
    assert run.returncode == 0, out + err
    assert not alive(int(up["pid"]))
