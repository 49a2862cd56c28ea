import ast
import subprocess
import sys
from pathlib import Path

from workers.app import make_app
from workers.routing import QUEUES, ROUTES, STAGE_TASKS
from facepic.settings import Settings


def test_every_registered_task_has_a_route_to_a_declared_queue() -> None:
    app = make_app(Settings.load(env={}, env_file=None))
    import workers.tasks  # noqa: F401 - registers the tasks on the default app

    from workers.app import app as default_app

    ours = {name for name in default_app.tasks if name.startswith("facepic.")}
    assert ours == set(ROUTES) == set(STAGE_TASKS.values())
    for route in ROUTES.values():
        assert route["queue"] in QUEUES
    assert {q.name for q in app.conf.task_queues} == set(QUEUES)
    assert app.conf.task_create_missing_queues is False
    assert app.conf.task_acks_late and app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_serializer == "json" and app.conf.worker_send_task_events


def test_assignment_and_ledger_share_the_single_index_queue() -> None:
    assert ROUTES["facepic.index"]["queue"] == ROUTES["facepic.log"]["queue"] == "index"
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
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] in forbidden], f"{path.name} imports {names}"


def test_publishing_outlasts_a_broker_restart() -> None:
    app = make_app(Settings.load(env={}, env_file=None))
    policy = app.conf.task_publish_retry_policy
    assert app.conf.task_publish_retry
    waits = [min(policy["interval_start"] + i * policy["interval_step"], policy["interval_max"])
             for i in range(policy["max_retries"])]
    assert sum(waits) > 300  # minutes, not the default half second
