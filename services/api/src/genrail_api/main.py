"""The API's composition root: connections are made here, at start-up, and nowhere else."""

from __future__ import annotations

import logging
import secrets
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from genrail_runtime import logs, telemetry
from genrail_readmodels import registry
from genrail_readmodels.db import make_engine, wait_for_tables
from genrail_eventlog.store import EventStore, connect, ensure_streams

from . import errors
from genrail_runtime.body_limit import BodySizeLimit
from .routes import admin, batches, billing, credits, generate, jobs, media, uploads, users
from .settings import ApiSettings

log = logging.getLogger("genrail.api")

DESCRIPTION = """
Pay credits for AI generation jobs and follow them to their results.

Register with `POST /api/users` to get an API key (shown once) and free credits, then send
`Authorization: Bearer <api_key>` with every other request. Creating a job charges its cost
at once; a job that fails, expires or is canceled is refunded automatically. Send an
`idempotency_key` to make a request safe to repeat: the same key always names the same job.

Errors are `{"detail": "..."}`; a 402 also carries `balance` and `cost`.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nc = await connect(settings.nats_url, "genrail-api")
        store = EventStore(nc)
        await ensure_streams(store.js, replicas=settings.stream_replicas,
                             duplicate_window_s=settings.stream_duplicate_window_s)
        engine = make_engine(settings.database_url, pool_size=20)
        telemetry.instrument_engine(engine)
        await wait_for_tables(engine, registry.tables())  # the projector creates them
        if not settings.media_url_secret.get_secret_value():
            log.warning("media_url_secret is not set: using a random one, so media URLs break on restart "
                        "and differ between replicas; set MEDIA_URL_SECRET")
            settings.media_url_secret = SecretStr(secrets.token_urlsafe(32))
        app.state.settings, app.state.log, app.state.engine, app.state.key_cache = settings, store, engine, {}
        app.state.storage = settings.open()
        yield
        await app.state.storage.close()
        await nc.drain()
        await engine.dispose()

    app = FastAPI(title="genrail API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    for router in (users.router, generate.router, jobs.router, credits.router, billing.router, admin.router,
                   media.router, uploads.router, batches.router):
        app.include_router(router)

    @app.get("/healthz", tags=["health"], summary="The API is up and connected")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       overrides={"/api/uploads": settings.upload_max_bytes + 64 * 1024})
    telemetry.instrument_app(app)
    return app


def run() -> None:
    settings = ApiSettings()
    logs.configure("api", settings.log_level)
    telemetry.setup("api", settings)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None,
                access_log=False, lifespan="on")
