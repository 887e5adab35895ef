"""FastAPI dependencies: what `bootstrap` opened (the log, the database, storage, Stripe), the
current user."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from genrail_events.users import hash_api_key
from genrail_eventlog.store import EventStore
from genrail_storage.store import Storage

from genrail_readmodels import users as users_table
from .bootstrap import ApiResources
from .errors import ApiError, BillingUnavailable, Unauthorized
from .settings import ApiSettings
from .stripe_checkout import StripeCheckout

bearer = HTTPBearer(auto_error=False, description="The API key returned by POST /v1/users")


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop per request for a dictionary lookup.
def get_resources(request: Request) -> ApiResources:
    return request.app.state.resources


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_log(request: Request) -> EventStore:
    return get_resources(request).store


async def get_storage(request: Request) -> Storage:
    return get_resources(request).storage


async def get_engine(request: Request) -> AsyncEngine:
    return get_resources(request).engine


async def get_db(request: Request):
    async with get_resources(request).engine.connect() as conn:
        yield conn


async def get_checkout(request: Request) -> StripeCheckout:
    checkout = get_resources(request).stripe_checkout
    if checkout is None:
        raise BillingUnavailable("billing is not configured: set STRIPE_API_KEY on the API")
    return checkout


async def current_user(request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <api_key>'")
    key_hash = hash_api_key(credentials.credentials)
    resources = get_resources(request)
    cache = resources.key_cache
    if (user_id := cache.get(key_hash)) is None:
        async with resources.engine.connect() as conn:
            user_id = await users_table.user_for_key_hash(conn, key_hash)
        if user_id is None:
            raise Unauthorized("unknown API key")
        cache.put(key_hash, user_id)
    resources.key_usage.touch(resources.engine, key_hash)  # off the request's path, once a minute
    return user_id


class AdminDisabled(ApiError):
    status_code = 403


admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                          description="ADMIN_TOKEN from the API's configuration")


async def require_admin(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]) -> str:
    """Every /api/admin route: the configured token, compared in constant time."""
    token = request.app.state.settings.admin_token
    if token is None or not token.get_secret_value():
        raise AdminDisabled("the admin API is disabled: set ADMIN_TOKEN on the API to enable it")
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing admin token: send 'Authorization: Bearer <ADMIN_TOKEN>'")
    if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise Unauthorized("wrong admin token")
    return "admin"


async def idempotency_key_header(
        key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
            description="Any printable string you choose: the same key names the same job (or batch) "
                        "forever, and the same key with a different request is refused (422). The body's "
                        "`idempotency_key` is the same thing; send one or the other, or both equal",
            examples=["order-1234-copy"])] = None) -> str | None:
    return key


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
LogDep = Annotated[EventStore, Depends(get_log)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
DbDep = Annotated[AsyncConnection, Depends(get_db)]
CurrentUser = Annotated[str, Depends(current_user)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CheckoutDep = Annotated[StripeCheckout, Depends(get_checkout)]
AdminDep = Annotated[str, Depends(require_admin)]
IdempotencyKeyHeader = Annotated[str | None, Depends(idempotency_key_header)]
