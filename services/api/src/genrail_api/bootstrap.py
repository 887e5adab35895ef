"""The API's composition root: its NATS connection and store, the database engine, media
storage and the Stripe Checkout client, opened at start-up and closed at shutdown, here and
nowhere else."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from genrail_commands.accounts import writer_for
from genrail_eventlog.store import EventStore, open_log
from genrail_readmodels import registry
from genrail_readmodels.db import create_schema, make_engine, wait_for_tables
from genrail_runtime import telemetry
from genrail_storage.store import Storage

from . import rate_limits
from .accounts.usage import DDL as KEY_USAGE_DDL
from .accounts.usage import KeyUsage
from .key_cache import KeyCache
from .settings import ApiSettings
from .stripe_checkout import StripeCheckout

log = logging.getLogger("genrail.api")


@dataclass(frozen=True)
class ApiResources:
    """What the routes use, through the dependencies in `deps` (settings are apart, on
    `app.state.settings`: they exist before anything is opened)."""

    nc: NATS
    store: EventStore
    engine: AsyncEngine
    storage: Storage
    stripe_checkout: StripeCheckout | None  # None: billing is not configured (no STRIPE_API_KEY)
    key_cache: KeyCache = field(default_factory=KeyCache)  # API key hash -> user id, for a short while
    key_usage: KeyUsage = field(default_factory=KeyUsage)  # writes each key's last use, once a minute


@asynccontextmanager
async def open_api(settings: ApiSettings) -> AsyncIterator[ApiResources]:
    async with AsyncExitStack() as opened:  # closed in reverse order
        engine = make_engine(settings.database_url, pool_size=20)
        opened.push_async_callback(engine.dispose)
        store = await opened.enter_async_context(open_log(
            settings.nats_url, "genrail-api", replicas=settings.stream_replicas,
            duplicate_window_s=settings.stream_duplicate_window_s))
        nc = store.nc
        writer_for(store, remember=True)  # the API writes nearly every entry of an account: debits
        telemetry.instrument_engine(engine)
        await wait_for_tables(engine, registry.tables())  # the projector creates them
        await create_schema(engine, [rate_limits.DDL, KEY_USAGE_DDL])  # the API's own tables
        if not settings.media_url_secret.get_secret_value():
            log.warning("media_url_secret is not set: using a random one, so media URLs break on restart "
                        "and differ between replicas; set MEDIA_URL_SECRET")
            settings.media_url_secret = SecretStr(secrets.token_urlsafe(32))
        storage = settings.open()
        opened.push_async_callback(storage.close)
        checkout = stripe_checkout(settings)
        if checkout is not None:
            opened.push_async_callback(checkout.aclose)
        resources = ApiResources(nc, store, engine, storage, checkout)
        opened.push_async_callback(resources.key_usage.drain)  # before the engine is disposed
        yield resources


def stripe_checkout(settings: ApiSettings) -> StripeCheckout | None:
    """The Stripe client, when a key is configured."""
    if settings.stripe_api_key is None:
        return None
    return StripeCheckout(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base,
                          settings.checkout_success_url, settings.checkout_cancel_url)
