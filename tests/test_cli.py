"""The CLI as a user meets it: exact lines and exit codes, on real files and servers."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from facepic.storage import open_store
from tests.conftest import PHOTOS, copy_photos, invoke, ledger_lines, settings_of
from workers.cli import cli

GOOD = PHOTOS / "tom_hanks" / "07.jpg"


def bad_folder(root: Path) -> None:
    root.mkdir(parents=True)
    shutil.copy(GOOD, root / "good.jpg")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not a photo at all")
    data = GOOD.read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 3])


def test_run_reports_each_bad_photo_and_goes_on(offline_env, tmp_path: Path) -> None:
    root = tmp_path / "drive"
    bad_folder(root)
    result = invoke(offline_env, "run", str(root))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: cannot process")]
    assert sorted(errors) == sorted(
        [
            f"error: cannot process {root / 'cut.jpg'}: truncated image (the file ends before the picture does)",
            f"error: cannot process {root / 'empty.jpg'}: empty file (0 bytes)",
            f"error: cannot process {root / 'notes.jpg'}: not a recognised image format",
        ]
    )
    assert "Traceback" not in result.output
    assert "photos 4: done 1 (faces 1, no face 0), already done 0, duplicates 0, failed 3\n" in result.output
    final = {line["path"]: line for line in ledger_lines(settings_of(offline_env))}
    assert final["good.jpg"]["status"] == "done" and final["good.jpg"]["faces"] == 1
    assert final["empty.jpg"] == {**final["empty.jpg"], "status": "failed", "reason": "empty file (0 bytes)"}
    assert final["notes.jpg"] == {
        **final["notes.jpg"],
        "status": "failed",
        "stage": "detect",
        "reason": "not a recognised image format",
    }
    status = invoke(offline_env, "status")
    assert "photos 4: done 1 (faces 1, no face 0), duplicates 0, pending 0, failed 3\n" in status.output
    assert "failed: notes.jpg: not a recognised image format" in status.output


def test_missing_import_folder_is_one_clear_error(offline_config, tmp_path: Path) -> None:
    result = invoke(offline_config, "run", str(tmp_path / "unplugged"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: import folder {tmp_path / 'unplugged'} does not exist (is the drive mounted? check the path)"
    )


def test_enqueue_without_redis_is_one_clear_error(server_env, tmp_path: Path) -> None:
    env = {**server_env, "FACEPIC_REDIS_URL": "redis://:hunter2-secret@127.0.0.1:1/0"}
    result = invoke(env, "enqueue", str(PHOTOS))
    assert result.exit_code == 1
    assert "Error: cannot reach Redis at 127.0.0.1:1" in result.output
    assert "hunter2-secret" not in result.output


def test_enqueue_with_wrong_bucket_key_is_one_clear_error(server_env, workers) -> None:
    env = {**server_env, "FACEPIC_S3_SECRET_ACCESS_KEY": "wrong-secret-value-123"}
    result = invoke(env, "enqueue", str(PHOTOS))
    assert result.exit_code == 1
    assert "rejected the credentials" in result.output
    assert "wrong-secret-value-123" not in result.output
    assert not settings_of(env).ledger_path.exists()  # nothing queued or recorded


def test_cleanup_lists_then_deletes_only_facepic_data(offline_env, tmp_path: Path) -> None:
    offline_env = {**offline_env, "FACEPIC_COPY_ORIGINALS": "true"}  # objects in the folder store
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(GOOD, root / "good.jpg")
    assert invoke(offline_env, "run", str(root)).exit_code == 0
    settings = settings_of(offline_env)
    store = open_store(settings)
    foreign = settings.folder.objects / "holiday-notes.txt"
    foreign.write_text("mine")
    # Objects whose keys look like FacePic's, made by another library sharing the bucket.
    uuid_like = [
        "0b6c5e1e-1111-4222-8333-944455556666.jpg",
        "thumb_0b6c5e1e-1111-4222-8333-944455556666.jpg",
        "faces/person_p0123456789abcde.jpg",
    ]
    for key in uuid_like:
        store.put_bytes(key, b"another library's", "image/jpeg")
    keys_before = [k for k in store.list_keys() if k != "holiday-notes.txt" and k not in uuid_like]
    assert len(keys_before) == 3  # original, thumbnail, one person's cover

    dry = invoke(offline_env, "cleanup", "--dry-run")
    assert dry.exit_code == 0
    assert "database: images 1, faces 1, persons 1, folders 1" in dry.output
    assert "3 FacePic objects" in dry.output and "dry run: nothing deleted" in dry.output
    refused = invoke(offline_env, "cleanup")
    assert refused.exit_code == 1 and "add --yes" in refused.output
    assert settings.ledger_path.exists()

    done = invoke(offline_env, "cleanup", "--yes")
    assert done.exit_code == 0, done.output
    assert not settings.ledger_path.exists() and not settings.folder.thumbnails.exists()
    assert foreign.read_text() == "mine"
    assert sorted(store.list_keys()) == sorted(["holiday-notes.txt", *uuid_like])
    after = invoke(offline_env, "cleanup", "--dry-run")
    assert "database: images 0, faces 0, persons 0, folders 0" in after.output


def test_persons_json_lists_faces_with_photo_paths_and_boxes(offline_env, tmp_path: Path) -> None:
    root = tmp_path / "drive"
    (root / "trip").mkdir(parents=True)
    for name in ("07.jpg", "08.jpg"):
        shutil.copy(PHOTOS / "tom_hanks" / name, root / "trip" / name)
    assert invoke(offline_env, "run", str(root)).exit_code == 0
    people = json.loads(invoke(offline_env, "persons", "--json").output)
    assert len(people) == 1 and people[0]["face_count"] == 2
    assert [f["photo"] for f in people[0]["faces"]] == ["trip/07.jpg", "trip/08.jpg"]
    assert all(len(f["box"]) == 4 for f in people[0]["faces"])
    text = invoke(offline_env, "persons").output
    assert (
        f"{people[0]['id']}  (unnamed)  2 faces\n1 person;" in text
        and not (settings_of(offline_env).data_dir / "persons.html").exists()
    )
    text = invoke(offline_env, "persons", "--html").output
    sheet = settings_of(offline_env).data_dir / "persons.html"
    assert f"1 person; contact sheet: {sheet}\n" in text
    page = sheet.read_text()
    assert f"<h2>{people[0]['id']}</h2>" in page and "Person 1" not in page  # an id the commands take
    assert page.count('<a href="thumbnails/thumb_') == 2  # each face links to its photo


def test_a_run_with_another_model_than_the_library_stops_naming_both(offline_env, tmp_path: Path) -> None:
    from facepic.models import offline_pack_files

    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(GOOD, root / "good.jpg")
    assert invoke(offline_env, "run", str(root)).exit_code == 0
    other = tmp_path / "otherpack"
    other.mkdir()
    for f in offline_pack_files():
        (other / f.name).symlink_to(f)
    shutil.copy(PHOTOS / "tom_hanks" / "08.jpg", root / "new.jpg")
    result = invoke({**offline_env, "FACEPIC_MODEL": str(other)}, "run", str(root))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: this library was built with face model buffalo_s, but this run uses otherpack: "
        "set FACEPIC_MODEL=buffalo_s (or auto), or re-embed the library"
    )
    assert [line["path"] for line in ledger_lines(settings_of(offline_env))] == ["good.jpg"]


def test_a_dotenv_for_docker_is_named_when_its_servers_are_out_of_reach(offline_config, tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(GOOD, root / "good.jpg")
    dotenv = tmp_path / ".env"
    dotenv.write_text("FACEPIC_MONGODB_URI=mongodb://127.0.0.1:9/\nFACEPIC_DB_TIMEOUT=0.5\n")
    env = {k: v for k, v in offline_config.items() if k != "FACEPIC_MONGODB_URI"}
    result = CliRunner().invoke(cli, ["--env-file", str(dotenv), "run", str(root)], env=env, obj={})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"settings from {dotenv}: FACEPIC_MONGODB_URI"
    assert lines[-1] == (f"Error: cannot reach MongoDB at 127.0.0.1:9; check FACEPIC_MONGODB_URI (set in {dotenv})")


def test_an_empty_folder_and_a_folder_without_photos_say_so(offline_config, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(offline_config, "run", str(empty))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: import folder {empty} is empty (is the drive mounted? check the path)"
    )
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"\0" * 10)
    (videos / "notes.txt").write_text("hello")
    result = invoke(offline_config, "run", str(videos))
    assert result.exit_code == 0
    assert (
        "photos 0: done 0 (faces 0, no face 0), already done 0, duplicates 0, failed 0; skipped 2 files that "
        "are not photos\n" in result.output
    )
    assert (
        f"no photos in {videos}: FacePic reads JPEG, PNG, WebP, HEIC/HEIF, AVIF, TIFF, GIF, BMP and camera "
        "RAW files (is this the right folder?)" in result.output
    )


def test_a_count_of_one_is_singular() -> None:
    from facepic.report import counted

    assert [counted(n, "face") for n in (0, 1, 2, 1234)] == ["0 faces", "1 face", "2 faces", "1,234 faces"]
    assert [counted(n, "face", ("belongs", "belong")) for n in (1, 2)] == ["1 face belongs", "2 faces belong"]


def test_status_prints_failed_names_escaped_as_run_does(offline_env, tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    forged = "x.jpg: reason\nfailed: forged.jpg"
    coloured = "\x1b[2J\x1b[31mred.jpg"
    for name in (forged, coloured):
        (root / name).write_text(f"not a photo at all ({len(name)})")  # not duplicates
    run = invoke(offline_env, "run", str(root))
    assert run.exit_code == 1
    status = invoke(offline_env, "status", "--failed")
    assert status.exit_code == 0, status.output
    assert "\x1b" not in status.output and "\x1b" not in run.output
    assert sorted(status.output.splitlines()) == [
        "failed: \\x1b[2J\\x1b[31mred.jpg: not a recognised image format",
        "failed: x.jpg: reason\\nfailed: forged.jpg: not a recognised image format",
    ]
    for line in status.output.splitlines():  # the same name `run` printed, after "failed: "
        assert f"error: cannot process {root}/{line.removeprefix('failed: ')}" in run.output


# What a command loads, seen from a `facepic` process of its own (the console script): the
# modules of the pool, the face models and the embedded database, and the heavy libraries.
WATCHED = ("facepic.runner", "facepic.detect", "openvino", "onnxruntime", "secantus", "numpy", "pymongo", "celery")
# A command that leaves nothing to finish ends with os._exit (facepic.cli.group.leave), which
# runs no atexit handler: the report is printed on either way out.
LOADED = (
    "import atexit, os, sys\n"
    f"watched = {WATCHED!r}\n"
    "report = lambda: print('loaded:', [m for m in watched if m in sys.modules], file=sys.stderr, flush=True)\n"
    "atexit.register(report)\n"
    "_exit = os._exit\n"
    "os._exit = lambda code: (report(), _exit(code))\n"
    "from workers.cli import main\n"
    "sys.argv[0] = 'facepic'\n"
    "main()\n"
)


def facepic_process(env: dict[str, str], *args: str) -> tuple[int, str, str, list[str]]:
    """`facepic ARGS` in a process of its own: exit code, stdout, stderr, the WATCHED modules loaded."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED, "--env-file", "/nonexistent/.env", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    *err, loaded = done.stderr.splitlines()
    assert loaded.startswith("loaded: "), done.stderr
    return done.returncode, done.stdout, "".join(f"{line}\n" for line in err), ast.literal_eval(loaded[8:])


