"""The projector: follows JOBS and USERS into the tables the API serves."""

from __future__ import annotations

import asyncio
import signal

from genrail_platform import logs, projection, telemetry
from genrail_platform.db import create_schema, make_engine
from genrail_platform.eventstore import connect, ensure_streams
from genrail_platform.settings import CommonSettings

from . import batches, jobs, users


FACTORIES = (jobs.make, users.make, batches.make)


async def main(settings: CommonSettings) -> None:
    nc = await connect(settings.nats_url, "genrail-projector")
    await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas,
                             duplicate_window_s=settings.stream_duplicate_window_s)
    engine = make_engine(settings.database_url, pool_size=4)
    await create_schema(engine, [s for factory in FACTORIES for s in factory().ddl])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(*(projection.follow(nc, engine, factory, stop=stop) for factory in FACTORIES))
    await nc.drain()
    await engine.dispose()


def run() -> None:
    settings = CommonSettings()
    logs.configure("projector", settings.log_level)
    telemetry.setup("projector", settings)
    asyncio.run(main(settings))
