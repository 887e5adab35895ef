"""The event envelope every message on the log carries.

On the wire an event is one JSON object: `type`, `id`, `occurred_at`, `aggregate_id`,
`schema_version` and `data`, the type's payload. In code each event type is a class of its
own (a msgspec Struct tagged by `type`) whose `data` is a typed payload, so a consumer
decodes bytes straight into the right class, once, and handlers dispatch on the class.
Decoding, and reading events written by older code, is `codec`'s job.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec


def utcnow() -> datetime:
    return datetime.now(UTC)


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """The base of every event's `data`. A new field gets a default, so that events written
    before it still decode; a field whose meaning changes needs a new schema version."""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """One fact on the log. Subclasses set `tag=` (the event type) and declare `data`."""

    id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    occurred_at: datetime = msgspec.field(default_factory=utcnow)
    aggregate_id: str
    schema_version: int = 1

    @property
    def type(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @staticmethod
    def from_bytes(raw: bytes) -> Event | UnknownEvent:
        """Decode any event of the log (ValueError when `raw` is not one)."""
        return _decoder()(raw)


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event of a type this code does not know (a newer producer wrote it): kept whole,
    acted on by nobody."""

    type: str
    id: uuid.UUID
    occurred_at: datetime
    aggregate_id: str
    schema_version: int = 1
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()


@functools.cache
def _decoder() -> Callable[[bytes], Event | UnknownEvent]:
    from .codec import decode  # the codec knows every event class, which all import this module

    return decode
