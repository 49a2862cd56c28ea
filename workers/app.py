"""The Celery application: broker from Settings, routes from the routing table."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from kombu import Queue

from facepic.settings import Settings
from workers.routing import QUEUES, ROUTES


def make_app(settings: Settings | None = None) -> Celery:
    """The Celery app for ``settings``; without them (a worker's `celery -A workers`), read from
    the environment and ./.env when Celery first needs its configuration, never at import."""
    app = Celery("facepic", include=["workers.tasks"])
    if settings is not None:
        configure(app, settings)
    else:
        app.on_configure.connect(lambda sender, **_: configure(sender, Settings.load()), weak=False)
    return app


def configure(app: Celery, settings: Settings) -> None:
    sweep = max(1, min(10, settings.visibility_timeout // 4))  # seconds between kombu's sweeps (below)
    app.conf.update(
        broker_url=str(settings.redis_url),
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_queues=[Queue(name) for name in QUEUES],
        task_routes=ROUTES,
        task_default_queue="cpu",
        task_create_missing_queues=False,
        # Every stage is idempotent, so a task is acknowledged only when it is done: a
        # worker killed mid-task leaves it to be delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        # Sending the chain's next task must outlast a Redis restart: the default (3 tries in
        # under a second) drops that photo's chain when Redis takes longer to come back.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 100, "interval_start": 0, "interval_step": 0.5, "interval_max": 5},
        # A task whose worker died (machine off, kill -9) is delivered again after this long;
        # it must exceed the longest task, retry countdowns included (60 s at most).
        # Kombu sweeps for such tasks every interval x throttle seconds (100 s by default).
        # A sweep holds a lock in Redis; a worker killed while holding it (kill -9 lands in a
        # sweep that often enough, a sweep a second under a 4 s timeout) stopped every sweep
        # until it expired: 300 s by default, longer than the timeout it serves. A sweep
        # restores ten tasks, in milliseconds: three intervals, at least 10 s, is room enough.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": sweep,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": max(10, 3 * sweep),
            "socket_timeout": 30,
        },
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
    )


# `celery -A workers flower` reads FacePic's Flower configuration from any folder: loopback by
# default, and no other address without a login.
os.environ.setdefault("FLOWER_CONF", str(Path(__file__).with_name("flowerconfig.py")))

app = make_app()
