"""The log on JetStream: appends with optimistic concurrency, and reads.

JetStream checks an append's expectation itself: it refuses the message (err_code 10071)
when the last sequence on the expected subject filter is not the one named. The headers
and the shared operations are in `log.py`; `memory.py` is this store's in-memory twin.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from genrail_events import streams
from genrail_events.envelope import Event

from .log import (
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    MSG_ID,
    Appended,
    ConcurrencyConflict,
    EventLog,
    Stored,
    conflict,
    dumps,
    retry_on_conflict,
    stream_for,
)

__all__ = [
    "EXPECTED_LAST_SUBJECT_SEQ", "EXPECTED_LAST_SUBJECT_SEQ_SUBJECT", "MSG_ID", "WRONG_LAST_SEQUENCE",
    "Appended", "ConcurrencyConflict", "EventLog", "EventStore", "Stored",
    "connect", "dumps", "ensure_streams", "retry_on_conflict", "stream_for",
]

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071
# A single server says 10071 with the sequence it found; a clustered stream may say 10164
# (no sequence). 10158: a publish with the same message id is still being stored.
WRONG_LAST_SEQUENCE_CODES = frozenset({WRONG_LAST_SEQUENCE, 10164})
DUPLICATE_IN_PROCESS = 10158


# How every genrail process connects: reconnect forever, quickly.
CONNECT_OPTIONS: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.5, "connect_timeout": 5}


def server_urls(url: str) -> list[str]:
    """NATS_URL names one server or a comma-separated list of a cluster's servers."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("NATS_URL is empty")
    return servers


async def connect(url: str, name: str) -> NATS:
    return await nats.connect(server_urls(url), name=name, **CONNECT_OPTIONS)


@asynccontextmanager
async def open_log(url: str, name: str, *, replicas: int = 1,
                   duplicate_window_s: float | None = None) -> AsyncIterator[EventStore]:
    """A process's one connection and its store, with every stream in place; the
    connection drains on leaving."""
    nc = await connect(url, name)
    try:
        store = EventStore(nc)
        await ensure_streams(store.js, replicas=replicas, duplicate_window_s=duplicate_window_s)
        yield store
    finally:
        await nc.drain()


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


class EventStore(EventLog):
    def __init__(self, nc: NATS, js: JetStreamContext | None = None, timeout_s: float = 5.0):
        self.nc = nc
        self.js = js or nc.jetstream(timeout=timeout_s)

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> Appended:
        try:
            ack = await self.js.publish(subject, body, headers=headers)
        except APIError as exc:
            if exc.err_code in WRONG_LAST_SEQUENCE_CODES or exc.err_code == DUPLICATE_IN_PROCESS:
                # the same message id still being stored by a concurrent publish (a cluster says so):
                # another writer got there first, as a wrong last sequence says
                raise conflict(subject, headers) from exc
            raise
        return Appended(ack.seq, bool(ack.duplicate))

    async def last(self, subject_filter: str) -> Stored | None:
        """The last event on a subject filter (wildcards allowed), read from the stream leader."""
        try:
            raw = await self.js.get_last_msg(stream_for(subject_filter), subject_filter)
        except NotFoundError:
            return None
        return Stored(raw.seq, raw.subject, Event.from_bytes(raw.data), dict(raw.headers or {}))

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
