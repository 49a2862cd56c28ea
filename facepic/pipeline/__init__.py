"""The five stages of one photo: detect -> thumbnails -> upload -> index -> log.

Each stage is a plain function ``stage(ctx, job) -> job`` in a module of its own
(``detect``, ``thumbnails``, ``upload``, ``index``, ``log``), over the small JSON-able ``Job``
(``job``) and the process's shared ``Context`` (``context``). `facepic run` and the Celery
tasks both run them through ``policy.execute``, the one failure policy. The photo's faces
travel between stages in its work file (``workfile``).
"""

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
