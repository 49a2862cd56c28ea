"""The one table of queues and routes. Every task FacePic registers must appear here.

- ``cpu``: detection and thumbnails, CPU-bound; any number of workers on any machine.
- ``upload``: originals and thumbnails to the bucket; I/O-bound, may run with more concurrency.
- ``index``: person assignment and the ledger; exactly one worker with concurrency 1, on
  the machine that holds the data folder, so persons are never created twice and the
  ledger has a single writer.
"""

QUEUES = ("cpu", "upload", "index")
CPU_QUEUES = ("cpu", "upload")  # what a CPU worker consumes
INDEX_QUEUE = "index"

ROUTES = {
    "facepic.detect": {"queue": "cpu"},
    "facepic.thumbnails": {"queue": "cpu"},
    "facepic.upload": {"queue": "upload"},
    "facepic.index": {"queue": "index"},
    "facepic.log": {"queue": "index"},
}

STAGE_TASKS = {
    "detect": "facepic.detect",
    "thumbnails": "facepic.thumbnails",
    "upload": "facepic.upload",
    "index": "facepic.index",
    "log": "facepic.log",
}
