"""The event loop a worker process runs on: uvloop (as uvicorn picks for the HTTP services),
which makes the NATS client's per-message work cheaper. `GENRAIL_EVENT_LOOP=asyncio` keeps
the standard loop (for profiling or debugging)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    if os.environ.get("GENRAIL_EVENT_LOOP", "uvloop") == "asyncio":
        return asyncio.run(main)
    return uvloop.run(main)


async def until_stopped() -> None:
    """Return on SIGTERM or SIGINT: a worker's signal to stop taking work and finish what it holds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
