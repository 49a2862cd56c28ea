"""Send one chain per photo to the broker, and read queue lengths for `facepic status`."""

from __future__ import annotations

from typing import Any

from celery import Celery, chain

from facepic.errors import FacePicError
from facepic.pipeline.job import Job
from facepic.pipeline.stages import stages_for
from workers.batches import IndexQueue
from workers.routing import INDEX_QUEUE, QUEUES, STAGE_TASKS


class BrokerUnavailable(FacePicError):
    """Redis cannot be reached."""

    setting = "redis_url"


class CeleryDispatcher:
    def __init__(self, app: Celery | None = None) -> None:
        if app is None:
            from workers.app import app as default_app

            app = default_app
        self.app = app
        self._producer: Any = None

    def check(self) -> None:
        """Fail with one clear line (no URL, it may hold a password) if Redis is unreachable."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5)
        except Exception as e:  # noqa: BLE001
            host = self.app.conf.broker_url.rsplit("@", 1)[-1].split("://")[-1].split("/")[0]
            raise BrokerUnavailable(f"cannot reach Redis at {host} ({type(e).__name__})") from None

    def __call__(self, job: Job) -> None:
        """The photo's chain of tasks (``--upload-only``'s is shorter); its last hands the photo
        to the index worker."""
        stages = stages_for(bool(job.get("upload_only")))
        signatures = [self.app.signature(STAGE_TASKS[stage.name]) for stage in stages if stage.name in STAGE_TASKS]
        signatures[0] = signatures[0].clone(args=(dict(job),))
        chain(*signatures).apply_async()

    def queue_lengths(self) -> dict[str, int]:
        """Messages waiting in each queue (kombu keeps a Redis list per queue)."""
        import redis

        client = redis.Redis.from_url(self.app.conf.broker_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            lengths = {queue: int(client.llen(queue)) for queue in QUEUES}
            lengths[INDEX_QUEUE] += IndexQueue(client, self.app).waiting()
            return lengths
        finally:
            client.close()
