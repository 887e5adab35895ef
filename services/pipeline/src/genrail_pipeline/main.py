"""The pipeline service: the durable work consumer on job.created and job.retried, the
consumer that cancels predictions of canceled jobs, and the deadline sweeper. Everything
they use is built in `bootstrap`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream import FastStream

from genrail_runtime import eventloop, logs, telemetry
from genrail_runtime.background import Background

from . import bootstrap
from .settings import PipelineSettings


def create_app(settings: PipelineSettings) -> FastStream:
    broker, background = bootstrap.broker(settings), Background()

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with bootstrap.open_pipeline(settings, broker, background):
            yield

    # The sweeper and the lag reader stop before the broker drains the connection they use.
    return FastStream(broker, lifespan=lifespan, on_shutdown=[background.stop])


def run() -> None:
    settings = PipelineSettings()
    telemetry.setup("pipeline", settings)
    logs.configure("pipeline", settings.log_level)
    eventloop.run(create_app(settings).run())
