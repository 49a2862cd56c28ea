"""The one table of queues and routes, derived from the table of stages
(``facepic.pipeline.stages``). Every task FacePic registers must appear here.

- ``cpu``: detection and thumbnails, CPU-bound; any number of workers on any machine.
- ``upload``: originals and thumbnails to the bucket; I/O-bound, may run with more concurrency.
- ``index``: person assignment and the ledger; exactly one worker with concurrency 1, on
  the machine that holds the data folder, so persons are never created twice and the
  ledger has a single writer. Its task drains the photos waiting in the index list
  (``workers.batches``) a batch at a time.
"""

from facepic.pipeline.stages import STAGES, in_order

QUEUES = ("cpu", "upload", "index")
CPU_QUEUES = ("cpu", "upload")  # what a CPU worker consumes
INDEX_QUEUE = "index"

# A stage off the index queue is one Celery task per photo, chained in the table's order; the
# last task of a photo's chain hands it to the index worker, whose drain runs the stages on
# the index queue over batches of photos (workers.batches).
CHAINED = tuple(stage for stage in STAGES if stage.queue != INDEX_QUEUE)
DRAINED = tuple(stage for stage in STAGES if stage.queue == INDEX_QUEUE)
in_order(STAGES, lambda stage: stage.queue != INDEX_QUEUE, "the stages on the index queue come after the others")
STAGE_TASKS = {stage.name: f"facepic.{stage.name}" for stage in CHAINED}
ROUTES = {STAGE_TASKS[stage.name]: {"queue": stage.queue} for stage in CHAINED}
INDEX_TASK = "facepic.index"
ROUTES[INDEX_TASK] = {"queue": INDEX_QUEUE}
# Settling the persons of new faces together: on the index queue, so never beside an index stage.
SETTLE_TASK = "facepic.settle"
ROUTES[SETTLE_TASK] = {"queue": INDEX_QUEUE}
