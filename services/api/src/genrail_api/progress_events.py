"""Server-Sent Events that follow something until it is final: a `progress` event whenever
what the client is shown changes, then one `done` carrying the last of it. The batch routes
of `/v1` (JSON) and of the studio (rendered HTML) both stream this way, counted against the
same per-user cap of open streams (`open_streams.EVENT_STREAMS`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from sse_starlette.sse import EventSourceResponse

from .errors import TooManyOpen
from .open_streams import EVENT_STREAMS


def progress_events(request: Request, user_id: str, limit: int, first: Any, *,
                    fetch: Callable[[], Awaitable[Any]], shown: Callable[[Any], Awaitable[str]],
                    final: Callable[[Any], bool], every_s: float, what: str = "event streams") -> EventSourceResponse:
    """Follow `first` (fetched again every `every_s`) until `final`; TooManyOpen past `limit`."""
    if not EVENT_STREAMS.claim(user_id, limit):
        raise TooManyOpen(f"{limit} {what} are open for this user already")

    async def stream() -> AsyncIterator[dict]:
        current, last_sent = first, None
        while True:
            data = await shown(current)
            if data != last_sent:
                yield {"event": "progress", "data": data}
                last_sent = data
            if final(current):
                yield {"event": "done", "data": data}
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(every_s)
            current = await fetch() or current

    return EventSourceResponse(EVENT_STREAMS.held(user_id, stream()), ping=15)
