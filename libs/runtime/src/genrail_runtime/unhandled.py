"""An unexpected error becomes a JSON 500, answered like any other response; an error that
says the event log or the database is out of reach becomes a 503 with Retry-After.

Starlette answers an unhandled exception from its outermost middleware and then raises it
again to the server, which closes the connection: a client on a keep-alive connection then
loses its next request too. This middleware, inside that one, answers the error and
returns normally, so the connection stays usable. The error is logged with its traceback.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .dependencies import unavailable
from .problems import problem_bytes

log = logging.getLogger("genrail.http")
DETAIL = "internal error: the request was not completed; it is safe to retry"


class AnswerUnhandledErrors:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            missing = unavailable(exc)
            where = {"path": scope.get("path"), "method": scope.get("method")}
            if missing is None:
                log.exception("http.unhandled_error", extra=where)
            else:
                log.warning("http.dependency_unavailable", extra={**where, "unavailable": missing,
                                                                  "error": f"{type(exc).__name__}: {exc}"})
            if started:
                raise  # half a response is out: only closing the connection tells the client
            if missing is None:
                status, extra = 500, []
                body, headers = problem_bytes(500, DETAIL)
            else:
                status, extra = 503, [(b"retry-after", b"2")]
                body, headers = problem_bytes(503, f"{missing} is unavailable for a moment: try again shortly; "
                                                   "a request with an idempotency key is safe to repeat")
            await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
            await send({"type": "http.response.body", "body": body})
