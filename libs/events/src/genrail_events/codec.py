"""Bytes to typed events and back, for every event type of the log.

The fast path decodes the bytes straight into the event's class (one msgspec call, picked
by the `type` tag). An event written at an older schema version takes the slow path: its
data is upgraded one version at a time by the registered upcasters, then decoded into the
class. So every event ever written stays readable, and code only ever sees the current
shape. An event type this code does not know decodes to `UnknownEvent`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Union
from uuid import UUID

import msgspec

from .accounts import ACCOUNT_EVENT_TYPES
from .batches import BatchCreated
from .dead_letters import DeadLetterResolved
from .envelope import Event, UnknownEvent
from .jobs import JOB_EVENTS
from .ledger import LEDGER_EVENTS, upcast_debit_v1
from .payments import PAYMENT_EVENTS
from .users import UserRegistered
from .webhooks import WEBHOOK_EVENT_TYPES

EVENT_TYPES: tuple[type[Event], ...] = (*JOB_EVENTS, *LEDGER_EVENTS, UserRegistered, *PAYMENT_EVENTS, BatchCreated,
                                       DeadLetterResolved, *WEBHOOK_EVENT_TYPES, *ACCOUNT_EVENT_TYPES)
BY_TYPE: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in EVENT_TYPES}  # type: ignore[misc]


def _current_version(cls: type[Event]) -> int:
    return next(f.default for f in msgspec.structs.fields(cls) if f.name == "schema_version")


CURRENT_VERSIONS: dict[str, int] = {name: _current_version(cls) for name, cls in BY_TYPE.items()}

# (type, from_version) -> the function turning that version's data into the next version's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {("ledger.debited", 1): upcast_debit_v1}


class _Envelope(msgspec.Struct, kw_only=True):
    type: str
    id: UUID
    occurred_at: datetime
    aggregate_id: str
    schema_version: int = 1
    data: dict[str, Any] = msgspec.field(default_factory=dict)


_DECODER = msgspec.json.Decoder(Union[EVENT_TYPES])  # type: ignore[valid-type]  # noqa: UP007
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_TYPED = {name: msgspec.json.Decoder(cls) for name, cls in BY_TYPE.items()}


def decode(raw: bytes) -> Event | UnknownEvent:
    """The event in `raw`, at the current schema version. ValueError if it is not one."""
    try:
        event = _DECODER.decode(raw)
    except msgspec.ValidationError:
        return _decode_upgraded(raw)
    if event.schema_version < CURRENT_VERSIONS[event.type]:
        return _decode_upgraded(raw)
    return event


def _decode_upgraded(raw: bytes) -> Event | UnknownEvent:
    envelope = _ENVELOPE.decode(raw)
    if envelope.type not in BY_TYPE:
        return UnknownEvent(type=envelope.type, id=envelope.id, occurred_at=envelope.occurred_at,
                            aggregate_id=envelope.aggregate_id, schema_version=envelope.schema_version,
                            data=envelope.data)
    data, version = upcast(envelope.type, envelope.schema_version, envelope.data)
    if version < CURRENT_VERSIONS[envelope.type]:
        raise ValueError(f"{envelope.type} v{version}: no upcaster to v{CURRENT_VERSIONS[envelope.type]}")
    upgraded = msgspec.structs.replace(envelope, data=data, schema_version=version)
    return _TYPED[envelope.type].decode(msgspec.json.encode(upgraded))


def upcast(event_type: str, version: int, data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    while (step := UPCASTERS.get((event_type, version))) is not None:
        data, version = step(data), version + 1
    return data, version
