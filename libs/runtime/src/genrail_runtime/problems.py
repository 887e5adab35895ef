"""Errors as RFC 9457 problem details: `application/problem+json` with `type`, `title`,
`status` and `detail` (and members of the problem's own, such as a 402's `balance` and
`cost`). `detail` says what went wrong in words, as it did before problem details, so
clients that read only `detail` keep working.

`type` is a URN naming the kind of problem (`urn:genrail:problem:insufficient-credits`),
stable across releases, for programs to branch on; `title` is its fixed short text."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

MEDIA_TYPE = "application/problem+json"

# The kind of problem each status means when the code raising it names none.
KINDS: dict[int, str] = {
    400: "bad-request", 401: "unauthorized", 402: "insufficient-credits", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 409: "conflict", 413: "too-large", 415: "unsupported-media-type",
    422: "invalid-request", 429: "too-many-requests", 500: "internal-error", 502: "provider-error",
    503: "unavailable",
}


def problem_type(kind: str) -> str:
    return f"urn:genrail:problem:{kind}"


def problem(status: int, detail: str, *, kind: str | None = None, **extra: Any) -> dict[str, Any]:
    """The problem object for an answer of `status`."""
    kind = kind or KINDS.get(status, "error")
    return {"type": problem_type(kind), "title": kind.replace("-", " ").capitalize(), "status": status,
            "detail": detail, **extra}


def problem_bytes(status: int, detail: str, **extra: Any) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and headers of a problem answer, for ASGI middleware that answers on its own."""
    body = json.dumps(problem(status, detail, **extra)).encode()
    return body, [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
