"""The Celery app the API publishes with and the worker consumes from.

Configuration (env): CRUD_BROKER_URL (redis://...).
"""

from __future__ import annotations

import os

from celery import Celery

COPY_TASK = "crud.copy"

app = Celery("crud", broker=os.environ.get("CRUD_BROKER_URL", "redis://127.0.0.1:6379/0"),
             include=["bench.crud.tasks"])
app.conf.update(
    # No result backend: the job row is the result, so nothing is written back to Redis.
    task_ignore_result=True,
    result_backend=None,
    task_serializer="json",
    accept_content=["json"],
    # Celery's default early ack: a task is acked when the worker takes it. acks_late would
    # cost a broker round trip more per task.
    task_acks_late=False,
    # Short tasks: the worker holds many in hand instead of asking the broker for each.
    worker_prefetch_multiplier=int(os.environ.get("CRUD_PREFETCH", "64")),
    worker_disable_rate_limits=True,
    broker_pool_limit=int(os.environ.get("CRUD_BROKER_POOL", "10")),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
)
