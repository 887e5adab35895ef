"""Projections: fold the log into PostgreSQL tables, in order, in batches.

A projection reads its stream with an ordered consumer from the position stored in
`projection_checkpoints`, and writes each batch of rows and the new position in one
transaction: a crash at any point neither skips nor doubles an event. One replica at a
time runs a given projection (a PostgreSQL advisory lock); the others wait as standbys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from genrail_events import codec
from genrail_events.envelope import Event
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from genrail_runtime import metrics

from .db import CHECKPOINTS_DDL, SCHEMA_LOCK, load_checkpoint, quarantine, run_ddl, save_checkpoint
from genrail_eventlog.reader import OrderedReader, stream_seq
from genrail_eventlog.store import Stored
from .logread import read_raw
from .table_diff import Difference, compare, table_exists

if TYPE_CHECKING:
    from .bulk import Loader

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
    async with OrderedReader(nc, projection.stream, projection.subjects, from_seq) as reader:
        while stop is None or not stop.is_set():
            if stop_at is not None and from_seq >= stop_at:
                return
            msgs = await reader.take(batch_size, timeout_s=idle_timeout_s)
            if not msgs:
                continue
            batch = [Stored(stream_seq(m), m.subject, Event.from_bytes(m.data)) for m in msgs]
            from_seq = batch[-1].seq
            yield batch


async def read_events(nc: NATS, projection: Projection, from_seq: int, *, batch_size: int, stop_at: int):
    """Yield ordered batches of (stream sequence, event) with sequence > from_seq, until
    `stop_at` is reached: `read_batches` for a rebuild, read by `logread` (pull batches on a
    connection of its own), without a `Stored` per event."""
    decode = codec.decode  # what Event.from_bytes calls
    async for raw in read_raw(nc, projection.stream, projection.subjects, from_seq, stop_at=stop_at,
                              batch_size=batch_size):
        yield [(seq, decode(data)) for seq, data in raw]


async def apply_batch(engine: AsyncEngine, projection: Projection, batch: Sequence[Stored],
                      *, checkpoint_name: str | None = None) -> None:
    async with engine.begin() as conn:
        await projection.apply(conn, batch)
        await save_checkpoint(conn, checkpoint_name or projection.name, batch[-1].seq, projection.version)


# Errors of the database's connection, not of the data: the projection stops and starts
# again from its checkpoint (see `follow`) instead of setting events aside.
_CONNECTION_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, ConnectionError, OSError, TimeoutError)


async def apply_or_quarantine(engine: AsyncEngine, projection: Projection, batch: Sequence[Stored]) -> None:
    """Apply the batch; if it fails for its data, halve it until the events that fail are
    alone, and set each of those aside in `projection_quarantine` (with the checkpoint past
    it, in one transaction): one bad event never stops the projection for everyone."""
    try:
        await apply_batch(engine, projection, batch)
        return
    except _CONNECTION_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - the data's fault: isolated below
        if len(batch) == 1:
            [bad] = batch
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            async with engine.begin() as conn:
                await quarantine(conn, projection.name, bad.seq, bad.subject, bad.event.type, error)
                await save_checkpoint(conn, projection.name, bad.seq, projection.version)
            log.error("projection.quarantined", extra={"projection": projection.name, "position": bad.seq,
                                                       "subject": bad.subject, "error": error})
            metrics.get().projection_quarantined(projection.name)
            return
    half = len(batch) // 2
    await apply_or_quarantine(engine, projection, batch[:half])
    await apply_or_quarantine(engine, projection, batch[half:])


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
            await apply_or_quarantine(engine, projection, batch)
            if on_batch:
                on_batch(batch[-1].seq)


async def follow(nc: NATS, engine: AsyncEngine, factory: ProjectionFactory, *, stop: asyncio.Event,
                 batch_size: int = 500, restart_after_s: float = 2.0) -> None:
    """A service's projection task: rebuild first if the code's version is newer than the
    database's, then follow the log; a failure is logged and the projection starts again
    from its checkpoint, so one bad moment (a dropped connection) does not stop it for good."""
    while not stop.is_set():
        try:
            await ensure_current_version(nc, engine, factory)
            await run(nc, engine, factory(), stop=stop, batch_size=batch_size)
        except Exception:  # noqa: BLE001 - restarted from the checkpoint, which is always consistent
            log.exception("projection.failed", extra={"projection": factory().name})
            try:
                await asyncio.wait_for(stop.wait(), restart_after_s)
            except TimeoutError:
                pass


# --- rebuilding from the log ----------------------------------------------------------
#
# A projection factory takes the projection's table names, positionally, in the order of
# `Projection.tables`, and defaults to the live names: `jobs.make()` serves `jobs`,
# `jobs.make("jobs__shadow")` builds the same projection into `jobs__shadow`.
#
# `rebuild` folds the whole log into shadow tables while the live ones keep serving (read
# by `logread`, folded in memory and written with COPY by the projection's bulk loader in
# `bulk`, or applied batch by batch by its `apply`; secondary indexes built once the rows
# are in), then, in ONE transaction, freezes the live tables (so the running projector cannot write
# meanwhile), applies the last few events up to the live checkpoint, drops the live tables,
# renames the shadow tables and their indexes to the live names, and moves the checkpoint to
# the shadow's position and version. A rebuild killed at any point before that commit
# leaves the live tables and checkpoint as they were; the next one starts over (the shadow
# tables are dropped and recreated first). After the swap, a projector that was running
# may re-apply a few events the shadow already holds: `apply` must be idempotent for events
# at or below a row's position (the jobs, users and ledger projections are).

ProjectionFactory = Callable[..., Projection]
SHADOW_SUFFIX = "__shadow"
# Left out of --verify: `position` is bookkeeping (the sequence that last wrote the row),
# not an answer the API gives, and a table repaired by hand or by an older version of the
# projection may carry another value for a row that is otherwise right.
VERIFY_IGNORES: tuple[str, ...] = ("position",)


@dataclass(frozen=True)
class RebuildProgress:
    projection: str
    position: int  # last stream sequence applied to the shadow tables
    target: int    # last sequence of the stream when the rebuild started
    events: int    # events applied so far


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    version: int
    position: int
    events: int
    seconds: float
    swapped: bool
    differences: list[Difference]


def shadow_name(table: str) -> str:
    return f"{table}{SHADOW_SUFFIX}"


async def last_position(nc: NATS, projection: Projection) -> int:
    """The sequence of the last message of the projection's stream it reads (0: none)."""
    subject = projection.subjects[0] if len(projection.subjects) == 1 else ">"
    try:
        return (await nc.jetstream().get_last_msg(projection.stream, subject)).seq
    except NotFoundError:
        return 0


