"""Which user an API key belongs to, remembered for a short while: every request is
authenticated, and asking PostgreSQL each time would cost a round trip per request. The
time-to-live bounds how long a key revoked elsewhere keeps working in this process: the
process that revokes a key forgets it at once (`forget`), every other API process within
`ttl_s` (30 s by default)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class KeyCache:
    def __init__(self, ttl_s: float = 30.0, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.max_keys, self.clock = ttl_s, max_keys, clock
        self._users: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, key_hash: str) -> str | None:
        found = self._users.get(key_hash)
        if found is None:
            return None
        user_id, expires_at = found
        if self.clock() >= expires_at:
            del self._users[key_hash]
            return None
        return user_id

    def put(self, key_hash: str, user_id: str) -> None:
        self._users[key_hash] = (user_id, self.clock() + self.ttl_s)
        self._users.move_to_end(key_hash)
        while len(self._users) > self.max_keys:
            self._users.popitem(last=False)

    def forget(self, key_hash: str) -> None:
        self._users.pop(key_hash, None)
