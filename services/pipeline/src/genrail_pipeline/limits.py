"""Fair sharing inside one pipeline process: at most `per_user` jobs of one user and at
most `per_type[type]` jobs of one type (one provider) at a time.

A job that finds no slot waits for one here, up to `wait_s`, as long as fewer than
`max_waiting` jobs of its user already wait: a busy account's jobs queue in memory and start
the moment a slot frees, without a round trip through the queue. Past that (a long wait, or
too many of one user's jobs waiting) it is deferred and the queue delivers it again later, so
one user's big batch never holds more than `per_user + max_waiting` of the process's workers.
Limits are per replica: N replicas allow N times as much."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Limiter:
    per_user: int
    per_type: dict[str, int]
    max_waiting: int = 16
    users: Counter = field(default_factory=Counter)
    types: Counter = field(default_factory=Counter)
    waiting: Counter = field(default_factory=Counter)
    _released: asyncio.Event | None = None

    def try_acquire(self, user_id: str, job_type: str) -> bool:
        if self.users[user_id] >= self.per_user:
            return False
        if self.types[job_type] >= self.per_type.get(job_type, 1_000_000):
            return False
        self.users[user_id] += 1
        self.types[job_type] += 1
        return True

    async def acquire(self, user_id: str, job_type: str, wait_s: float) -> bool:
        """A slot now, or after waiting up to `wait_s`; False: defer the job."""
        if self.try_acquire(user_id, job_type):
            return True
        if wait_s <= 0 or self.waiting[user_id] >= self.max_waiting:
            return False
        deadline = time.monotonic() + wait_s
        self.waiting[user_id] += 1
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if self._released is None:
                    self._released = asyncio.Event()
                released = self._released
                try:
                    await asyncio.wait_for(released.wait(), remaining)
                except TimeoutError:
                    return False
                if self.try_acquire(user_id, job_type):
                    return True
        finally:
            self.waiting[user_id] -= 1
            if self.waiting[user_id] <= 0:
                del self.waiting[user_id]

    def release(self, user_id: str, job_type: str) -> None:
        self.users[user_id] -= 1
        self.types[job_type] -= 1
        if self.users[user_id] <= 0:
            del self.users[user_id]
        if self._released is not None:  # wake every waiter; the first to ask gets the slot
            self._released.set()
            self._released = None
