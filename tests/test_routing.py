import ast
import subprocess
import sys
from pathlib import Path

from facepic.settings import Settings
from workers.app import make_app
from workers.routing import INDEX_TASK, QUEUES, ROUTES, SETTLE_TASK, STAGE_TASKS


def test_every_registered_task_has_a_route_to_a_declared_queue() -> None:
    app = make_app(Settings.load(env={}, env_file=None))
    import workers.tasks  # noqa: F401 - registers the tasks on the default app
    from workers.app import app as default_app

    ours = {name for name in default_app.tasks if name.startswith("facepic.")}
    assert ours == set(ROUTES) == set(STAGE_TASKS.values()) | {INDEX_TASK, SETTLE_TASK}
    for route in ROUTES.values():
        assert route["queue"] in QUEUES
    assert {q.name for q in app.conf.task_queues} == set(QUEUES)
    assert app.conf.task_create_missing_queues is False
    assert app.conf.task_acks_late and app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_serializer == "json" and app.conf.worker_send_task_events


def test_assignment_and_ledger_share_the_single_index_queue() -> None:
    assert ROUTES["facepic.index"]["queue"] == ROUTES["facepic.settle"]["queue"] == "index"
    assert ROUTES["facepic.detect"]["queue"] != "index"


def test_domain_package_imports_nothing_from_celery() -> None:
    """Every module of facepic/, the CLI included, loads without Celery or workers/; and no
    import of them hides inside a function either."""
    code = (
        "import sys, pkgutil, importlib, facepic\n"
        "for m in pkgutil.walk_packages(facepic.__path__, 'facepic.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('celery', 'kombu', 'workers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    forbidden = ("celery", "kombu", "workers")
    for path in sorted((Path(__file__).parent.parent / "facepic").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] in forbidden], f"{path.name} imports {names}"


def test_publishing_outlasts_a_broker_restart() -> None:
    app = make_app(Settings.load(env={}, env_file=None))
    policy = app.conf.task_publish_retry_policy
    assert app.conf.task_publish_retry
    waits = [
        min(policy["interval_start"] + i * policy["interval_step"], policy["interval_max"])
        for i in range(policy["max_retries"])
    ]
    assert sum(waits) > 300  # minutes, not the default half second


def test_a_worker_killed_in_a_sweep_holds_up_redelivery_for_seconds_not_minutes() -> None:
    """Kombu's sweep for a dead worker's tasks holds a Redis lock that expires on its own if
    its worker is killed in the sweep: within a few sweeps (10 s at a 4 s visibility timeout,
    30 s at the default 600), not after kombu's 300 s, which stalled redelivery past the tests'
    waits when kill -9 landed in a sweep."""
    for timeout, most in ((4, 10), (600, 30)):
        settings = Settings.load(env={"FACEPIC_VISIBILITY_TIMEOUT": str(timeout)}, env_file=None)
        options = make_app(settings).conf.broker_transport_options
        assert options["visibility_timeout"] == timeout
        assert options["unacked_restore_interval"] < options["unacked_mutex_expire"] <= most


def _db_layer_leaks(source: str, name: str) -> list[str]:
    """Where a module reaches past `Library` into MongoDB: a collection (or the database, the
    client, the error wrapper) taken from a library object, pymongo imported, or a collection's
    name written out (a dict key, a document's field, or ``.get``'s argument is a field, not a
    collection)."""
    from facepic.db import COLLECTIONS

    leaks: list[str] = []
    tree = ast.parse(source)
    fields: set[int] = set()  # ids of string constants used as document fields or path parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            fields.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Subscript) and not _library_like(node.value):
            fields.add(id(node.slice))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            fields.add(id(node.args[0]))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            fields.update((id(node.left), id(node.right)))
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if (
            isinstance(node, ast.Attribute)
            and _library_like(node.value)
            and node.attr in (*COLLECTIONS, "db", "client", "errors")
        ):
            leaks.append(f"{where} {ast.unparse(node)}")
        elif isinstance(node, ast.Subscript) and _library_like(node.value):
            leaks.append(f"{where} {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and node.value in COLLECTIONS and id(node) not in fields:
            leaks.append(f"{where} collection name {node.value!r}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            leaks += [f"{where} imports {n}" for n in names if n.split(".")[0] == "pymongo"]
    return leaks


def _library_like(node: ast.expr) -> bool:
    """``lib``, ``library``, ``ctx.library``, ``self._library``, ``lib.db``, ``client`` ..."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "lib" in name.lower() or name in ("db", "client", "database", "collection")


def test_only_the_database_layer_touches_collections() -> None:
    """`Library` (facepic/db.py) is the only code that queries MongoDB: everything else calls
    its methods, so each query, and each collection's name, lives in one place."""
    package = Path(__file__).parent.parent / "facepic"
    # `Library`'s methods live by concern in the mixins of facepic/library/ (its rooms), which
    # are `Library` itself: they, and nothing else, may name collections.
    db_layer = {package / "db.py", *(package / "library").glob("*.py")}
    leaks = [
        leak
        for path in sorted(package.rglob("*.py"))
        if path not in db_layer
        for leak in _db_layer_leaks(path.read_text(), str(path.relative_to(package)))
    ]
    assert not leaks, "queries outside facepic/db.py and facepic/library/:\n" + "\n".join(leaks)
    # The scan finds what it must (a leak written another way must not pass it silently).
    probe = (
        "from pymongo import UpdateOne\n"
        "def f(lib, library, ctx):\n"
        "    lib.faces.find({'faces': 1})\n"
        "    library.db['face_snapshots'].drop()\n"
        "    ctx.library.meta.find_one({})\n"
        "    with lib.errors():\n"
        "        names = ('images', 'persons')\n"
    )
    assert len(_db_layer_leaks(probe, "probe")) == 9, _db_layer_leaks(probe, "probe")


def test_the_database_layer_is_library_alone() -> None:
    """Every class in facepic/library/ is a room of `Library` (what allows them to name
    collections above): a module there that `Library` does not take in would be a back door."""
    import importlib
    import inspect

    from facepic.db import Library

    rooms = Path(__file__).parent.parent / "facepic" / "library"
    for path in sorted(rooms.glob("*.py")):
        module = importlib.import_module(f"facepic.library.{path.stem}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and not issubclass(cls, Exception):
                assert cls in Library.__mro__, f"facepic/library/{path.name}: {name} is not a room of Library"
