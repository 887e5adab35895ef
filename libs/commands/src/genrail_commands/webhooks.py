"""Loading a webhook endpoint from the log and changing it with optimistic concurrency, and
reading one outgoing message back."""

from __future__ import annotations

from collections.abc import Callable

from genrail_events import subjects, webhooks
from genrail_events.envelope import Event

from genrail_eventlog.store import EventStore, retry_on_conflict


async def load_endpoint(store: EventStore, user_id: str, endpoint_id: str) -> tuple[webhooks.Endpoint | None, int]:
    """The endpoint (None when the account has no such endpoint) and the sequence its next
    change expects."""
    history = await store.read(subjects.webhook_endpoint_events(user_id, endpoint_id))
    return webhooks.fold([s.event for s in history]), (history[-1].seq if history else 0)


async def endpoints_of(store: EventStore, user_id: str) -> list[webhooks.Endpoint]:
    """The account's endpoints not deleted, oldest first, read from the log (so an endpoint
    just added or changed is listed as it is now)."""
    by_id: dict[str, list] = {}
    for stored in await store.read(subjects.webhook_endpoints_of(user_id)):
        by_id.setdefault(stored.event.aggregate_id, []).append(stored.event)
    endpoints = [webhooks.fold(events) for events in by_id.values()]
    return [e for e in endpoints if e is not None and e.status is not webhooks.EndpointStatus.deleted]


async def change_endpoint(store: EventStore, user_id: str, endpoint_id: str,
                          decide: Callable[[webhooks.Endpoint], Event | None]) -> tuple[webhooks.Endpoint, Event | None]:
    """Load, decide, append; on a concurrent change load and decide again. LookupError when
    there is no such endpoint; WebhookRefused propagates from `decide`."""

    async def attempt() -> tuple[webhooks.Endpoint, Event | None]:
        endpoint, seq = await load_endpoint(store, user_id, endpoint_id)
        if endpoint is None:
            raise LookupError(f"no webhook endpoint {endpoint_id}")
        event = decide(endpoint)
        if event is None:
            return endpoint, None
        filter_ = subjects.webhook_endpoint_events(user_id, endpoint_id)
        await store.append(webhooks.subject_for(event), event, expect_last_seq=seq, expect_filter=filter_,
                           msg_id=f"{event.type}:{endpoint_id}@{seq}")
        return webhooks.evolve(endpoint, event), event  # type: ignore[return-value]

    return await retry_on_conflict(attempt)


async def create_endpoint(store: EventStore, created: webhooks.EndpointCreated) -> bool:
    """False when an endpoint with this id exists (the same idempotency key again)."""
    d = created.data
    return await store.append_first(webhooks.subject_for(created), created, msg_id=f"endpoint:{d.endpoint_id}",
                                    expect_filter=subjects.webhook_endpoint_events(d.user_id, d.endpoint_id)) is not None


async def load_message(store: EventStore, user_id: str, message_id: str) -> webhooks.MessageCreatedData | None:
    stored = await store.last(subjects.webhook_message("created", user_id, message_id))
    if stored is None or not isinstance(stored.event, webhooks.MessageCreated):
        return None
    return stored.event.data


async def append_message(store: EventStore, created: webhooks.MessageCreated) -> bool:
    """Once ever per message id (a redelivered transition finds it there)."""
    return await store.append_first(webhooks.subject_for(created), created,
                                    msg_id=created.data.message_id) is not None
