"""WiredTiger's packing with each format parsed once (facepic/embedded_packing.py): the same
bytes and values as WiredTiger's own functions, for the formats SecantusDB uses, for others
(left to WiredTiger), and for values those rules do not expect; and a database written that
way read back by a process without it."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("wiredtiger")

import wiredtiger  # noqa: F401 - puts its own folder on the path, whence its cursor module imports `packing`
from wiredtiger.intpacking import pack_int, unpack_int

from facepic.embedded_packing import planned

packing = sys.modules["packing"]  # WiredTiger's own functions (the patch replaces the cursor module's names)
FAST_PACK, FAST_UNPACK = planned(packing.pack, packing.unpack, pack_int, unpack_int)
USED = ("u", "q", "S", "SS", "SSS", "SSq", "SSu", "SSSu")  # SecantusDB's, counted on a run's writes
PLANNED = (*USED, ".SSq", "Q", "r", "iu", "uS", "uu", "qSqu", "hHlLI")
OTHERS = ("", "5s", "3S", "Bb", "xq", "@q", ">S", "t", "2q", "U", "s", "Su3u")
INTEGERS = [0, 1, -1, 63, 64, -64, -65, 8255, 8256, 8257, -8256, -8257, -8258, 2**31, -(2**31), 2**63 - 1, -(2**63)]


def _value(kind: str, rng: random.Random) -> Any:
    if kind == "S":
        return rng.choice(["", "images", "faces_1", "é—☃", "a\0b", "\0", "x" * 300, str(rng.random())])
    if kind in "uU":
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 63, 64, 8300])))
    if kind in "Bb":
        return rng.randrange(0, 100)
    if kind == "t":
        return rng.randrange(2)
    if kind == "s":
        return "abc"
    return rng.choice(INTEGERS + [rng.randrange(-(2**40), 2**40)])


def _values(fmt: str, rng: random.Random) -> list[Any]:
    body = fmt.lstrip(".@<>")
    values: list[Any] = []
    count = ""
    for char in body:
        if char.isdigit():
            count += char
            continue
        n = int(count) if count and char not in "sSuU" else 1
        if char != "x":
            values += [_value(char, rng) for _ in range(n)]
        count = ""
    return values


def _same(call: Any, reference: Any, *args: Any) -> Any:
    """Both give the same result, or both raise the same kind of error."""
    try:
        expected = reference(*args)
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e)):
            call(*args)
        return None
    got = call(*args)
    assert got == expected and type(got) is type(expected), (args, got, expected)
    return got


@pytest.mark.parametrize("fmt", PLANNED + OTHERS)
def test_the_same_bytes_and_values_as_wiredtigers_own_functions(fmt: str) -> None:
    rng = random.Random(fmt)
    for _ in range(300):
        values = _values(fmt, rng)
        packed = _same(FAST_PACK, packing.pack, fmt, *values)
        if packed:
            _same(FAST_UNPACK, packing.unpack, fmt, packed)


def test_values_the_rules_do_not_expect_are_left_to_wiredtiger() -> None:
    odd = [
        ("S", b"bytes"),
        ("u", "text"),
        ("u", bytearray(b"ab")),
        ("q", True),
        ("q", 2.5),
        ("q", 2**64),
        ("SS", "one"),  # too few values
        ("q", 1, 2),  # too many
    ]
    for fmt, *values in odd:
        _same(FAST_PACK, packing.pack, fmt, *values)
    for fmt, data in [("u", None), ("S", b"no nul"), ("SSq", b"a\0"), ("q", b""), ("u", bytearray(b"x"))]:
        _same(FAST_UNPACK, packing.unpack, fmt, data)


WRITE = textwrap.dedent(
    """
    import sys
    from pymongo import ASCENDING, MongoClient
    from secantus import SecantusDBServer
    import tempfile, wiredtiger
    from facepic import embedded_packing
    assert embedded_packing.apply() and embedded_packing.apply()  # once is enough
    session = wiredtiger.wiredtiger_open(tempfile.mkdtemp(), "create").open_session()
    session.create("table:probe", "key_format=S,value_format=u")
    cursor_module = sys.modules[type(session.open_cursor("table:probe")).__module__]
    assert cursor_module._facepic_planned and "fast_pack" in cursor_module.pack.__qualname__  # what cursors use
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=sys.argv[1])
    server.start()
    host, port = server.address
    c = MongoClient(f"mongodb://{host}:{port}/?directConnection=true")["t"]["c"]
    c.create_index([("person", ASCENDING)])
    c.create_index([("tags", ASCENDING)])
    c.insert_many([{"_id": f"f{i}", "person": f"p{i % 7}", "seq": i, "tags": [i, "x" * (i % 3)],
                   "blob": bytes(range(i % 256)) * 40, "name": "é" * (i % 4)} for i in range(3000)])
    c.update_many({"seq": {"$lt": 1500}}, {"$set": {"person": "moved"}})
    c.delete_many({"seq": {"$gte": 2900}})
    server.stop()
    """
)

READ = textwrap.dedent(
    """
    import json, sys
    from secantus import SecantusDBServer
    from pymongo import MongoClient
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=sys.argv[1])
    server.start()
    host, port = server.address
    c = MongoClient(f"mongodb://{host}:{port}/?directConnection=true")["t"]["c"]
    out = {
        "count": c.count_documents({}),
        "moved": c.count_documents({"person": "moved"}),
        "p3": sorted(d["seq"] for d in c.find({"person": "p3"})),
        "tag": sorted(d["seq"] for d in c.find({"tags": 2000})),
        "blob": c.find_one({"_id": "f2000"})["blob"].hex(),
        "name": c.find_one({"_id": "f2003"})["name"],
    }
    server.stop()
    print(json.dumps(out))
    """
)


def test_a_database_written_with_it_reads_the_same_without_it(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent

    def run(script: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "db")], capture_output=True, text=True, timeout=300, cwd=root
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run(WRITE)
    out = json.loads(run(READ).strip().splitlines()[-1])
    assert out["count"] == 2900 and out["moved"] == 1500
    assert out["p3"] == [i for i in range(1500, 2900) if i % 7 == 3]
    assert out["tag"] == [2000] and out["blob"] == (bytes(range(2000 % 256)) * 40).hex() and out["name"] == "é" * 3
