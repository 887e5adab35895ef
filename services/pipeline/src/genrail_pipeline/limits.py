"""Fair sharing inside one pipeline process: at most `per_user` jobs of one user and at
most `per_type[type]` jobs of one type (one provider) at a time. A job that finds no slot
is deferred (the queue delivers it again shortly), so one user's big batch waits its turn
instead of holding every worker. Limits are per replica: N replicas allow N times as much."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Limiter:
    per_user: int
    per_type: dict[str, int]
    users: Counter = field(default_factory=Counter)
    types: Counter = field(default_factory=Counter)

    def try_acquire(self, user_id: str, job_type: str) -> bool:
        if self.users[user_id] >= self.per_user:
            return False
        if self.types[job_type] >= self.per_type.get(job_type, 1_000_000):
            return False
        self.users[user_id] += 1
        self.types[job_type] += 1
        return True

    def release(self, user_id: str, job_type: str) -> None:
        self.users[user_id] -= 1
        self.types[job_type] -= 1
        if self.users[user_id] <= 0:
            del self.users[user_id]
