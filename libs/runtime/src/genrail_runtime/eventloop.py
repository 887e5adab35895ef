"""The event loop a worker process runs on: uvloop (as uvicorn picks for the HTTP services),
which makes the NATS client's per-message work cheaper. `GENRAIL_EVENT_LOOP=asyncio` keeps
the standard loop (for profiling or debugging)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    if os.environ.get("GENRAIL_EVENT_LOOP", "uvloop") == "asyncio":
        return asyncio.run(main)
    return uvloop.run(main)
