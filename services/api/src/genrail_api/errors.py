"""Every error is `{detail}` with a readable message (402 adds balance and cost)."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from genrail_commands.accounts import AccountBusy

from .rate_limits import RateLimited
from genrail_eventlog.store import ConcurrencyConflict
from genrail_events.jobs import InvalidTransition
from genrail_events.ledger import InsufficientCredits
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    status_code = 400
    headers: dict[str, str] | None = None  # sent with the answer

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Unauthorized(ApiError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Unprocessable(ApiError):
    status_code = 422


class PayloadTooLarge(ApiError):
    status_code = 413


class BillingUnavailable(ApiError):
    status_code = 503


class TooManyOpen(ApiError):
    """The user already holds as many long responses of this kind as allowed (429)."""

    status_code = 429
    headers = {"Retry-After": "1"}


class Busy(ApiError):
    """Too much of one kind of work in hand: try again shortly (503 with Retry-After)."""

    status_code = 503
    headers = {"Retry-After": "1"}


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    msg = error.get("msg", "is invalid")
    if error.get("type") == "missing":
        return f"{where}: field required"
    if error.get("type") == "extra_forbidden":
        return f"{where}: unknown field"
    if error.get("type") == "json_invalid":
        return f"body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    return f"{where}: {msg}"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(InsufficientCredits)
    async def insufficient(_: Request, exc: InsufficientCredits) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "balance": exc.balance, "cost": exc.cost}, status_code=402)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(AccountBusy)
    async def account_busy(_: Request, exc: AccountBusy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})

    @app.exception_handler(ConcurrencyConflict)
    async def write_conflict(_: Request, exc: ConcurrencyConflict) -> JSONResponse:
        return JSONResponse({"detail": "concurrent changes to the same record kept winning: try again"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(InvalidTransition)
    async def invalid_transition(_: Request, exc: InvalidTransition) -> JSONResponse:
        return JSONResponse({"detail": f"job is {exc.from_status}: it cannot become {exc.to_status}"},
                            status_code=409)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "; ".join(_describe(e) for e in exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
