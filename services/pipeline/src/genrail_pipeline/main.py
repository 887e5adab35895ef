"""The pipeline's composition root: a durable work consumer on job.created and job.retried."""

from __future__ import annotations

import asyncio

import httpx
from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

from genrail_events import subjects
from genrail_platform import logs
from genrail_platform.consumers import ensure_consumer, settle
from genrail_platform.eventstore import EventStore, connect, ensure_streams

from .providers import Providers
from .settings import PipelineSettings
from .worker import Worker

DURABLE = "pipeline"
WORK_SUBJECTS = [subjects.JOB_CREATED_ALL, subjects.JOB_RETRIED_ALL]


def create_app(settings: PipelineSettings) -> FastStream:
    broker = NatsBroker(settings.nats_url, log_level=10, graceful_timeout=30)
    app = FastStream(broker)
    state: dict = {}

    @broker.subscriber("job.>", stream=JStream("JOBS", declare=False), durable=DURABLE,
                       pull_sub=PullSub(batch_size=settings.pipeline_batch_size, timeout=0.2),
                       ack_policy=AckPolicy.MANUAL)
    async def on_job(msg: NatsMessage) -> None:
        worker: Worker = state["worker"]
        await settle(msg.raw_message, state["store"].js, consumer=DURABLE,
                     max_deliver=settings.pipeline_max_deliver, work=worker.handle,
                     on_exhausted=lambda event, reason: worker.fail(event.aggregate_id, reason))

    @app.on_startup
    async def prepare() -> None:
        logs.configure("pipeline", settings.log_level)
        nc = await connect(settings.nats_url, "genrail-pipeline")
        await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas,
                             duplicate_window_s=settings.stream_duplicate_window_s)
        await ensure_consumer(nc.jetstream(), "JOBS", DURABLE, WORK_SUBJECTS, max_deliver=settings.pipeline_max_deliver,
                              ack_wait_s=settings.pipeline_ack_wait_s)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0),
                                 limits=httpx.Limits(max_connections=200))
        store = EventStore(nc)
        state.update(nc=nc, store=store, http=http, worker=Worker(store, Providers(settings, http), settings))

    @app.on_shutdown
    async def close() -> None:
        await state["http"].aclose()
        await state["nc"].drain()

    return app


def run() -> None:
    asyncio.run(create_app(PipelineSettings()).run())
