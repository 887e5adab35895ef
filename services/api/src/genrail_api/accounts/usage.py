"""When each API key was last used, in a table the API owns (`api_key_usage`): not a fact
for the log (it would write an event per request), only a hint shown on the keys page.

Written at most once a minute per key and per process, in a task of its own, so a request
never waits for it and a busy key costs one UPDATE a minute, not one per request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("genrail.api.accounts")

DDL = """
CREATE TABLE IF NOT EXISTS api_key_usage (
    key_hash     text PRIMARY KEY,
    last_used_at timestamptz NOT NULL
)"""

_TOUCH = sa.text(
    "INSERT INTO api_key_usage (key_hash, last_used_at) VALUES (:h, now()) "
    "ON CONFLICT (key_hash) DO UPDATE SET last_used_at = GREATEST(api_key_usage.last_used_at, EXCLUDED.last_used_at)")

EVERY_S = 60.0


class KeyUsage:
    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000):
        self.every_s, self.clock, self.max_keys = every_s, clock, max_keys
        self._written: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()

    def due(self, key_hash: str) -> bool:
        """Whether this key's use is to be written now (and, if so, not again for a minute)."""
        now = self.clock()
        last = self._written.get(key_hash)
        if last is not None and now - last < self.every_s:
            return False
        if len(self._written) >= self.max_keys:
            self._written.clear()  # at worst one more write per key: cheaper than tracking ages
        self._written[key_hash] = now
        return True

    def touch(self, engine: AsyncEngine, key_hash: str) -> None:
        if not self.due(key_hash):
            return
        task = asyncio.get_running_loop().create_task(self._write(engine, key_hash))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, engine: AsyncEngine, key_hash: str) -> None:
        try:
            async with engine.begin() as conn:
                await conn.execute(_TOUCH, {"h": key_hash})
        except Exception as exc:  # noqa: BLE001 - a hint only: never an error for a request
            self._written.pop(key_hash, None)
            log.warning("api_key_usage.write_failed", extra={"error": repr(exc)})

    async def drain(self) -> None:
        """Wait for the writes in flight (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def last_used(conn, key_hashes: list[str]) -> dict[str, object]:
    if not key_hashes:
        return {}
    rows = await conn.execute(sa.text("SELECT key_hash, last_used_at FROM api_key_usage WHERE key_hash = ANY(:h)"),
                              {"h": key_hashes})
    return {r.key_hash: r.last_used_at for r in rows}
