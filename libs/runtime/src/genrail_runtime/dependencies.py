"""When the event log (NATS) or the database (PostgreSQL) is out of reach: telling such an
error from a bug, so that the HTTP services answer 503 with Retry-After (come back in a
moment) instead of 500, and checking both for `/readyz`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import nats.errors
import nats.js.errors
import sqlalchemy.exc

_LOG_UNREACHABLE = (
    nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.NoServersError,
    nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError, nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError, nats.errors.OutboundBufferLimitError, nats.errors.FlushTimeoutError,
    nats.js.errors.ServiceUnavailableError, nats.js.errors.NoStreamResponseError,
)
_DATABASE_UNREACHABLE = (
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)


def unavailable(exc: BaseException) -> str | None:
    """"the event log" or "the database" when `exc` (or what caused it) says that one could
    not be reached or did not answer in time; None for anything else (a bug: a 500)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _LOG_UNREACHABLE):
            return "the event log"
        if isinstance(current, nats.js.errors.APIError) and current.code == 503:
            return "the event log"  # JetStream without a leader for the stream, for the moment
        if isinstance(current, _DATABASE_UNREACHABLE):
            return "the database"
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return "the database"
        if isinstance(current, ConnectionError | TimeoutError):  # refused, reset or silent, below the clients
            return _whose(current) or "a server it depends on"
        current = current.__cause__ or current.__context__
    return None


def _whose(exc: BaseException) -> str | None:
    """Which client library raised a low-level error, from the modules its traceback passed through."""
    tb = exc.__traceback__
    modules = []
    while tb is not None:
        modules.append(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    for module in reversed(modules):  # innermost first
        if module.startswith(("asyncpg", "sqlalchemy")):
            return "the database"
        if module.startswith("nats"):
            return "the event log"
    return None


async def readiness(checks: dict[str, Callable[[], Awaitable[object]]], timeout_s: float = 2.0) -> dict[str, str]:
    """Each dependency's state, "ok" or why not, checked at once, each within `timeout_s`."""
    async def one(check: Callable[[], Awaitable[object]]) -> str:
        try:
            await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            return f"no answer within {timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return f"{type(exc).__name__}: {exc}"[:200]
        return "ok"

    results = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))
