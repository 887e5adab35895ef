"""The webhook receiver's app. Callbacks are verified, then become events: this service
writes nothing but events. What the routes use is opened in `bootstrap`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genrail_runtime import logs, telemetry
from genrail_runtime.body_limit import BodySizeLimit
from genrail_runtime.health import add_health_routes
from genrail_runtime.http_server import serve
from genrail_runtime.unhandled import AnswerUnhandledErrors

from . import replicate, stripe
from .bootstrap import open_webhooks
from .settings import WebhooksSettings


def create_app(settings: WebhooksSettings | None = None) -> FastAPI:
    settings = settings or WebhooksSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_webhooks(settings) as resources:
            app.state.resources = resources
            yield

    app = FastAPI(title="genrail webhooks", version="0.1.0", lifespan=lifespan, telemetry=telemetry.fastapi_telemetry(),
                  description="Signed callbacks from providers and payment events.")
    app.state.settings = settings
    app.include_router(stripe.router)
    app.include_router(replicate.router)

    app.add_middleware(BodySizeLimit, max_bytes=settings.webhooks_max_body_bytes)
    app.add_middleware(AnswerUnhandledErrors)  # outermost of ours: keep-alive survives an unexpected error

    add_health_routes(app, lambda request: {"event log": request.app.state.resources.store.js.account_info})

    telemetry.instrument_app(app, serve_metrics=not settings.metrics_port)
    return app


def run() -> None:
    settings = WebhooksSettings()
    logs.configure("webhooks", settings.log_level)
    telemetry.setup("webhooks", settings)
    serve(create_app(settings), host=settings.webhooks_host, port=settings.webhooks_port,
          header_timeout_s=settings.http_header_timeout_s, timeout_keep_alive=75, limit_concurrency=1000,
          timeout_graceful_shutdown=30)
