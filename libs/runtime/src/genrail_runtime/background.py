"""Loops that run beside a worker's consumers (a deadline sweeper, the consumer-lag reader)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Background:
    """Runs loops of the shape `async def run(stop: asyncio.Event)` until `stop()`.

    A FastStream worker calls `stop()` from its on_shutdown hook, so the loops end before
    the broker drains the NATS connection they share; calling it again does nothing."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *loops: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self._tasks += [asyncio.ensure_future(loop(self._stop)) for loop in loops]

    async def stop(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)
