"""Every account's webhook endpoints, in memory, kept current by following their events on
the log (an ordered consumer of `webhook.endpoint.>`): the sender asks on every job
transition which endpoints want to hear of it, and a read of the log or a query each time
would cost every job a round trip. An endpoint hears of transitions from the moment its
creation reaches this view (milliseconds after the API answered)."""

from __future__ import annotations

import asyncio
import logging

from genrail_events import streams, subjects, webhooks
from genrail_events.envelope import Event
from genrail_eventlog.reader import OrderedReader, stream_seq
from genrail_eventlog.store import EventStore

log = logging.getLogger("genrail.webhook_endpoints")


class EndpointDirectory:
    def __init__(self) -> None:
        self._by_account: dict[str, dict[str, webhooks.Endpoint]] = {}
        self.position = 0
        self.ready = asyncio.Event()

    def apply(self, event: Event) -> None:
        if not isinstance(event, webhooks.ENDPOINT_EVENTS):
            return
        data = event.data  # type: ignore[attr-defined]
        account = self._by_account.setdefault(data.user_id, {})
        endpoint = webhooks.evolve(account.get(data.endpoint_id), event)
        if endpoint is None or endpoint.status is webhooks.EndpointStatus.deleted:
            account.pop(data.endpoint_id, None)
        else:
            account[data.endpoint_id] = endpoint

    def of(self, user_id: str) -> list[webhooks.Endpoint]:
        return list(self._by_account.get(user_id, {}).values())

    def get(self, user_id: str, endpoint_id: str) -> webhooks.Endpoint | None:
        return self._by_account.get(user_id, {}).get(endpoint_id)

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout_s)

    async def follow(self, store: EventStore, stop: asyncio.Event) -> None:
        """Read every endpoint event there is (then `ready`), and follow new ones until `stop`."""
        caught_up_at = await store.last_seq(subjects.WEBHOOK_ENDPOINTS_ALL)
        async with OrderedReader(store.nc, streams.WEBHOOKS.name, (subjects.WEBHOOK_ENDPOINTS_ALL,), 0) as reader:
            while not stop.is_set():
                if self.position >= caught_up_at:
                    self.ready.set()
                for msg in await reader.take(500, timeout_s=0.25):
                    self.position = stream_seq(msg)
                    try:
                        self.apply(Event.from_bytes(msg.data))  # type: ignore[arg-type]
                    except ValueError:
                        log.error("webhook_endpoints.undecodable", extra={"seq": self.position})
