"""FastAPI dependencies: what `bootstrap` opened."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from genrail_eventlog.store import EventStore
from genrail_storage.store import Storage

from .bootstrap import WebhooksResources
from .settings import WebhooksSettings


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop per request for a dictionary lookup.
def get_resources(request: Request) -> WebhooksResources:
    return request.app.state.resources


async def get_settings(request: Request) -> WebhooksSettings:
    return request.app.state.settings


async def get_log(request: Request) -> EventStore:
    return get_resources(request).store


async def get_storage(request: Request) -> Storage:
    return get_resources(request).storage


async def get_http(request: Request) -> httpx.AsyncClient:
    return get_resources(request).http


SettingsDep = Annotated[WebhooksSettings, Depends(get_settings)]
LogDep = Annotated[EventStore, Depends(get_log)]
StorageDep = Annotated[Storage, Depends(get_storage)]
HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]
