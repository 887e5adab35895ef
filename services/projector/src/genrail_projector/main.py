"""The projector: every read model, each following its stream from its own checkpoint."""

from __future__ import annotations

import asyncio
import signal

from genrail_readmodels import registry, runner
from genrail_runtime import eventloop, logs, telemetry

from .bootstrap import open_projector
from .settings import ProjectorSettings


async def main(settings: ProjectorSettings) -> None:
    async with open_projector(settings) as projector:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.gather(*(runner.follow(projector.nc, projector.engine, factory, stop=stop,
                                             batch_size=settings.projector_batch_size)
                               for factory in registry.FACTORIES))


def run() -> None:
    settings = ProjectorSettings()
    logs.configure("projector", settings.log_level)
    telemetry.setup("projector", settings)
    eventloop.run(main(settings))
