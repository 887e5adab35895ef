"""The webhook receiver's composition root: its NATS connection and store, media storage and
the HTTP client that downloads provider outputs, opened at start-up and closed at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from nats.aio.client import Client as NATS

from genrail_eventlog.store import EventStore, open_log
from genrail_runtime.guarded_http import FetchPolicy, guarded_client
from genrail_storage.store import Storage

from .settings import WebhooksSettings


@dataclass(frozen=True)
class WebhooksResources:
    """What the routes use, through the dependencies in `deps` (settings are apart, on
    `app.state.settings`: they exist before anything is opened)."""

    nc: NATS
    store: EventStore
    storage: Storage
    http: httpx.AsyncClient


@asynccontextmanager
async def open_webhooks(settings: WebhooksSettings) -> AsyncIterator[WebhooksResources]:
    async with AsyncExitStack() as opened:  # closed in reverse order
        store = await opened.enter_async_context(open_log(
            settings.nats_url, "genrail-webhooks", replicas=settings.stream_replicas,
            duplicate_window_s=settings.stream_duplicate_window_s))
        nc = store.nc
        storage = settings.open()
        opened.push_async_callback(storage.close)
        # Only provider outputs are fetched here: URLs a provider gave, so through the guard.
        http = await opened.enter_async_context(
            guarded_client(FetchPolicy.allowing(settings.fetch_allow_entries()), timeout_s=30.0))
        yield WebhooksResources(nc, store, storage, http)
