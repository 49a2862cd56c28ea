"""The index queue: photos wait in a Redis list for the one index worker, which takes them in
batches (``facepic.pipeline.policy.execute_batch``: one round trip per kind of write, the ledger
appended once per batch) instead of one Celery task per photo.

- The upload stage, the last one on a CPU worker, hands its photo over with ``push``: the job
  goes on the list ``facepic:index``, and if no drain is under way (the flag
  ``facepic:index:drain``, taken with SET NX) one ``facepic.index`` task is sent to the
  ``index`` queue, where the index worker runs it.
- The drain task ``take``s up to ``BATCH`` photos at once, moving them in one atomic step to the
  list ``facepic:index:working``; it indexes and logs them, then empties that list (``done``).
  A worker killed mid-batch leaves them there, and the next drain takes them first: every
  stage is an idempotent upsert and the log skips a photo already logged, so a photo is done
  once, whatever the crash. The drain task itself is acknowledged late, so a killed worker's
  drain is delivered again.
- ``release`` ends a drain: it drops the flag, then looks once more, so a photo pushed while
  the drain ended is never left without one.
- The drain refreshes its flag every batch, and the flag expires a minute after its drain
  stopped doing so; the index worker looks every few seconds for photos waiting with no flag
  (their drain task lost with a Redis that died) and sends one.
"""

from __future__ import annotations

import json
from typing import Any

import redis as redis_lib
from celery import Celery

from facepic.pipeline.job import Job, received
from workers.routing import INDEX_TASK

WAITING = "facepic:index"
WORKING = "facepic:index:working"
DRAIN = "facepic:index:drain"
BATCH = 256  # photos per batch at most
FLAG_SECONDS = 60  # a drain flag outlives its drain (a task lost with Redis) by this at most
WATCH_SECONDS = 10  # how often the index worker looks for photos waiting with no drain

# Resume what a killed drain left in WORKING, else move up to ARGV[1] jobs from WAITING to
# WORKING; in one step, so a job is always in exactly one of the two lists.
_TAKE = """
local working = redis.call('LRANGE', KEYS[2], 0, -1)
if #working > 0 then return working end
local jobs = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #jobs > 0 then
  redis.call('LTRIM', KEYS[1], #jobs, -1)
  redis.call('RPUSH', KEYS[2], unpack(jobs))
end
return jobs
"""


class IndexQueue:
    def __init__(self, client: redis_lib.Redis, app: Celery) -> None:
        self.client = client
        self.app = app
        self._take = client.register_script(_TAKE)

    @classmethod
    def of(cls, app: Celery) -> IndexQueue:
        return cls(redis_lib.Redis.from_url(app.conf.broker_url, socket_timeout=30, socket_connect_timeout=10), app)

    def push(self, job: Job) -> None:
        """Hand a photo to the index worker."""
        self.client.rpush(WAITING, json.dumps(job))
        self.wake()

    def wake(self) -> None:
        """Send a drain task unless one is under way."""
        if self.client.set(DRAIN, "1", nx=True, ex=FLAG_SECONDS):
            self.app.send_task(INDEX_TASK)

    def take(self, count: int = BATCH) -> list[Job]:
        """Up to ``count`` waiting photos (first those a killed drain left), now in WORKING."""
        raw: list[Any] = self._take(keys=[WAITING, WORKING], args=[count])
        return [received(json.loads(item)) for item in raw]

    def done(self) -> None:
        """The batch taken last is indexed and logged."""
        self.client.delete(WORKING)

    def release(self) -> bool:
        """End this drain if nothing is waiting (True); False: photos came, drain on."""
        self.client.delete(DRAIN)
        if not self.client.llen(WAITING):
            return True
        return not self.client.set(DRAIN, "1", nx=True, ex=FLAG_SECONDS)

    def refresh(self) -> None:
        """A long drain keeps its flag."""
        self.client.expire(DRAIN, FLAG_SECONDS)

    def waiting(self) -> int:
        """Photos waiting for the index worker, those in a batch under way included."""
        pipe = self.client.pipeline()
        pipe.llen(WAITING)
        pipe.llen(WORKING)
        waiting, working = pipe.execute()
        return int(waiting) + int(working)
