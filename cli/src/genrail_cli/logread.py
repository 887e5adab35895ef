"""Reading the log from the CLI: whole subjects in order, fast (an ordered consumer), or
one message by its sequence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from genrail_events.envelope import Event
from genrail_eventlog.reader import OrderedReader, stream_seq
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError


@dataclass(frozen=True)
class Message:
    stream: str
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]

    def event(self) -> Event | None:
        try:
            return Event.from_bytes(self.data)
        except ValueError:
            return None

    @property
    def time(self) -> datetime | None:
        event = self.event()
        return event.occurred_at if event is not None else None


async def last_seq(nc: NATS, stream: str, subject: str) -> int:
    try:
        return (await nc.jetstream().get_last_msg(stream, subject)).seq
    except NotFoundError:
        return 0


async def read(nc: NATS, stream: str, subject: str = ">", *, batch: int = 2000) -> AsyncIterator[list[Message]]:
    """Every message on `subject` in `stream`, as it was when the read began, in batches."""
    last = await last_seq(nc, stream, subject)
    if last == 0:
        return
    async with OrderedReader(nc, stream, (subject,), 0) as reader:
        seq = 0
        while seq < last:
            msgs = await reader.take(batch, timeout_s=5)
            if not msgs:
                raise TimeoutError(f"{stream} stopped delivering at {seq} of {last}")
            out = [Message(stream, stream_seq(m), m.subject, m.data, dict(m.headers or {})) for m in msgs]
            seq = out[-1].seq
            yield [m for m in out if m.seq <= last]


async def read_all(nc: NATS, stream: str, subject: str = ">") -> list[Message]:
    return [m async for batch in read(nc, stream, subject) for m in batch]


async def get(nc: NATS, stream: str, seq: int) -> Message | None:
    try:
        raw = await nc.jetstream().get_msg(stream, seq=seq, direct=False)
    except NotFoundError:
        return None
    return Message(stream, raw.seq, raw.subject, raw.data or b"", dict(raw.headers or {}))


async def follow(nc: NATS, stream: str, subject: str, *,
                 subscribed: asyncio.Event | None = None) -> AsyncIterator[Message]:
    """Messages appended to `subject` from now on (from when `subscribed` is set), forever."""
    async with OrderedReader(nc, stream, (subject,), 0, deliver_new=True) as reader:
        if subscribed is not None:
            subscribed.set()
        while True:
            for m in await reader.take(500, timeout_s=1.0):
                yield Message(stream, stream_seq(m), m.subject, m.data, dict(m.headers or {}))