async def rebuild(nc: NATS, engine: AsyncEngine, projection_factory: ProjectionFactory, *,
                  on_progress: Callable[[RebuildProgress], None] | None = None, verify: bool = False,
                  batch_size: int = 2000, bulk: bool = True, rows_in_memory: int | None = None) -> RebuildResult:
    """Rebuild a projection from the start of the log and swap it in (see above). With
    `verify`, compare the rebuilt tables with the live ones instead of swapping, and leave
    the live tables as they are. With `bulk` (the default) a projection that has a bulk
    loader (`bulk.py`) is folded in memory and written with COPY, holding up to
    `rows_in_memory` rows of tables whose rows later events change; without, or for a
    projection without one, with its `apply`, one transaction per `batch_size` events."""
    result = await _rebuild(nc, engine, projection_factory, on_progress=on_progress, verify=verify,
                            batch_size=batch_size, only_if_older=False, bulk=bulk, rows_in_memory=rows_in_memory)
    assert result is not None  # only a version check skips a rebuild
    return result


async def ensure_current_version(nc: NATS, engine: AsyncEngine, projection_factory: ProjectionFactory, *,
                                 on_progress: Callable[[RebuildProgress], None] | None = None) -> RebuildResult | None:
    """Rebuild the projection when the database holds it at an older version than the code
    (call at service start, before `run`). Replicas starting together rebuild it once."""
    projection = projection_factory()
    async with engine.begin() as conn:
        await _schema_lock(conn)
        await run_ddl(conn, CHECKPOINTS_DDL)
        _position, version = await load_checkpoint(conn, projection.name)
    if version is not None and version > projection.version:
        log.warning("projection.newer_in_database", extra={"projection": projection.name, "database": version,
                                                          "code": projection.version})
    if version is None or version >= projection.version:
        return None
    log.info("projection.rebuild", extra={"projection": projection.name, "from_version": version,
                                          "to_version": projection.version})
    return await _rebuild(nc, engine, projection_factory, on_progress=on_progress, verify=False,
                          batch_size=2000, only_if_older=True, bulk=True, rows_in_memory=None)


