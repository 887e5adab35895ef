"""The API app: routes, errors and middleware. What the routes use is opened in `bootstrap`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from genrail_runtime import logs, telemetry
from genrail_runtime.body_limit import BodySizeLimit
from genrail_runtime.health import add_health_routes
from genrail_runtime.http_server import serve
from genrail_runtime.unhandled import AnswerUnhandledErrors

from . import errors
from .accounts import keys as account_keys
from .accounts import routes as account_routes
from .accounts import sessions as account_sessions
from .bootstrap import open_api
from .routes import admin, batches, billing, credits, generate, jobs, media, packs, uploads, users, webhooks
from .settings import ApiSettings
from .studio import pages as studio_pages
from .studio.templating import STATIC_DIR

DESCRIPTION = """
Pay credits for AI generation jobs and follow them to their results.

Register with `POST /v1/users` to get an API key (shown once) and free credits, then send
`Authorization: Bearer <api_key>` with every other request. Creating a job charges its cost
at once; a job that fails, expires or is canceled is refunded automatically. Send an
`Idempotency-Key` header (or the `idempotency_key` field) to make a request safe to repeat:
the same key always names the same job, and answers `Idempotent-Replayed: true` when it did.

Errors are RFC 9457 problem details (`application/problem+json`): `type`
(`urn:genrail:problem:<kind>`, for programs), `title`, `status` and `detail` (in words); a 402
also carries `balance` and `cost`.

Every route is under `/v1`. The unversioned `/api/...` paths of earlier releases answer the
same until 2027-06-30 and are marked deprecated.
"""


VERSION_PREFIX = "/v1"
LEGACY_PREFIX = "/api"  # deprecated: answered like /v1 until LEGACY_REMOVAL
LEGACY_REMOVAL = "2027-06-30"


def operation_id(route: APIRoute) -> str:
    """Stable, readable operation ids: `<tag>_<handler>` (`jobs_get_job`), or the handler's name
    when it already starts with its tag (`generate_copy`)."""
    tag = route.tags[0] if route.tags else ""
    return route.name if not tag or route.name.startswith(tag.rstrip("s")) else f"{tag}_{route.name}"


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_api(settings) as resources:
            app.state.resources = resources
            yield

    app = FastAPI(title="genrail API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  telemetry=telemetry.fastapi_telemetry())
    app.state.settings = settings
    errors.install(app)
    for router in (users.router, generate.router, jobs.router, credits.router, billing.router, packs.router,
                   admin.router, media.router, uploads.router, batches.router, webhooks.router):
        app.include_router(router, prefix=VERSION_PREFIX, generate_unique_id_function=operation_id)
        # The unversioned paths of earlier releases, the same handlers, until LEGACY_REMOVAL.
        app.include_router(router, prefix=LEGACY_PREFIX, deprecated=True,
                           generate_unique_id_function=lambda route: f"legacy_{operation_id(route)}")

    add_health_routes(app, _dependencies)

    # Accounts: API keys for programs (/v1 only), sign-in and sign-out pages, session cookies.
    app.include_router(account_keys.router, prefix=VERSION_PREFIX, generate_unique_id_function=operation_id)
    app.include_router(account_routes.router, include_in_schema=False)
    account_sessions.install(app)

    # The web studio: HTML pages outside /v1, kept out of the OpenAPI document.
    for router in studio_pages.routers():
        app.include_router(router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       overrides={f"{prefix}/uploads": settings.upload_max_bytes + 64 * 1024
                                  for prefix in (VERSION_PREFIX, LEGACY_PREFIX, "/batches")})
    app.add_middleware(account_sessions.CsrfCookie, secure=account_sessions.secure_cookies(settings))
    app.add_middleware(AnswerUnhandledErrors)  # outermost of ours: keep-alive survives an unexpected error
    telemetry.instrument_app(app, serve_metrics=not settings.metrics_port)
    return app


def _dependencies(request: Request) -> dict[str, Callable[[], Awaitable[object]]]:
    resources = request.app.state.resources

    async def database() -> None:
        async with resources.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    return {"event log": resources.store.js.account_info, "database": database}


def run() -> None:
    settings = ApiSettings()
    logs.configure("api", settings.log_level)
    telemetry.setup("api", settings)
    serve(create_app(settings), host=settings.api_host, port=settings.api_port,
          header_timeout_s=settings.http_header_timeout_s, lifespan="on", timeout_keep_alive=settings.api_keep_alive_s,
          limit_concurrency=settings.api_max_concurrency, timeout_graceful_shutdown=30)
