"""How the HTTP services serve: uvicorn, with a deadline on a request's headers.

uvicorn has none: a client that opens a connection and sends nothing, or sends its headers
a byte at a time, holds the connection (and a place under `limit_concurrency`) for as long
as it likes, so a few hundred such clients lock everyone out (slowloris). Here the headers
of every request, the first and each one after on a kept-alive connection, must be in
within `header_timeout_s` of the connection opening or of the request's first byte;
otherwise the connection is closed. Between requests, uvicorn's keep-alive timeout rules."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def header_deadline_protocol(timeout_s: float) -> type[HttpToolsProtocol]:
    class HeaderDeadline(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def serve(app: Any, *, host: str, port: int, header_timeout_s: float, **options: Any) -> None:
    """uvicorn.run with the header deadline, JSON logs (ours) and no access log."""
    uvicorn.run(app, host=host, port=port, http=header_deadline_protocol(header_timeout_s), log_config=None,
                access_log=False, **options)
