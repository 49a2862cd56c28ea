"""Secrets stay secret; object keys never come from photo names; cleanup spares what isn't ours."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import redis

from facepic.ids import safe_extension
from facepic.storage import is_facepic_key, open_store
from tests import servers
from tests.conftest import PHOTOS, invoke, settings_of
from tests.servers import start_pipeline_workers, stop_workers

REDIS_PASSWORD = "redis-pw-Zq8xKv2NdistinctPASS"


def test_no_secret_reaches_a_log_an_error_the_ledger_or_a_task_argument(server_env, tmp_path: Path) -> None:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server, url = servers.start_redis(workdir, password=REDIS_PASSWORD)
    env = {**server_env, "FACEPIC_REDIS_URL": url + "/0"}
    secrets = [REDIS_PASSWORD, servers.S3_SECRET_KEY, servers.S3_ACCESS_KEY]
    photos = tmp_path / "drive"
    (photos / "a").mkdir(parents=True)
    for name in ("07.jpg", "08.jpg"):
        (photos / "a" / name).write_bytes((PHOTOS / "tom_hanks" / name).read_bytes())
    (photos / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    outputs = []
    workers = []
    try:
        result = invoke(env, "enqueue", str(photos))
        outputs.append(result.output)
        # What Flower and any broker client see of the tasks: the queued messages themselves.
        client = redis.Redis.from_url(url + "/0")
        messages = [json.loads(m) for m in client.lrange("cpu", 0, -1)]
        assert len(messages) == 3
        for message in messages:
            body = base64.b64decode(message["body"]).decode()
            arguments = json.dumps(message["headers"]) + body
            assert not [s for s in secrets if s in arguments]
        workers = start_pipeline_workers(env, tmp_path)
        waited = invoke(env, "enqueue", "--wait", str(photos))
        outputs.append(waited.output)
        outputs.append(invoke(env, "status").output)
        from tests.conftest import wait_for_ledger

        wait_for_ledger(settings_of(env), 3)
        # Errors with wrong credentials name the problem, never the values.
        wrong_s3 = {**env, "FACEPIC_S3_SECRET_ACCESS_KEY": "wrong-" + servers.S3_SECRET_KEY}
        outputs.append(invoke(wrong_s3, "enqueue", str(photos)).output)
        wrong_redis = {**env, "FACEPIC_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{servers.free_port()}/0"}
        outputs.append(invoke(wrong_redis, "enqueue", str(photos)).output)
    finally:
        stop_workers(workers)
        server.stop()
    assert "rejected the credentials" in outputs[3] and "cannot reach Redis" in outputs[4]
    logs = [w.log.read_text() for w in workers]
    assert any("broken.jpg" in log for log in logs)  # the logs are there and say things
    ledger = settings_of(env).ledger_path.read_text()
    assert '"status":"failed"' in ledger
    for text in outputs + logs + [ledger]:
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"secret leaked: {text[:300]}"


def test_object_keys_never_contain_parts_of_a_photo_name(offline_env, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    names = ["a..jpg", "a..b.JPG", "%2e%2e%2fescape.jpg", "x.jpg.png", "spaces and ü.jpeg", "-rf .jpg"]
    (photos / "weird.." / "faces").mkdir(parents=True)
    sources = sorted(PHOTOS.glob("*/*.jpg"))
    for name, src in zip(names, sources):
        (photos / "weird.." / "faces" / name).write_bytes(src.read_bytes())
    offline_env = {**offline_env, "FACEPIC_COPY_ORIGINALS": "true"}  # objects in the folder store
    assert invoke(offline_env, "run", str(photos)).exit_code == 0
    keys = list(open_store(settings_of(offline_env)).list_keys())
    assert len(keys) >= 2 * len(names)
    assert all(is_facepic_key(k) for k in keys), keys
    for fragment in ("weird", "escape", "%2", "..", "spaces", "-rf", "faces/faces"):
        assert not [k for k in keys if fragment in k]
    assert safe_extension("x.JPEG") == "jpg" and safe_extension("b.p\nng") == "png"
    assert safe_extension("noext") == "bin"


def test_cleanup_deletes_only_facepic_keys_in_the_bucket(server_env, workers, tmp_path: Path) -> None:
    photos = tmp_path / "drive"
    photos.mkdir()
    (photos / "a.jpg").write_bytes((PHOTOS / "tom_hanks" / "07.jpg").read_bytes())
    assert invoke(server_env, "enqueue", "--wait", str(photos)).exit_code == 0
    settings = settings_of(server_env)
    store = open_store(settings)
    foreign = ["holiday/notes.txt", "thumb_mine.jpg", "faces/person_alice.jpg", "backup.jpg"]
    for key in foreign:
        store._client.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"not FacePic's")  # type: ignore[attr-defined]
    ours = [k for k in store.list_keys() if k not in foreign]
    assert len(ours) == 3

    dry = invoke(server_env, "cleanup", "--dry-run")
    assert "3 FacePic objects" in dry.output and "nothing deleted" in dry.output
    assert invoke(server_env, "cleanup").exit_code == 1  # no confirmation, nothing deleted
    assert len(list(store.list_keys())) == 3 + len(foreign)
    done = invoke(server_env, "cleanup", "--yes")
    assert done.exit_code == 0, done.output
    assert sorted(store.list_keys()) == sorted(foreign)


def test_a_mongodb_password_in_the_uri_never_shows(server_env, mongo_server) -> None:
    password = "mongo-pw-Distinct-7Hq"
    hostport = mongo_server.split("//", 1)[1].split("/", 1)[0]
    env = {
        **server_env,
        "FACEPIC_MONGODB_URI": f"mongodb://facepic:{password}@{hostport}/?directConnection=true",
        "FACEPIC_DB_TIMEOUT": "2",
    }
    result = invoke(env, "enqueue", str(PHOTOS))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: MongoDB at {hostport} rejected the credentials (check FACEPIC_MONGODB_URI)"
    )
    assert password not in result.output
    assert "Traceback" not in result.output
