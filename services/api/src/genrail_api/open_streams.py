"""Per-user caps on long responses (event streams, ZIP downloads) in this API process: each
holds a connection and a task for as long as the client reads, so one user opening hundreds
would take the server from everyone else. Past the cap the answer is 429 with Retry-After.
Per process, as what they use up (connections, tasks, memory) is too."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator


class OpenStreams:
    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def claim(self, user_id: str, limit: int) -> bool:
        if self._open[user_id] >= limit:
            return False
        self._open[user_id] += 1
        return True

    def release(self, user_id: str) -> None:
        self._open[user_id] -= 1
        if self._open[user_id] <= 0:
            del self._open[user_id]

    async def held(self, user_id: str, body: AsyncIterator) -> AsyncIterator:
        """`body`, releasing the user's claim when it ends, fails or the client goes away."""
        try:
            async for part in body:
                yield part
        finally:
            self.release(user_id)


EVENT_STREAMS, DOWNLOADS = OpenStreams(), OpenStreams()
