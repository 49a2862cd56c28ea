"""The one table of queues and routes. Every task FacePic registers must appear here.

- ``cpu``: detection and thumbnails, CPU-bound; any number of workers on any machine.
- ``upload``: originals and thumbnails to the bucket; I/O-bound, may run with more concurrency.
- ``index``: person assignment and the ledger; exactly one worker with concurrency 1, on
  the machine that holds the data folder, so persons are never created twice and the
  ledger has a single writer. Its task drains the photos waiting in the index list
  (``workers.batches``) a batch at a time.
"""

from facepic.pipeline.job import STAGES

QUEUES = ("cpu", "upload", "index")
CPU_QUEUES = ("cpu", "upload")  # what a CPU worker consumes
INDEX_QUEUE = "index"

# The queue of each stage (the stages themselves are named once, in facepic.pipeline.job). The
# CPU-side stages are one Celery task each, chained; index and log are done by the index
# worker over batches of photos handed over by the upload stage (workers.batches): its task
# ``facepic.index`` drains them.
CHAINED = tuple(stage for stage in STAGES if stage not in ("index", "log"))
STAGE_QUEUES = {"detect": "cpu", "thumbnails": "cpu", "upload": "upload"}
STAGE_TASKS = {stage: f"facepic.{stage}" for stage in CHAINED}
ROUTES = {STAGE_TASKS[stage]: {"queue": STAGE_QUEUES[stage]} for stage in CHAINED}
INDEX_TASK = "facepic.index"
ROUTES[INDEX_TASK] = {"queue": INDEX_QUEUE}
# Settling the persons of new faces together: on the index queue, so never beside an index stage.
SETTLE_TASK = "facepic.settle"
ROUTES[SETTLE_TASK] = {"queue": INDEX_QUEUE}
