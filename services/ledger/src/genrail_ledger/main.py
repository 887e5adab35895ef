"""The ledger service: credit policies on durable consumers. Its read models (balances and
entries) are projected by the projector, like every other table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream import FastStream

from genrail_runtime import eventloop, logs, telemetry
from genrail_runtime.background import Background

from . import bootstrap
from .settings import LedgerSettings


def create_app(settings: LedgerSettings) -> FastStream:
    broker, background = bootstrap.broker(settings), Background()

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with bootstrap.open_ledger(settings, broker, background):
            yield

    # The lag reader stops before the broker drains the connection it reads on.
    return FastStream(broker, lifespan=lifespan, on_shutdown=[background.stop])


def run() -> None:
    settings = LedgerSettings()
    telemetry.setup("ledger", settings)
    logs.configure("ledger", settings.log_level)
    eventloop.run(create_app(settings).run())
