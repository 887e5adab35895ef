"""The log: appends with optimistic concurrency and reads, on JetStream.

Every write names the subject filter whose last sequence it expects; JetStream refuses the
append (err_code 10071) when something else was appended there first, and the caller
re-reads and decides again. That is the whole concurrency story: no locks anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from genrail_events import streams
from genrail_events.envelope import Event

from . import tracing

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
MSG_ID = "Nats-Msg-Id"


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


async def connect(url: str, name: str) -> NATS:
    return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                              connect_timeout=5)


async def ensure_streams(js: JetStreamContext, *, replicas: int = 1, duplicate_window_s: float | None = None) -> None:
    """Create or update every stream of the log (idempotent; run at every start)."""
    for spec in streams.ALL:
        config = StreamConfig(
            name=spec.name, subjects=list(spec.subjects), storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
            duplicate_window=duplicate_window_s or spec.duplicate_window_s, deny_delete=True, deny_purge=True,
            allow_direct=True, num_replicas=replicas,
        )
        try:
            await js.add_stream(config)
        except APIError as exc:
            if exc.err_code != 10058:  # stream name already in use with a different configuration
                raise
            await js.update_stream(config)


class EventStore:
    def __init__(self, nc: NATS, js: JetStreamContext | None = None, timeout_s: float = 5.0):
        self.nc = nc
        self.js = js or nc.jetstream(timeout=timeout_s)

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
            try:
                ack = await self.js.publish(subject, body, headers=headers)
            except APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    raise ConcurrencyConflict(
                        f"{expect_filter or subject}: expected last sequence {expect_last_seq}") from exc
                raise
            span.set_attributes({"genrail.stream.seq": ack.seq, "genrail.duplicate": bool(ack.duplicate)})
        return Appended(ack.seq, bool(ack.duplicate))

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

    async def last(self, subject_filter: str) -> Stored | None:
        """The last event on a subject filter (wildcards allowed), read from the stream leader."""
        try:
            raw = await self.js.get_last_msg(stream_for(subject_filter), subject_filter)
        except NotFoundError:
            return None
        return Stored(raw.seq, raw.subject, Event.from_bytes(raw.data), dict(raw.headers or {}))

    async def last_seq(self, subject_filter: str) -> int:
        stored = await self.last(subject_filter)
        return stored.seq if stored else 0

    async def exists(self, subject: str) -> bool:
        return await self.last(subject) is not None

    async def read(self, subject_filter: str, *, from_seq: int = 1) -> list[Stored]:
        """Every event on a (narrow) subject filter, in order: for one aggregate's history."""
        return [Stored(seq, subject, Event.from_bytes(data))
                for seq, subject, data in await self.read_raw(subject_filter, from_seq=from_seq)]

    async def read_raw(self, subject_filter: str, *, from_seq: int = 1) -> list[tuple[int, str, bytes]]:
        stream = stream_for(subject_filter)
        out: list[tuple[int, str, bytes]] = []
        seq = from_seq
        while True:
            try:
                raw = await self.js.get_msg(stream, seq=seq, subject=subject_filter, next=True)
            except NotFoundError:
                return out
            out.append((raw.seq, raw.subject, raw.data or b""))
            seq = raw.seq + 1

    async def get(self, stream: str, seq: int) -> tuple[str, bytes, dict[str, str]] | None:
        try:
            raw = await self.js.get_msg(stream, seq=seq)
        except NotFoundError:
            return None
        return raw.subject, raw.data or b"", dict(raw.headers or {})


async def retry_on_conflict(attempt_fn: Any, *, attempts: int = 50) -> Any:
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
