"""The pipeline service: the durable work consumer on job.created and job.retried, the
consumer that cancels predictions of canceled jobs, and the deadline sweeper. Everything
they use is built in `bootstrap`."""

from __future__ import annotations

from genrail_runtime import eventloop, logs, telemetry
from genrail_runtime.background import Background

from . import bootstrap
from .settings import PipelineSettings


async def main(settings: PipelineSettings) -> None:
    background = Background()
    async with bootstrap.open_pipeline(settings, background):
        await eventloop.until_stopped()
        await background.stop()  # fetches end, jobs in hand finish, then the clients close


def run() -> None:
    settings = PipelineSettings()
    telemetry.setup("pipeline", settings)
    logs.configure("pipeline", settings.log_level)
    eventloop.run(main(settings))
