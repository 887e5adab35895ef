"""The pipeline's composition root: its one NATS connection, the store, HTTP client, media
storage, database engine and providers, and the table of its durable consumers, opened and
closed in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from dataclasses import dataclass

import httpx
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from genrail_events import jobs, subjects
from genrail_eventlog.consumers import DurableConsumer, declare_consumers
from genrail_eventlog.lag import ConsumerLag
from genrail_eventlog.store import EventStore, open_log
from genrail_readmodels.db import make_engine
from genrail_runtime.background import Background
from genrail_runtime.guarded_http import FetchPolicy, guarded_client
from genrail_storage.store import Storage

from .deadlines import DeadlineSweeper, cancel_at_provider
from .limits import Limiter
from .providers import Providers
from .settings import PipelineSettings
from .webhook_endpoints import EndpointDirectory
from .webhooks_out import WebhookDelivery, WebhookFanOut
from .worker import Worker

CANCELLATIONS_MAX_DELIVER = 10


@dataclass(frozen=True)
class Pipeline:
    """What the pipeline's consumers and its deadline sweeper run on."""

    settings: PipelineSettings
    nc: NATS  # the process's only connection
    store: EventStore
    http: httpx.AsyncClient
    storage: Storage
    engine: AsyncEngine
    providers: Providers
    worker: Worker
    sweeper: DeadlineSweeper
    endpoints: EndpointDirectory
    fan_out: WebhookFanOut
    deliveries: WebhookDelivery


def consumers(pipeline: Pipeline) -> list[DurableConsumer]:
    """Every durable consumer of the pipeline: the work on job.created and job.retried, and
    the cancellation of canceled jobs' predictions at the provider, and the webhooks genrail
    sends: messages made from job transitions, then delivered (webhooks_out)."""
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
        DurableConsumer("JOBS", "webhooks-out", (subjects.JOB_TRANSITIONED_ALL,),
                        handler=lambda event, _delivery: pipeline.fan_out.handle(event),
                        max_deliver=CANCELLATIONS_MAX_DELIVER, batch_size=64),
        # Its own consumer, so a slow or dead receiver holds back only other webhooks.
        DurableConsumer("WEBHOOKS", "webhooks-deliver", subjects.WEBHOOK_MESSAGES_TO_SEND,
                        handler=lambda event, delivery: pipeline.deliveries.handle(event, delivery.num_delivered),
                        max_deliver=pipeline.deliveries.max_deliver, batch_size=64,
                        ack_wait_s=settings.outgoing_webhook_timeout_s + 20),
    ]


@asynccontextmanager
async def open_pipeline(settings: PipelineSettings, background: Background) -> AsyncIterator[Pipeline]:
    """Connect, make sure the streams and the consumers exist, open the clients, and start
    reading the consumers, the deadline sweeper and the lag reader in `background`. On
    leaving, in reverse order: the background stops (jobs in hand finish), the clients
    close, the connection drains."""
    async with AsyncExitStack() as opened:  # closed in reverse order
        store = await opened.enter_async_context(open_log(
            settings.nats_url, "genrail-pipeline", replicas=settings.stream_replicas,
            duplicate_window_s=settings.stream_duplicate_window_s))
        nc = store.nc
        engine = make_engine(settings.database_url, pool_size=2)
        opened.push_async_callback(engine.dispose)
        storage = settings.open()
        opened.push_async_callback(storage.close)
        http = await opened.enter_async_context(httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0), limits=httpx.Limits(max_connections=200)))
        fetcher = await opened.enter_async_context(
            guarded_client(FetchPolicy.allowing(settings.fetch_allow_entries()), timeout_s=30.0))
        providers = Providers(settings, http, storage, fetcher)
        limiter = Limiter(settings.pipeline_max_per_user, {"image_edit": settings.pipeline_max_image_edits,
                                                           "scrape": settings.pipeline_max_scrapes},
                          max_waiting=settings.pipeline_max_waiting_per_user)
        pipeline = Pipeline(settings, nc, store, http, storage, engine, providers,
                            worker=Worker(store, providers, settings, limiter),
                            sweeper=DeadlineSweeper(store, engine, storage, providers, settings),
                            endpoints=(endpoints := EndpointDirectory()),
                            fan_out=WebhookFanOut(store, endpoints, settings),
                            deliveries=WebhookDelivery(store, fetcher, endpoints, settings))
        table = consumers(pipeline)
        background.start(*await declare_consumers(store.js, table, graceful_s=30))
        lag = ConsumerLag(store.js, [(c.stream, c.durable) for c in table])
        background.start(pipeline.sweeper.run, lag.run, partial(endpoints.follow, store))
        opened.push_async_callback(background.stop)
        yield pipeline
