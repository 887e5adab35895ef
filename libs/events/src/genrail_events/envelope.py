"""The event envelope every message on the log carries, and upcasting on read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """One fact on the log. `data` holds the type's payload at `schema_version`."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    occurred_at: datetime = Field(default_factory=utcnow)
    aggregate_id: str
    schema_version: int = 1
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Event:
        return upcast(cls.model_validate_json(raw))


# (type, from_version) -> function turning that version's data into the next version's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
CURRENT_VERSIONS: dict[str, int] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register how to read an old version of an event; old versions stay readable forever."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        CURRENT_VERSIONS[event_type] = max(CURRENT_VERSIONS.get(event_type, 1), from_version + 1)
        return fn

    return register


def upcast(event: Event) -> Event:
    version, data = event.schema_version, event.data
    while (step := UPCASTERS.get((event.type, version))) is not None:
        data, version = step(data), version + 1
    if version == event.schema_version:
        return event
    return event.model_copy(update={"data": data, "schema_version": version})
