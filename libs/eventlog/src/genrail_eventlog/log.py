"""What every event log promises, whatever holds it: JetStream in production, memory in tests.

An append may name the subject filter whose last sequence it expects (0: nothing there
yet); the log refuses it with `ConcurrencyConflict` when something else was appended there
first, and the caller re-reads and decides again. A message id seen within the stream's
duplicate window is not stored again: the append answers with the original's sequence.
Both implementations speak the same headers, so an expectation means the same thing
everywhere: `append` builds the headers here, and each log only stores or refuses.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from genrail_events import streams
from genrail_events.envelope import Event

from . import tracing

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
MSG_ID = "Nats-Msg-Id"

T = TypeVar("T")


class ConcurrencyConflict(Exception):
    """Something was appended to the expected subject filter first: re-read and decide again."""


@dataclass(frozen=True)
class Stored:
    seq: int
    subject: str
    event: Event
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)  # filled by `last`


@dataclass(frozen=True)
class Appended:
    seq: int
    duplicate: bool


def stream_for(subject: str) -> str:
    prefix = subject.split(".", 1)[0]
    for spec in streams.ALL:
        if any(s.split(".", 1)[0] == prefix for s in spec.subjects):
            return spec.name
    raise ValueError(f"no stream holds subject {subject!r}")


def conflict(subject: str, headers: Mapping[str, str]) -> ConcurrencyConflict:
    expected_filter = headers.get(EXPECTED_LAST_SUBJECT_SEQ_SUBJECT, subject)
    expected_seq = headers.get(EXPECTED_LAST_SUBJECT_SEQ, "(none)")
    return ConcurrencyConflict(f"{expected_filter}: expected last sequence {expected_seq}")


class EventLog(ABC):
    """The log's operations. Subclasses store, refuse and read; the rest is shared."""

    @abstractmethod
    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> Appended:
        """Store one message unless its headers' expectation fails (raise `conflict(...)`)
        or its message id is a duplicate within the window (answer the original's seq)."""

    @abstractmethod
    async def last(self, subject_filter: str) -> Stored | None:
        """The last event on a subject filter (wildcards allowed), with its headers."""

    @abstractmethod
    async def read_raw(self, subject_filter: str, *, from_seq: int = 1) -> list[tuple[int, str, bytes]]:
        """(seq, subject, body) of every message on a subject filter from `from_seq`, in order."""

    @abstractmethod
    async def get(self, stream: str, seq: int) -> tuple[str, bytes, dict[str, str]] | None:
        """(subject, body, headers) of one message of a stream, or None when there is none."""

    async def append(self, subject: str, event: Event, *, msg_id: str | None = None,
                     expect_last_seq: int | None = None, expect_filter: str | None = None) -> Appended:
        """Append one event. With `expect_last_seq`, the append only happens if the last
        message on `expect_filter` (default: `subject`) has that sequence (0: none yet)."""
        headers: dict[str, str] = {MSG_ID: msg_id or str(event.id)}
        if expect_last_seq is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expect_last_seq)
            if expect_filter is not None and expect_filter != subject:
                headers[EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = expect_filter
        body = event.to_bytes()
        with tracing.publishing(subject, event.type, headers[MSG_ID], len(body),
                                expected=(ConcurrencyConflict,)) as span:
            tracing.inject(headers)  # the producer span's context, kept on the log with the event
            appended = await self._publish(subject, body, headers)
            span.set_attributes({"genrail.stream.seq": appended.seq, "genrail.duplicate": appended.duplicate})
        return appended

    async def append_first(self, subject: str, event: Event, *, msg_id: str,
                           expect_filter: str | None = None) -> Appended | None:
        """Append only while nothing is on `expect_filter` (default: `subject`). None when
        something already is, or when this very message was appended before (same id)."""
        try:
            appended = await self.append(subject, event, msg_id=msg_id, expect_last_seq=0,
                                         expect_filter=expect_filter)
        except ConcurrencyConflict:
            return None
        return None if appended.duplicate else appended

    async def last_seq(self, subject_filter: str) -> int:
        stored = await self.last(subject_filter)
        return stored.seq if stored else 0

    async def exists(self, subject: str) -> bool:
        return await self.last(subject) is not None

    async def read(self, subject_filter: str, *, from_seq: int = 1) -> list[Stored]:
        """Every event on a (narrow) subject filter, in order: for one aggregate's history."""
        return [Stored(seq, subject, Event.from_bytes(data))
                for seq, subject, data in await self.read_raw(subject_filter, from_seq=from_seq)]


async def retry_on_conflict(attempt_fn: Callable[[], Awaitable[T]], *, attempts: int = 50) -> T:
    """Run load-decide-append until it goes through; conflicts mean someone else wrote first."""
    for n in range(attempts):
        try:
            return await attempt_fn()
        except ConcurrencyConflict:
            if n == attempts - 1:
                raise
            if n > 3:
                await asyncio.sleep(0.001 * n)
    raise AssertionError("unreachable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
