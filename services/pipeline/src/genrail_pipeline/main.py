"""The pipeline's composition root: the durable work consumer on job.created and
job.retried, the consumer that cancels predictions of canceled jobs, and the deadline sweeper."""

from __future__ import annotations

import asyncio

import httpx
from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

from genrail_events import subjects
from genrail_runtime import logs, telemetry
from genrail_eventlog.consumers import ensure_consumer, settle
from genrail_readmodels.db import make_engine
from genrail_eventlog.store import EventStore, connect, ensure_streams
from genrail_eventlog.lag import ConsumerLag

from .deadlines import DeadlineSweeper, cancel_at_provider
from .limits import Limiter
from .providers import Providers
from .settings import PipelineSettings
from .worker import Worker

DURABLE = "pipeline"
WORK_SUBJECTS = [subjects.JOB_CREATED_ALL, subjects.JOB_RETRIED_ALL]
CANCELLATIONS = "pipeline-cancellations"
CANCELLATIONS_MAX_DELIVER = 10


def create_app(settings: PipelineSettings) -> FastStream:
    broker = NatsBroker(settings.nats_url, log_level=10, graceful_timeout=30)
    app = FastStream(broker)
    state: dict = {}
    stop = asyncio.Event()

    # max_workers: fetched jobs go to a pool of workers, so one slow provider call does not
    # hold back the next fetch (a plain pull subscriber waits for the whole batch). Fetch
    # timeouts stay >= 1 s: FastStream's pull loop restarts on the asyncio.TimeoutError
    # nats-py raises when a short fetch deadline runs out, which costs a pause each time.
    @broker.subscriber("job.>", stream=JStream("JOBS", declare=False), durable=DURABLE,
                       pull_sub=PullSub(batch_size=settings.pipeline_batch_size, timeout=1.0),
                       max_workers=settings.pipeline_max_concurrent, ack_policy=AckPolicy.MANUAL)
    async def on_job(msg: NatsMessage) -> None:
        worker: Worker = state["worker"]
        meta = msg.raw_message.metadata
        await settle(msg.raw_message, state["store"].js, consumer=DURABLE,
                     max_deliver=settings.pipeline_max_deliver,
                     work=lambda event: worker.handle(event, meta.sequence.stream, meta.num_delivered),
                     on_exhausted=lambda event, reason: worker.fail(event.aggregate_id, reason))

    @broker.subscriber(subjects.JOB_TRANSITIONED_ALL, stream=JStream("JOBS", declare=False), durable=CANCELLATIONS,
                       pull_sub=PullSub(batch_size=100, timeout=1.0), ack_policy=AckPolicy.MANUAL)
    async def on_transitioned(msg: NatsMessage) -> None:
        await settle(msg.raw_message, state["store"].js, consumer=CANCELLATIONS,
                     max_deliver=CANCELLATIONS_MAX_DELIVER,
                     work=lambda event: cancel_at_provider(state["store"], state["providers"], event.data))

    @app.on_startup
    async def prepare() -> None:
        logs.configure("pipeline", settings.log_level)
        nc = await connect(settings.nats_url, "genrail-pipeline")
        js = nc.jetstream()
        await ensure_streams(js, replicas=settings.stream_replicas,
                             duplicate_window_s=settings.stream_duplicate_window_s)
        await ensure_consumer(js, "JOBS", DURABLE, WORK_SUBJECTS, max_deliver=settings.pipeline_max_deliver,
                              ack_wait_s=settings.pipeline_ack_wait_s)
        await ensure_consumer(js, "JOBS", CANCELLATIONS, [subjects.JOB_TRANSITIONED_ALL],
                              max_deliver=CANCELLATIONS_MAX_DELIVER)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0),
                                 limits=httpx.Limits(max_connections=200))
        store, storage = EventStore(nc), settings.open()
        providers = Providers(settings, http, storage)
        limiter = Limiter(settings.pipeline_max_per_user,
                          {"image_edit": settings.pipeline_max_image_edits, "scrape": settings.pipeline_max_scrapes})
        engine = make_engine(settings.database_url, pool_size=2)
        sweeper = DeadlineSweeper(store, engine, storage, providers, settings)
        state.update(nc=nc, store=store, http=http, storage=storage, engine=engine, providers=providers,
                     worker=Worker(store, providers, settings, limiter), sweeper=asyncio.create_task(sweeper.run(stop)))
        lag = ConsumerLag(js, [("JOBS", DURABLE), ("JOBS", CANCELLATIONS)])
        state["lag"] = asyncio.create_task(lag.run(stop))

    @app.on_shutdown
    async def close() -> None:
        stop.set()
        await state["sweeper"]
        await state["lag"]
        await state["http"].aclose()
        await state["storage"].close()
        await state["engine"].dispose()
        await state["nc"].drain()

    return app


def run() -> None:
    settings = PipelineSettings()
    telemetry.setup("pipeline", settings)
    asyncio.run(create_app(settings).run())
