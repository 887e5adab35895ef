"""The projector's composition root: its NATS connection and the database engine, with the
read models' schema in place, opened at start-up and closed at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from genrail_eventlog.store import open_log
from genrail_readmodels import registry
from genrail_readmodels.db import create_schema, make_engine
from genrail_runtime.settings import CommonSettings


@dataclass(frozen=True)
class Projector:
    """What every projection follows the log with and writes to."""

    nc: NATS
    engine: AsyncEngine


@asynccontextmanager
async def open_projector(settings: CommonSettings) -> AsyncIterator[Projector]:
    async with AsyncExitStack() as opened:  # closed in reverse order
        engine = make_engine(settings.database_url, pool_size=4)
        opened.push_async_callback(engine.dispose)
        store = await opened.enter_async_context(open_log(
            settings.nats_url, "genrail-projector", replicas=settings.stream_replicas,
            duplicate_window_s=settings.stream_duplicate_window_s))
        nc = store.nc
        await create_schema(engine, registry.ddl())
        yield Projector(nc, engine)
