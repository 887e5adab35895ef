"""`genrail init`: what a deployment needs before its services start."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from .options import NATS_URL, NatsUrl, prose

console = Console()


async def _init(nats_url: str, replicas: int) -> None:
    from genrail_eventlog.store import open_log
    from genrail_events import streams
    from genrail_storage.settings import StorageSettings

    async with open_log(nats_url, "genrail-init", replicas=replicas):
        console.print(f"streams {', '.join(s.name for s in streams.ALL)}: in place, {replicas} replica(s) each")
    settings = StorageSettings()
    storage = settings.open()
    try:
        made = await storage.create()
    finally:
        await storage.close()
    console.print(f"storage {settings.storage_url}: {'created' if made else 'already there'}")


@prose
def init_command(
    nats_url: NatsUrl = NATS_URL,
    replicas: Annotated[int, typer.Option("--replicas", envvar="STREAM_REPLICAS", min=1,
                                          help="Replicas of each stream (3 in a cluster)")] = 1,
) -> None:
    """Prepare a deployment before its services start: every stream of the log, created or
    updated with REPLICAS replicas, and the bucket (or directory) STORAGE_URL names, with the
    S3_* settings. Safe to run again: what exists is kept. deploy/ runs it as a one-shot job
    that the services wait for."""
    asyncio.run(_init(nats_url, replicas))
