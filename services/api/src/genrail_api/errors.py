"""Every error is an RFC 9457 problem (`type`, `title`, `status`, `detail`), `detail` a readable
message as before (402 adds `balance` and `cost`)."""

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
from genrail_runtime.problems import MEDIA_TYPE, problem
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


class KeyReused(Unprocessable):
    """An idempotency key already named another request."""


def one_idempotency_key(header: str | None, field: str | None) -> str | None:
    """The request's key, from the Idempotency-Key header or the body's field (or both, equal)."""
    if header is not None and field is not None and header != field:
        raise Unprocessable("the Idempotency-Key header and the idempotency_key field differ: send one, or both equal")
    return header if header is not None else field


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


def _document_problems(app: FastAPI) -> None:
    """The OpenAPI says what the handlers answer: every error as `application/problem+json`,
    and a 422 as a problem too (FastAPI documents its own validation-error list)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for operation in (op for path in schema.get("paths", {}).values() for op in path.values()):
                responses = operation.get("responses", {})
                documented = responses.get("422")
                if documented and "HTTPValidationError" in str(documented):
                    responses["422"] = {"description": "A field is missing or has the wrong type or value",
                                        "content": {"application/json": {
                                            "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
                for status, response in responses.items():
                    content = response.get("content", {})
                    if status[:1] in "45" and "application/json" in content:
                        content[MEDIA_TYPE] = content.pop("application/json")
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def answer(status: int, detail: str, *, headers: dict[str, str] | None = None, kind: str | None = None,
           **extra: object) -> JSONResponse:
    """An error answer: RFC 9457 problem details (see genrail_runtime.problems)."""
    return JSONResponse(problem(status, detail, kind=kind, **extra), status_code=status, headers=headers,
                        media_type=MEDIA_TYPE)


def install(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return answer(exc.status_code, exc.detail, headers=exc.headers)

    @app.exception_handler(InsufficientCredits)
    async def insufficient(_: Request, exc: InsufficientCredits) -> JSONResponse:
        return answer(402, str(exc), balance=exc.balance, cost=exc.cost)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return answer(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}, kind="rate-limited")

    @app.exception_handler(AccountBusy)
    async def account_busy(_: Request, exc: AccountBusy) -> JSONResponse:
        return answer(503, str(exc), headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))},
                      kind="account-busy")

    @app.exception_handler(ConcurrencyConflict)
    async def write_conflict(_: Request, exc: ConcurrencyConflict) -> JSONResponse:
        return answer(503, "concurrent changes to the same record kept winning: try again",
                      headers={"Retry-After": "1"}, kind="write-conflict")

    @app.exception_handler(InvalidTransition)
    async def invalid_transition(_: Request, exc: InvalidTransition) -> JSONResponse:
        return answer(409, f"job is {exc.from_status}: it cannot become {exc.to_status}", kind="invalid-transition")

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(422, "; ".join(_describe(e) for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the framework could not read the body at all; ours are ApiErrors
            return answer(422, f"body cannot be read: {_unreadable(exc)}")
        return answer(exc.status_code, str(exc.detail), headers=exc.headers)
