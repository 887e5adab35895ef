"""Loops that run beside a worker's consumers (a deadline sweeper, the consumer-lag reader)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Background:
    """Runs loops of the shape `async def run(stop: asyncio.Event)` until `stop()`.

    A worker calls `stop()` when it is told to stop, so the loops (its consumers among them)
    end before the NATS connection they share drains; calling it again does nothing."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *loops: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self._tasks += [asyncio.ensure_future(loop(self._stop)) for loop in loops]

    async def stop(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)
