"""Projections: fold the log into PostgreSQL tables, in order, in batches.

A projection reads its stream with an ordered consumer from the position stored in
`projection_checkpoints`, and writes each batch of rows and the new position in one
transaction: a crash at any point neither skips nor doubles an event. One replica at a
time runs a given projection (a PostgreSQL advisory lock); the others wait as standbys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from genrail_events.envelope import Event

from .db import load_checkpoint, save_checkpoint
from .eventstore import Stored

log = logging.getLogger(__name__)

Apply = Callable[[AsyncConnection, Sequence[Stored]], Awaitable[None]]


@dataclass(frozen=True)
class Projection:
    """`name` keys the checkpoint; `apply` writes one ordered batch (no commit: the runner does)."""

    name: str
    stream: str
    subjects: tuple[str, ...]
    version: int
    tables: tuple[str, ...]
    apply: Apply
    ddl: tuple[str, ...] = ()


async def catch_up_position(nc: NATS, stream: str) -> int:
    info = await nc.jetstream().stream_info(stream)
    return info.state.last_seq


async def read_batches(nc: NATS, projection: Projection, from_seq: int, *, batch_size: int = 500,
                       idle_timeout_s: float = 0.25, stop_at: int | None = None,
                       stop: asyncio.Event | None = None):
    """Yield ordered batches of stored events with sequence > from_seq. With `stop_at`,
    ends once that sequence is passed (a replay); otherwise follows the log forever."""
    js = nc.jetstream()
    subject = projection.subjects[0] if len(projection.subjects) == 1 else ">"
    start = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_seq + 1)
    sub = await js.subscribe(subject, stream=projection.stream, ordered_consumer=True, config=start,
                             pending_msgs_limit=batch_size * 20)
    try:
        while stop is None or not stop.is_set():
            if stop_at is not None and from_seq >= stop_at:
                return
            try:
                first = await sub.next_msg(timeout=idle_timeout_s)
            except NatsTimeout:
                continue
            msgs = [first]
            while len(msgs) < batch_size and sub.pending_msgs > 0:
                msgs.append(await sub.next_msg())
            batch = [Stored(m.metadata.sequence.stream, m.subject, Event.from_bytes(m.data)) for m in msgs]
            from_seq = batch[-1].seq
            yield batch
    finally:
        await sub.unsubscribe()


async def apply_batch(engine: AsyncEngine, projection: Projection, batch: Sequence[Stored],
                      *, checkpoint_name: str | None = None) -> None:
    async with engine.begin() as conn:
        await projection.apply(conn, batch)
        await save_checkpoint(conn, checkpoint_name or projection.name, batch[-1].seq, projection.version)


async def run(nc: NATS, engine: AsyncEngine, projection: Projection, *, stop: asyncio.Event,
              batch_size: int = 500, on_batch: Callable[[int], None] | None = None) -> None:
    """Follow the log into the projection's tables until `stop` is set."""
    async with engine.connect() as lock_conn:
        while not stop.is_set():
            got = (await lock_conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"),
                                           {"k": f"projection:{projection.name}"})).scalar()
            await lock_conn.commit()
            if got:
                break
            await asyncio.sleep(1.0)  # another replica runs it; stand by
        if stop.is_set():
            return
        async with engine.connect() as conn:
            position, _version = await load_checkpoint(conn, projection.name)
        log.info("projection.start", extra={"projection": projection.name, "position": position})
        async for batch in read_batches(nc, projection, position, batch_size=batch_size, stop=stop):
            await apply_batch(engine, projection, batch)
            if on_batch:
                on_batch(batch[-1].seq)