async def _rebuild(nc: NATS, engine: AsyncEngine, projection_factory: ProjectionFactory, *,
                   on_progress: Callable[[RebuildProgress], None] | None, verify: bool, batch_size: int,
                   only_if_older: bool, bulk: bool, rows_in_memory: int | None) -> RebuildResult | None:
    live = projection_factory()
    shadow = projection_factory(*(shadow_name(t) for t in live.tables))
    started = time.perf_counter()
    async with engine.connect() as lock_conn:  # one rebuild of a projection at a time
        await lock_conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"rebuild:{live.name}"})
        await lock_conn.commit()
        try:
            if only_if_older:
                async with engine.connect() as conn:
                    _position, version = await load_checkpoint(conn, live.name)
                if version is None or version >= live.version:
                    return None
            filler = _Filler(nc, shadow, live.name, on_progress, batch_size,
                             _loader(live.name, shadow.tables, rows_in_memory) if bulk else None)
            # The secondary indexes are built once the rows are in, cheaper than kept up
            # row by row (the fill reads and writes by primary key only).
            tables_ddl = [s for s in shadow.ddl if not _INDEX_DDL.match(s)]
            indexes_ddl = [s for s in shadow.ddl if _INDEX_DDL.match(s)]
            async with engine.begin() as conn:
                await _schema_lock(conn)
                await run_ddl(conn, [CHECKPOINTS_DDL, *(f"DROP TABLE IF EXISTS {t} CASCADE" for t in shadow.tables),
                                     *tables_ddl])
            filler.target = await last_position(nc, live)
            await filler.fill(engine, filler.target)             # the log as it was at the start
            await filler.fill(engine, await last_position(nc, live))  # what came meanwhile
            await filler.flush(engine)
            if indexes_ddl:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
                    await run_ddl(conn, indexes_ddl)
            differences: list[Difference] = []
            async with engine.begin() as conn:
                live_position = await _freeze(conn, live, exclusive=not verify)
                await filler.fill_in(conn, min(live_position, await last_position(nc, live)))
                if verify:
                    for live_table, shadow_table in zip(live.tables, shadow.tables, strict=True):
                        differences += await compare(conn, live_table, shadow_table, ignore=VERIFY_IGNORES)
                else:
                    await _swap(conn, live, shadow, filler.position)
            if verify:
                async with engine.begin() as conn:
                    await run_ddl(conn, [f"DROP TABLE IF EXISTS {t} CASCADE" for t in shadow.tables])
        finally:
            await lock_conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"rebuild:{live.name}"})
            await lock_conn.commit()
    return RebuildResult(live.name, live.version, filler.position, filler.events, time.perf_counter() - started,
                         swapped=not verify, differences=differences)


