"""The `facepic` command line: one module per group of commands, the group in ``group``.

- ``group``: the `facepic` group, its one error path, and what the commands share;
- ``run``: `facepic run` (the embedded default: the five stages in the foreground);
- ``library``: `status`, `persons`, `cleanup`;
- ``corrections``: `name`, `merge`, `not-same`, `move`, `reject`, `cover`, `hide`, `recluster`;
- ``models``: `reembed`, `fetch-model`;
- ``serve``: `serve`, the web page on the library (``facepic.web``);
- the Celery layer adds `enqueue` (``workers.cli``): facepic itself never imports Celery.

A command imports what it needs when it runs, never at the top of its module: `--help`,
`--version` and `status` then load click and little else (tests/test_cli.py checks it).
Importing this package registers every command on ``cli``.
"""

from facepic.cli import corrections, library, models, run, serve, xmp  # noqa: F401 - the commands register themselves
from facepic.cli.group import cli, leave


def main() -> None:  # pragma: no cover - `python -m facepic.cli`, the console script without the Celery layer
    try:
        cli(obj={})
    except SystemExit as e:  # click ends every command so, standalone
        leave(e.code)
