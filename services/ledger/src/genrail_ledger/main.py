"""The ledger service: credit policies on durable consumers. Its read models (balances and
entries) are projected by the projector, like every other table."""

from __future__ import annotations

from genrail_runtime import eventloop, logs, telemetry
from genrail_runtime.background import Background

from . import bootstrap
from .settings import LedgerSettings


async def main(settings: LedgerSettings) -> None:
    background = Background()
    async with bootstrap.open_ledger(settings, background):
        await eventloop.until_stopped()
        await background.stop()  # fetches end and handlers finish before the connection drains


def run() -> None:
    settings = LedgerSettings()
    telemetry.setup("ledger", settings)
    logs.configure("ledger", settings.log_level)
    eventloop.run(main(settings))