class _Filler:
    """Applies the log to the shadow tables, in order, and reports progress: with a bulk
    loader when it has one (until `flush`), else with the projection's `apply`."""

    def __init__(self, nc: NATS, shadow: Projection, name: str,
                 on_progress: Callable[[RebuildProgress], None] | None, batch_size: int, loader: Loader | None = None):
        self.nc, self.shadow, self.name = nc, shadow, name
        self.on_progress, self.batch_size, self.loader = on_progress, batch_size, loader
        self.position = self.events = self.target = 0

    async def fill(self, engine: AsyncEngine, upto: int) -> None:
        """Up to (at least) `upto`: into the loader, or one transaction per batch."""
        if self.position >= upto:
            return
        if self.loader is not None:
            await self._fill_bulk(engine, upto)
            return
        batches = read_batches(self.nc, self.shadow, self.position, batch_size=self.batch_size, stop_at=upto)
        async for batch in _read_ahead(batches):  # decode the next batch while PostgreSQL writes this one
            async with engine.begin() as conn:
                await self.shadow.apply(conn, batch)
            self._advance(batch[-1].seq, len(batch))

    async def _fill_bulk(self, engine: AsyncEngine, upto: int) -> None:
        loader = self.loader
        assert loader is not None
        async with engine.connect() as conn:
            batches = read_events(self.nc, self.shadow, self.position, batch_size=self.batch_size, stop_at=upto)
            async for batch in _read_ahead(batches):  # read and decode the next while this one folds
                await loader.absorb(conn, batch)
                self._advance(batch[-1][0], len(batch))

    async def flush(self, engine: AsyncEngine) -> None:
        """Write whatever the loader holds; from here on the projection's `apply` goes on."""
        if self.loader is not None:
            async with engine.connect() as conn:
                await self.loader.flush(conn)
            self.loader = None

    async def fill_in(self, conn: AsyncConnection, upto: int) -> None:
        """Up to exactly `upto`, inside the caller's transaction, with `apply`."""
        assert self.loader is None, "flush the bulk loader first"
        if self.position >= upto:
            return
        async for batch in read_batches(self.nc, self.shadow, self.position, batch_size=self.batch_size,
                                        stop_at=upto):
            batch = [s for s in batch if s.seq <= upto]
            if batch:
                await self.shadow.apply(conn, batch)
                self._advance(batch[-1].seq, len(batch))

    def _advance(self, position: int, events: int) -> None:
        self.position, self.events = position, self.events + events
        if self.on_progress is not None:
            self.on_progress(RebuildProgress(self.name, self.position, max(self.target, self.position), self.events))


_INDEX_DDL = re.compile(r"\s*CREATE\s+(UNIQUE\s+)?INDEX\b", re.IGNORECASE)


def _loader(name: str, tables: tuple[str, ...], rows_in_memory: int | None) -> Loader | None:
    from . import bulk  # imports the projections, which import this module

    return bulk.loader_for(name, tables, rows_in_memory=rows_in_memory)


async def _read_ahead(batches: AsyncIterator[list[Stored]], depth: int = 2) -> AsyncIterator[list[Stored]]:
    """The same batches, read by a task of their own up to `depth` ahead of the consumer."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=depth)
    done = object()

    async def produce() -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
            await queue.put(exc)
        else:
            await queue.put(done)

    producer = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        await batches.aclose()


async def _schema_lock(conn: AsyncConnection) -> None:
    """The lock `create_schema` takes: DDL racing a starting service's would fail."""
    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": SCHEMA_LOCK})


async def _freeze(conn: AsyncConnection, live: Projection, *, exclusive: bool) -> int:
    """Stop the running projector from writing the live tables until this transaction
    ends (readers too when `exclusive`), and return the live checkpoint's position. The
    projector writes its tables before its checkpoint, and so do we: no deadlock."""
    existing = [t for t in live.tables if await table_exists(conn, t)]
    if existing:
        mode = "ACCESS EXCLUSIVE" if exclusive else "SHARE"
        await conn.execute(sa.text(f"LOCK TABLE {', '.join(existing)} IN {mode} MODE"))
    row = (await conn.execute(sa.text("SELECT position FROM projection_checkpoints WHERE name = :n FOR UPDATE"),
                              {"n": live.name})).first()
    return row[0] if row else 0


async def _swap(conn: AsyncConnection, live: Projection, shadow: Projection, position: int) -> None:
    await conn.execute(sa.text(f"DROP TABLE IF EXISTS {', '.join(live.tables)} CASCADE"))
    for live_table, shadow_table in zip(live.tables, shadow.tables, strict=True):
        await conn.execute(sa.text(f"ALTER TABLE {shadow_table} RENAME TO {live_table}"))
        indexes = await conn.execute(sa.text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t"),
            {"t": live_table})
        for (index,) in indexes.all():
            if index.startswith(shadow_table):
                await conn.execute(sa.text(
                    f"ALTER INDEX {index} RENAME TO {live_table}{index[len(shadow_table):]}"))
    await save_checkpoint(conn, live.name, position, live.version)
