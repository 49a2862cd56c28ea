"""The five stages of one photo: detect -> thumbnails -> upload -> index -> log.

Each stage is a plain function ``stage(ctx, job) -> job`` in a module of its own
(``detect``, ``thumbnails``, ``upload``, ``index``, ``log``), over the small JSON-able ``Job``
(``job``) and the process's shared ``Context`` (``context``). `facepic run` and the Celery
tasks both run them through ``policy.execute``, the one failure policy. The photo's faces
travel between stages in its work file (``workfile``).

The names below load their module when first asked for: the planner and the command line
need ``Job`` without the models, MongoDB and image decoders that ``Context`` brings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facepic.pipeline.context import Context
    from facepic.pipeline.job import STAGES, Job
    from facepic.pipeline.policy import (
        Outcome,
        cannot_process,
        describe_error,
        execute,
        run_stage,
        upload_gave_up,
    )

_HOMES = {
    "Context": "context",
    "STAGES": "job",
    "Job": "job",
    **dict.fromkeys(
        ("Outcome", "cannot_process", "describe_error", "execute", "run_stage", "upload_gave_up"), "policy"
    ),
}

__all__ = [
    "STAGES",
    "Context",
    "Job",
    "Outcome",
    "cannot_process",
    "describe_error",
    "execute",
    "run_stage",
    "upload_gave_up",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
