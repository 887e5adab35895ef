"""Rate limits shared by every API process: a fixed-window counter per key in PostgreSQL
(the API owns the `rate_limits` table), one statement per request. Signups are counted per
client address, job creations per user. A limit of 0 turns it off."""

from __future__ import annotations

import math
import random
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

DDL = """
CREATE TABLE IF NOT EXISTS rate_limits (
    key          text NOT NULL,
    window_start bigint NOT NULL,
    hits         integer NOT NULL,
    PRIMARY KEY (key, window_start)
)"""

_HIT = sa.text(
    "INSERT INTO rate_limits (key, window_start, hits) VALUES (:key, :window, 1) "
    "ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits")
_FORGET = sa.text("DELETE FROM rate_limits WHERE window_start < :before")


class RateLimited(Exception):
    def __init__(self, what: str, limit: int, window_s: int, retry_after_s: int):
        super().__init__(f"rate limit: at most {limit} {what} per {window_s} s; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


async def job_created(engine: AsyncEngine, user_id: str, limit: int) -> None:
    """Count a job (or batch) the user creates, per minute: JOBS_PER_MINUTE_PER_USER."""
    await hit(engine, f"jobs:{user_id}", limit=limit, window_s=60, what="jobs of one user")


async def hit(engine: AsyncEngine, key: str, *, limit: int, window_s: int, what: str) -> None:
    """Count one hit on `key`; RateLimited when the window already holds `limit` of them."""
    if limit <= 0:
        return
    now = time.time()
    window = int(now // window_s) * window_s
    async with engine.begin() as conn:
        hits = (await conn.execute(_HIT, {"key": key, "window": window})).scalar_one()
        if random.random() < 0.01:  # now and then, forget windows long past
            await conn.execute(_FORGET, {"before": window - 2 * window_s})
    if hits > limit:
        raise RateLimited(what, limit, window_s, max(1, math.ceil(window + window_s - now)))
