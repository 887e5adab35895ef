"""The webhook receiver's composition root. Callbacks are verified, then become events:
this service writes nothing but events."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from genrail_runtime import logs, telemetry
from genrail_runtime.body_limit import BodySizeLimit
from genrail_eventlog.store import EventStore, connect, ensure_streams

from . import replicate, stripe
from .settings import WebhooksSettings


def create_app(settings: WebhooksSettings | None = None) -> FastAPI:
    settings = settings or WebhooksSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nc = await connect(settings.nats_url, "genrail-webhooks")
        await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas,
                             duplicate_window_s=settings.stream_duplicate_window_s)
        app.state.settings, app.state.log = settings, EventStore(nc)
        app.state.storage = settings.open()
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        yield
        await app.state.http.aclose()
        await app.state.storage.close()
        await nc.drain()

    app = FastAPI(title="genrail webhooks", version="0.1.0", lifespan=lifespan,
                  description="Signed callbacks from providers and payment events.")
    app.include_router(stripe.router)
    app.include_router(replicate.router)

    app.add_middleware(BodySizeLimit, max_bytes=settings.webhooks_max_body_bytes)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    telemetry.instrument_app(app)
    return app


def run() -> None:
    settings = WebhooksSettings()
    logs.configure("webhooks", settings.log_level)
    telemetry.setup("webhooks", settings)
    uvicorn.run(create_app(settings), host=settings.webhooks_host, port=settings.webhooks_port, log_config=None,
                access_log=False)
