"""Webhooks genrail sends: an account's endpoints, and the messages delivered to them.

An **endpoint** is an account's standing subscription: a URL, the job events it wants, a
signing secret of its own. Its life is events on `webhook.endpoint.<kind>.<user>.<endpoint>`:
created, updated, secret_rotated, disabled (by its owner, or by the sender after a message
to it failed for good), enabled, deleted. Secrets are never on the log: each is derived from
the deployment's key, the endpoint and the secret's version (`endpoint_secret`), so the API
can show a new one once and the sender can sign with it, and a rotation keeps the previous
version valid until `previous_valid_until` (deliveries carry both signatures meanwhile).

A **message** is one event for one destination (an endpoint, or the URL a job named), on
`webhook.message.<kind>.<user>.<message>`: created (with the exact body, so every try and
every resend sends the same bytes under the same `webhook-id`), attempted (status, latency,
the start of the answer), resend (asked for through the API).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from . import subjects
from .envelope import Event, Payload, UnknownEvent, utcnow
from .jobs import WEBHOOK_EVENTS

ENDPOINT_ID_NAMESPACE = uuid.UUID("9b1f6c52-4f0e-4d4e-9a57-2f3f7d6c1e08")
MAX_ENDPOINTS_PER_ACCOUNT = 20
SNIPPET_CHARS = 500


class EndpointStatus(StrEnum):
    enabled = "enabled"
    disabled = "disabled"
    deleted = "deleted"


class WebhookRefused(Exception):
    """A change an endpoint cannot take in its state (deleted, already so)."""


def endpoint_id_for(user_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return "we_" + uuid.uuid4().hex
    return "we_" + uuid.uuid5(ENDPOINT_ID_NAMESPACE, f"{user_id}:{idempotency_key}").hex


def endpoint_secret(master: str, endpoint_id: str, version: int) -> str:
    """The `whsec_...` secret of one version of an endpoint's key (never stored anywhere)."""
    key = hmac.new(master.encode(), f"webhook-endpoint:{endpoint_id}:{version}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(key).decode()


# --- events -------------------------------------------------------------------------

class EndpointCreatedData(Payload, frozen=True, kw_only=True):
    endpoint_id: str
    user_id: str
    url: str
    events: tuple[str, ...] = WEBHOOK_EVENTS
    description: str = ""


class EndpointCreated(Event, tag="webhook.endpoint_created", frozen=True, kw_only=True):
    data: EndpointCreatedData


class EndpointUpdatedData(Payload, frozen=True, kw_only=True):
    endpoint_id: str
    user_id: str
    url: str | None = None
    events: tuple[str, ...] | None = None
    description: str | None = None


class EndpointUpdated(Event, tag="webhook.endpoint_updated", frozen=True, kw_only=True):
    data: EndpointUpdatedData


class SecretRotatedData(Payload, frozen=True, kw_only=True):
    endpoint_id: str
    user_id: str
    version: int
    previous_valid_until: datetime


class SecretRotated(Event, tag="webhook.endpoint_secret_rotated", frozen=True, kw_only=True):
    data: SecretRotatedData


class EndpointDisabledData(Payload, frozen=True, kw_only=True):
    endpoint_id: str
    user_id: str
    reason: str
    by: str  # "owner" or "sender"
    message_id: str | None = None  # the message whose failure disabled it


class EndpointDisabled(Event, tag="webhook.endpoint_disabled", frozen=True, kw_only=True):
    data: EndpointDisabledData


class EndpointEnabledData(Payload, frozen=True, kw_only=True):
    endpoint_id: str
    user_id: str


class EndpointEnabled(Event, tag="webhook.endpoint_enabled", frozen=True, kw_only=True):
    data: EndpointEnabledData


class EndpointDeletedData(Payload, frozen=True, kw_only=True):
    endpoint_id: str
    user_id: str


class EndpointDeleted(Event, tag="webhook.endpoint_deleted", frozen=True, kw_only=True):
    data: EndpointDeletedData


class MessageCreatedData(Payload, frozen=True, kw_only=True):
    message_id: str
    user_id: str
    event_type: str  # job.start, job.output, job.completed
    job_id: str
    endpoint_id: str | None = None  # None: the URL the job itself named
    url: str
    body: str


class MessageCreated(Event, tag="webhook.message_created", frozen=True, kw_only=True):
    data: MessageCreatedData


class MessageAttemptedData(Payload, frozen=True, kw_only=True):
    message_id: str
    user_id: str
    endpoint_id: str | None = None
    url: str
    attempt: int
    delivered: bool
    status_code: int | None = None
    outcome: str  # "HTTP 200", "ConnectTimeout: ...", "skipped: endpoint disabled"
    latency_ms: int = 0
    response: str = ""  # the start of the receiver's answer
    final: bool = False  # no further try will be made (delivered, given up, or skipped)


class MessageAttempted(Event, tag="webhook.message_attempted", frozen=True, kw_only=True):
    data: MessageAttemptedData


class ResendRequestedData(Payload, frozen=True, kw_only=True):
    message_id: str
    user_id: str
    requested_by: str


class ResendRequested(Event, tag="webhook.message_resend", frozen=True, kw_only=True):
    data: ResendRequestedData


ENDPOINT_EVENTS: tuple[type[Event], ...] = (EndpointCreated, EndpointUpdated, SecretRotated, EndpointDisabled,
                                            EndpointEnabled, EndpointDeleted)
MESSAGE_EVENTS: tuple[type[Event], ...] = (MessageCreated, MessageAttempted, ResendRequested)
WEBHOOK_EVENT_TYPES = (*ENDPOINT_EVENTS, *MESSAGE_EVENTS)

_KINDS = {EndpointCreated: "created", EndpointUpdated: "updated", SecretRotated: "secret_rotated",
          EndpointDisabled: "disabled", EndpointEnabled: "enabled", EndpointDeleted: "deleted",
          MessageCreated: "created", MessageAttempted: "attempted", ResendRequested: "resend"}


def subject_for(event: Event) -> str:
    data = event.data  # type: ignore[attr-defined]
    kind = _KINDS[type(event)]
    if isinstance(event, ENDPOINT_EVENTS):
        return subjects.webhook_endpoint(kind, data.user_id, data.endpoint_id)
    return subjects.webhook_message(kind, data.user_id, data.message_id)


# --- the endpoint -------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    id: str
    user_id: str
    url: str
    events: tuple[str, ...]
    description: str
    status: EndpointStatus
    created_at: datetime
    updated_at: datetime
    secret_version: int = 1
    previous_valid_until: datetime | None = None
    disabled_reason: str | None = None
    disabled_at: datetime | None = None

    def wants(self, event: str) -> bool:
        return self.status is EndpointStatus.enabled and event in self.events

    def secret_versions(self, now: datetime) -> list[int]:
        """The versions a delivery made `now` is signed with: the current one, and the previous
        one while its overlap lasts."""
        if self.previous_valid_until is not None and now < self.previous_valid_until and self.secret_version > 1:
            return [self.secret_version, self.secret_version - 1]
        return [self.secret_version]


def evolve(endpoint: Endpoint | None, event: Event | UnknownEvent) -> Endpoint | None:
    if isinstance(event, EndpointCreated):
        if endpoint is not None:
            return endpoint
        d = event.data
        return Endpoint(id=d.endpoint_id, user_id=d.user_id, url=d.url, events=tuple(d.events),
                        description=d.description, status=EndpointStatus.enabled,
                        created_at=event.occurred_at, updated_at=event.occurred_at)
    if endpoint is None:
        return None
    at = event.occurred_at
    if isinstance(event, EndpointUpdated):
        d = event.data
        return replace(endpoint, url=d.url if d.url is not None else endpoint.url,
                       events=tuple(d.events) if d.events is not None else endpoint.events,
                       description=d.description if d.description is not None else endpoint.description,
                       updated_at=at)
    if isinstance(event, SecretRotated):
        return replace(endpoint, secret_version=event.data.version,
                       previous_valid_until=event.data.previous_valid_until, updated_at=at)
    if isinstance(event, EndpointDisabled):
        return replace(endpoint, status=EndpointStatus.disabled, disabled_reason=event.data.reason, disabled_at=at,
                       updated_at=at)
    if isinstance(event, EndpointEnabled):
        return replace(endpoint, status=EndpointStatus.enabled, disabled_reason=None, disabled_at=None, updated_at=at)
    if isinstance(event, EndpointDeleted):
        return replace(endpoint, status=EndpointStatus.deleted, updated_at=at)
    return endpoint


def fold(events: list[Event | UnknownEvent]) -> Endpoint | None:
    endpoint: Endpoint | None = None
    for event in events:
        endpoint = evolve(endpoint, event)
    return endpoint


def _live(endpoint: Endpoint) -> None:
    if endpoint.status is EndpointStatus.deleted:
        raise WebhookRefused(f"webhook endpoint {endpoint.id} was deleted")


def decide_create(user_id: str, endpoint_id: str, url: str, events: tuple[str, ...], description: str,
                  *, existing: int, now: datetime | None = None) -> EndpointCreated:
    if existing >= MAX_ENDPOINTS_PER_ACCOUNT:
        raise WebhookRefused(f"an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints; "
                             "delete one first")
    return EndpointCreated(aggregate_id=endpoint_id, occurred_at=now or utcnow(),
                           data=EndpointCreatedData(endpoint_id=endpoint_id, user_id=user_id, url=url,
                                                    events=tuple(events), description=description))


def decide_update(endpoint: Endpoint, *, url: str | None = None, events: tuple[str, ...] | None = None,
                  description: str | None = None, now: datetime | None = None) -> EndpointUpdated | None:
    _live(endpoint)
    changed = {name: value for name, value in (("url", url), ("events", events), ("description", description))
               if value is not None and value != getattr(endpoint, name)}
    if not changed:
        return None
    return EndpointUpdated(aggregate_id=endpoint.id, occurred_at=now or utcnow(),
                           data=EndpointUpdatedData(endpoint_id=endpoint.id, user_id=endpoint.user_id, **changed))


def decide_rotate(endpoint: Endpoint, overlap: timedelta, now: datetime | None = None) -> SecretRotated:
    _live(endpoint)
    now = now or utcnow()
    return SecretRotated(aggregate_id=endpoint.id, occurred_at=now,
                         data=SecretRotatedData(endpoint_id=endpoint.id, user_id=endpoint.user_id,
                                                version=endpoint.secret_version + 1,
                                                previous_valid_until=now + overlap))


def decide_disable(endpoint: Endpoint, reason: str, *, by: str, message_id: str | None = None,
                   now: datetime | None = None) -> EndpointDisabled | None:
    """None when already disabled or deleted: the first reason stays."""
    if endpoint.status is not EndpointStatus.enabled:
        return None
    return EndpointDisabled(aggregate_id=endpoint.id, occurred_at=now or utcnow(),
                            data=EndpointDisabledData(endpoint_id=endpoint.id, user_id=endpoint.user_id,
                                                      reason=reason, by=by, message_id=message_id))


def decide_enable(endpoint: Endpoint, now: datetime | None = None) -> EndpointEnabled | None:
    _live(endpoint)
    if endpoint.status is EndpointStatus.enabled:
        return None
    return EndpointEnabled(aggregate_id=endpoint.id, occurred_at=now or utcnow(),
                           data=EndpointEnabledData(endpoint_id=endpoint.id, user_id=endpoint.user_id))


def decide_delete(endpoint: Endpoint, now: datetime | None = None) -> EndpointDeleted | None:
    if endpoint.status is EndpointStatus.deleted:
        return None
    return EndpointDeleted(aggregate_id=endpoint.id, occurred_at=now or utcnow(),
                           data=EndpointDeletedData(endpoint_id=endpoint.id, user_id=endpoint.user_id))


# --- messages -----------------------------------------------------------------------

def message_id_for(transition_id: uuid.UUID, event: str, destination: str) -> str:
    """One id per (job transition, event told, destination): the `webhook-id` of every try
    and resend of it, and the append's deduplication key."""
    return "msg_" + uuid.uuid5(transition_id, f"{event}:{destination}").hex


def message_created(user_id: str, job_id: str, message_id: str, event: str, url: str, body: bytes,
                    *, endpoint_id: str | None, now: datetime | None = None) -> MessageCreated:
    return MessageCreated(aggregate_id=message_id, occurred_at=now or utcnow(),
                          data=MessageCreatedData(message_id=message_id, user_id=user_id, event_type=f"job.{event}",
                                                  job_id=job_id, endpoint_id=endpoint_id, url=url,
                                                  body=body.decode()))


def attempted(message: MessageCreatedData, attempt: int, *, delivered: bool, outcome: str, final: bool,
              status_code: int | None = None, latency_ms: int = 0, response: str = "", url: str | None = None,
              now: datetime | None = None) -> MessageAttempted:
    return MessageAttempted(aggregate_id=message.message_id, occurred_at=now or utcnow(),
                            data=MessageAttemptedData(message_id=message.message_id, user_id=message.user_id,
                                                      endpoint_id=message.endpoint_id, url=url or message.url,
                                                      attempt=attempt, delivered=delivered, status_code=status_code,
                                                      outcome=outcome[:200], latency_ms=latency_ms,
                                                      response=response[:SNIPPET_CHARS], final=final))


def resend_requested(message: MessageCreatedData, requested_by: str, now: datetime | None = None) -> ResendRequested:
    return ResendRequested(aggregate_id=message.message_id, occurred_at=now or utcnow(),
                           data=ResendRequestedData(message_id=message.message_id, user_id=message.user_id,
                                                    requested_by=requested_by))
