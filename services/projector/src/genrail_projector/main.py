"""The projector: every read model, each following its stream from its own checkpoint."""

from __future__ import annotations

import asyncio
import signal

from genrail_eventlog.store import connect, ensure_streams
from genrail_readmodels import registry, runner
from genrail_readmodels.db import create_schema, make_engine
from genrail_runtime import logs, telemetry
from genrail_runtime.settings import CommonSettings


async def main(settings: CommonSettings) -> None:
    nc = await connect(settings.nats_url, "genrail-projector")
    await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas,
                         duplicate_window_s=settings.stream_duplicate_window_s)
    engine = make_engine(settings.database_url, pool_size=4)
    await create_schema(engine, registry.ddl())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(*(runner.follow(nc, engine, factory, stop=stop) for factory in registry.FACTORIES))
    await nc.drain()
    await engine.dispose()


def run() -> None:
    settings = CommonSettings()
    logs.configure("projector", settings.log_level)
    telemetry.setup("projector", settings)
    asyncio.run(main(settings))