def test_help_version_and_status_load_none_of_the_heavy_libraries(offline_config) -> None:
    for args in (["--help"], ["--version"], ["status"], ["run", "--help"]):
        code, out, err, loaded = facepic_process(offline_config, *args)
        assert (code, err, loaded) == (0, "", []), args
    assert facepic_process(offline_config, "status")[1] == (
        "photos 0: done 0 (faces 0, no face 0), duplicates 0, pending 0, failed 0\n"
    )


def test_a_command_that_ends_at_once_keeps_its_whole_output_and_its_exit_code(finished_library, tmp_path: Path) -> None:
    """`facepic` ends with os._exit when nothing is left to finish (facepic.cli.group.leave):
    what it wrote to a pipe arrives whole, and an error still exits 1 with its one line."""
    library = finished_library().copy(tmp_path / "library")
    code, out, err, loaded = facepic_process(library, "persons", "--json")
    assert (code, err) == (0, "") and "pymongo" in loaded
    assert json.loads(out) == json.loads(invoke(library, "persons", "--json").output)
    code, out, err, _ = facepic_process(library, "name", "zzzz", "Someone")
    assert (code, out) == (1, "")
    assert err == "Error: no person 'zzzz' (give an id from `facepic persons`, or a name)\n"


def test_a_missing_or_empty_folder_is_said_before_anything_loads(offline_config, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, why in ((tmp_path / "unplugged", "does not exist"), (empty, "is empty")):
        code, out, err, loaded = facepic_process(offline_config, "run", str(folder))
        assert (code, out, loaded) == (1, "", [])
        assert err == f"Error: import folder {folder} {why} (is the drive mounted? check the path)\n"
    assert not settings_of(offline_config).data_dir.exists()  # no database, no ledger


def test_a_run_with_nothing_new_opens_no_library_loads_no_model_and_starts_no_pool(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "drive"
    (root / "trip").mkdir(parents=True)
    for name in ("07.jpg", "08.jpg"):
        shutil.copy(PHOTOS / "tom_hanks" / name, root / "trip" / name)
    (root / "notes.txt").write_text("not a photo")
    first = invoke(offline_env, "run", str(root))
    assert first.exit_code == 0 and "face model: buffalo_s" in first.output
    settings = settings_of(offline_env)
    assert not settings.folder.unsettled.exists()  # the run settled what it stored
    ledger = settings.ledger_path.read_bytes()
    code, out, err, loaded = facepic_process(offline_env, "run", str(root))
    assert (code, err, loaded) == (0, "", [])  # no model line, no pool, no database
    assert out == (
        "photos 2: done 0 (faces 0, no face 0), already done 2, duplicates 0, failed 0; "
        "skipped 1 file that is not a photo\n"
    )
    assert settings.ledger_path.read_bytes() == ledger


def test_a_run_killed_before_its_settle_is_settled_by_the_next_even_with_nothing_new(offline_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(GOOD, root / "good.jpg")
    assert invoke(offline_env, "run", str(root)).exit_code == 0
    settings = settings_of(offline_env)
    settings.folder.unsettled.touch()  # as a run killed between its index stage and its settle leaves it
    again = invoke(offline_env, "run", str(root))
    assert again.exit_code == 0
    assert again.output == (
        "an earlier run stopped before settling its faces: settling them now\n"
        "photos 1: done 0 (faces 0, no face 0), already done 1, duplicates 0, failed 0\n"
    )
    assert not settings.folder.unsettled.exists()
    assert len(json.loads(invoke(offline_env, "persons", "--json").output)) == 1


def on_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`facepic ARGS` with stderr on a terminal (a pseudo-terminal 120 columns wide):
    exit code, stdout, and what the terminal received."""
    import fcntl
    import pty
    import struct
    import termios

    terminal, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", LOADED, "--env-file", "/nonexistent/.env", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=side,
        text=True,
    )
    os.close(side)
    received = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the process ended: the terminal's other side is closed
            break
        if not chunk:
            break
        received += chunk
    out, _ = proc.communicate(timeout=300)
    os.close(terminal)
    return proc.returncode, out, received.decode()


def test_a_run_on_a_terminal_shows_the_scan_the_photos_and_the_settle(offline_env, tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    for name in ("07.jpg", "08.jpg"):
        shutil.copy(PHOTOS / "tom_hanks" / name, root / name)
    shutil.copy(PHOTOS / "tom_hanks" / "07.jpg", root / "zz-copy.jpg")  # known a duplicate once hashed, last
    (root / "notes.txt").write_text("not a photo")

    def drawn(shown: str) -> list[str]:
        """Each line as the terminal shows it last (a bar redraws itself after a carriage return)."""
        return [line.rsplit("\r", 1)[-1].rstrip() for line in shown.split("\r\n")]

    code, out, shown = on_terminal(offline_env, "run", str(root))
    assert code == 0, shown
    assert out == (
        "photos 3: done 2 (faces 2, no face 0), already done 0, duplicates 1, failed 0; "
        "skipped 1 file that is not a photo\n"
    )
    lines = drawn(shown)
    assert lines[0].startswith("scanning: 4 files [")  # the walk, before any file is read
    assert lines[1].startswith("face model: buffalo_s")
    # The photos' bar counted the 3 photos to hash, then not the duplicate.
    assert lines[2].startswith("photos: 100%|") and " 2/2 [" in lines[2] and lines[2].endswith(", faces 2, persons 1]")
    assert lines[3:5] == [
        "settling 2 faces and those still without a person...",
        "persons 1 -> 1 (created 0, removed 0); faces moved 0, newly assigned 0",
    ]
    # No empty bar ("0photo [00:00, ?photo/s]"); a rate such as "1.40photo/s" is not one.
    assert re.search(r"(?<![\d.])0photo", shown) is None and "Traceback" not in shown
    code, out, shown = on_terminal(offline_env, "run", str(root))  # nothing new: the scan only
    assert code == 0 and out.startswith("photos 3: done 0 (faces 0, no face 0), already done 3")
    assert drawn(shown)[0].startswith("scanning: 4 files [") and drawn(shown)[1:] == ["loaded: []", ""]


def test_a_run_analyses_its_first_photos_before_it_has_hashed_the_others(
    offline_env, tmp_path: Path, monkeypatch
) -> None:
    """A drive is not hashed whole before its first photo is analysed (nor read twice where it
    does not fit in memory): each photo is hashed when the pool has room for it."""
    import facepic.runner as runner
    from facepic import ids

    root = tmp_path / "drive"
    labels = copy_photos(root, group=False)
    monkeypatch.setattr(runner, "BATCH", 2)  # the pool runs 2 * 2 + 4 photos ahead of the index
    hashed: list[str] = []
    real_hash, real_summarize = ids.sha256_file, runner.summarize
    monkeypatch.setattr(ids, "sha256_file", lambda file: hashed.append(str(file)) or real_hash(file))
    hashed_when_done: list[int] = []

    def summarize(summary, job, report):  # type: ignore[no-untyped-def]
        hashed_when_done.append(len(hashed))
        real_summarize(summary, job, report)

    monkeypatch.setattr(runner, "summarize", summarize)
    result = invoke({**offline_env, "FACEPIC_WORKERS": "1"}, "run", str(root))
    assert result.exit_code == 0, result.output
    assert f"photos {len(labels)}: done {len(labels)} " in result.output
    assert len(hashed) == len(hashed_when_done) == len(labels)  # each photo hashed once, each done once
    assert hashed_when_done[0] <= 8 < len(labels)  # the first photo was done before most were hashed


def test_corrections_say_what_they_did_and_the_recluster_hint_stops_when_useless(
    offline_env, finished_library, tmp_path: Path
) -> None:
    library = finished_library().copy(tmp_path / "library")  # the labelled photos and the couple, run
    people = json.loads(invoke(library, "persons", "--json").output)
    first, second = people[0]["id"], people[1]["id"]
    short = invoke(library, "name", first[:3], "X")
    assert short.exit_code == 1
    assert short.output == (
        f"Error: no person {first[:3]!r}: give at least 4 characters of an id (`facepic persons` lists them), "
        "or a name\n"
    )
    assert invoke(library, "name", first, "Jennifer Aniston").exit_code == 0
    assert invoke(library, "name", second, "Jennifer Lopez").exit_code == 0
    merged = invoke(library, "merge", "Jennifer Aniston", "Jennifer Lopez")
    assert merged.output == f"merged 1 person(s) into {first}\nnote: the name 'Jennifer Lopez' was dropped\n"
    assert json.loads(invoke(library, "persons", "--json").output)[0]["name"] == "Jennifer Aniston"

    # Faces too small to found a person (here: every face) wait unassigned; recluster is worth a
    # try until it has placed none of them and nothing changed since.
    env = {**offline_env, "FACEPIC_DATA_DIR": str(tmp_path / "small"), "FACEPIC_MIN_FACE_SIZE": "100000"}
    root = tmp_path / "drive"
    root.mkdir()
    shutil.copy(GOOD, root / "a.jpg")
    assert invoke(env, "run", str(root)).exit_code == 0
    hint = "1 face belongs to nobody yet (too small or blurred to found a person, ambiguous, or rejected)"
    assert f"{hint}: `facepic recluster` places those it can\n" in invoke(env, "persons").output
    assert invoke(env, "recluster").output.endswith("newly assigned 0\n")
    assert invoke(env, "persons").output.endswith(f"{hint}: the last recluster placed none of them\n")
    shutil.copy(PHOTOS / "keanu_reeves" / sorted(p.name for p in (PHOTOS / "keanu_reeves").glob("*.jpg"))[0], root)
    assert invoke(env, "run", str(root)).exit_code == 0
    assert "recluster` places those it can" in invoke(env, "persons").output
