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


def _unreadable(exc: StarletteHTTPException) -> str:
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if exc.__cause__ is not None:
        return "it is not well-formed JSON"
    return str(exc.detail).rstrip(".")  # Starlette's own words, e.g. "Invalid multipart data"


def _document_real_422(app: FastAPI) -> None:
    """FastAPI documents its own validation-error shape (a list) as every route's 422; the
    handler below answers `{detail: "..."}` instead, so the OpenAPI says that."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for operation in (op for path in schema.get("paths", {}).values() for op in path.values()):
                documented = operation.get("responses", {}).get("422")
                if documented and "HTTPValidationError" in str(documented):
                    operation["responses"]["422"] = {
                        "description": "A field is missing or has the wrong type or value",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_real_422(app)
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
        if exc.status_code == 400:  # the framework could not read the body at all; ours are ApiErrors
            return JSONResponse({"detail": f"body cannot be read: {_unreadable(exc)}"}, status_code=422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
