"""The pipeline's composition root: its one NATS connection, the store, HTTP client, media
storage, database engine and providers, and the table of its durable consumers, opened and
closed in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from genrail_events import jobs, subjects
from genrail_eventlog.consumers import DurableConsumer, declare_consumers
from genrail_eventlog.lag import ConsumerLag
from genrail_eventlog.store import CONNECT_OPTIONS, EventStore, ensure_streams
from genrail_readmodels.db import make_engine
from genrail_runtime.background import Background
from genrail_storage.store import Storage

from .deadlines import DeadlineSweeper, cancel_at_provider
from .limits import Limiter
from .providers import Providers
from .settings import PipelineSettings
from .worker import Worker

CANCELLATIONS_MAX_DELIVER = 10


@dataclass(frozen=True)
class Pipeline:
    """What the pipeline's consumers and its deadline sweeper run on."""

    settings: PipelineSettings
    nc: NATS  # the broker's own connection: the process's only one
    store: EventStore
    http: httpx.AsyncClient
    storage: Storage
    engine: AsyncEngine
    providers: Providers
    worker: Worker
    sweeper: DeadlineSweeper


def broker(settings: PipelineSettings) -> NatsBroker:
    """The process's NATS connection. FastStream logs each message at log_level (DEBUG),
    below the service's level; graceful_timeout is how long shutdown waits for handlers."""
    return NatsBroker(settings.nats_url, name="genrail-pipeline", **CONNECT_OPTIONS, log_level=10,
                      graceful_timeout=30)


def consumers(pipeline: Pipeline) -> list[DurableConsumer]:
    """Every durable consumer of the pipeline: the work on job.created and job.retried, and
    the cancellation of canceled jobs' predictions at the provider."""
    settings, worker = pipeline.settings, pipeline.worker
    return [
        # max_workers: fetched jobs go to a pool of workers, so one slow provider call does
        # not hold back the next fetch (a plain pull subscriber waits for the whole batch).
        DurableConsumer("JOBS", "pipeline", (subjects.JOB_CREATED_ALL, subjects.JOB_RETRIED_ALL),
                        handler=lambda event, delivery: worker.handle(event, delivery.sequence.stream,
                                                                      delivery.num_delivered),
                        on_exhausted=lambda event, reason: worker.fail(event.aggregate_id, reason),
                        max_deliver=settings.pipeline_max_deliver, ack_wait_s=settings.pipeline_ack_wait_s,
                        batch_size=settings.pipeline_batch_size,
                        max_workers=settings.pipeline_max_concurrent),
        DurableConsumer("JOBS", "pipeline-cancellations", subjects.job_transitions_to(jobs.JobStatus.canceled),
                        handler=lambda event, _delivery: cancel_at_provider(
                            pipeline.store, pipeline.providers, event.data),
                        max_deliver=CANCELLATIONS_MAX_DELIVER),
    ]


@asynccontextmanager
async def open_pipeline(settings: PipelineSettings, broker: NatsBroker,
                        background: Background) -> AsyncIterator[Pipeline]:
    """Connect the broker, make sure the streams and the consumers exist, open the clients,
    subscribe to the consumers and start the deadline sweeper and the lag reader. Entered
    before the broker starts and left after it stopped: the broker drains the connection,
    and the clients are closed once in-flight jobs are done."""
    async with AsyncExitStack() as opened:  # closed in reverse order
        nc = await broker.connect()
        store = EventStore(nc)
        await ensure_streams(store.js, replicas=settings.stream_replicas,
                             duplicate_window_s=settings.stream_duplicate_window_s)
        engine = make_engine(settings.database_url, pool_size=2)
        opened.push_async_callback(engine.dispose)
        storage = settings.open()
        opened.push_async_callback(storage.close)
        http = await opened.enter_async_context(httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0), limits=httpx.Limits(max_connections=200)))
        providers = Providers(settings, http, storage)
        limiter = Limiter(settings.pipeline_max_per_user, {"image_edit": settings.pipeline_max_image_edits,
                                                           "scrape": settings.pipeline_max_scrapes},
                          max_waiting=settings.pipeline_max_waiting_per_user)
        pipeline = Pipeline(settings, nc, store, http, storage, engine, providers,
                            worker=Worker(store, providers, settings, limiter),
                            sweeper=DeadlineSweeper(store, engine, storage, providers, settings))
        table = consumers(pipeline)
        await declare_consumers(broker, store.js, table)
        lag = ConsumerLag(store.js, [(c.stream, c.durable) for c in table])
        background.start(pipeline.sweeper.run, lag.run)
        opened.push_async_callback(background.stop)
        yield pipeline
